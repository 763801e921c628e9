//! Where a run stands (`Progress`: its position, the current epoch's running sums and the finished
//! epochs' records), shared by the search and the training loop, with its part of their checkpoints.
use crate::checkpoint::{Checkpoint, TensorFile};
use crate::Result;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Sums of the current epoch's steps: training loss, accuracy, step count and seconds. Checkpoints
/// store it as `[loss, accuracy, steps, seconds]` ([`EpochMeter::to_array`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EpochMeter {
    loss: f64,
    accuracy: f64,
    steps: f64,
    seconds: f64,
}

impl EpochMeter {
    /// Counts one step.
    pub fn add(&mut self, loss: f32, accuracy: f32, seconds: f64) {
        self.loss += loss as f64;
        self.accuracy += accuracy as f64;
        self.steps += 1.0;
        self.seconds += seconds;
    }

    /// Mean training loss over the steps counted (summed in f64).
    pub fn mean_loss(&self) -> f32 {
        (self.loss / self.steps) as f32
    }

    /// Mean training accuracy over the steps counted.
    pub fn mean_accuracy(&self) -> f32 {
        (self.accuracy / self.steps) as f32
    }

    /// Seconds of the steps counted.
    pub fn seconds(&self) -> f64 {
        self.seconds
    }

    /// `[loss, accuracy, steps, seconds]`, as checkpoints store it.
    pub fn to_array(&self) -> [f64; 4] {
        [self.loss, self.accuracy, self.steps, self.seconds]
    }

    /// The meter a checkpoint stored with [`EpochMeter::to_array`].
    pub fn from_array([loss, accuracy, steps, seconds]: [f64; 4]) -> Self {
        EpochMeter {
            loss,
            accuracy,
            steps,
            seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_and_round_trip() {
        let mut m = EpochMeter::default();
        m.add(2.0, 0.5, 0.25);
        m.add(1.0, 1.0, 0.5);
        assert_eq!(
            (m.mean_loss(), m.mean_accuracy(), m.seconds()),
            (1.5, 0.75, 0.75)
        );
        assert_eq!(m.to_array(), [3.0, 1.5, 2.0, 0.75]);
        assert_eq!(EpochMeter::from_array(m.to_array()), m);
    }
}

/// Where a run stands: the next step to run (`epoch`, `step` within it), the current epoch's
/// [`EpochMeter`], and one record `R` per finished epoch.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Progress<R> {
    pub epoch: usize,
    pub step: usize,
    pub meter: EpochMeter,
    pub history: Vec<R>,
}

impl<R> Default for Progress<R> {
    /// Before the first step.
    fn default() -> Self {
        Progress {
            epoch: 0,
            step: 0,
            meter: EpochMeter::default(),
            history: Vec::new(),
        }
    }
}

impl<R: Serialize + DeserializeOwned> Progress<R> {
    /// Closes the current epoch with its record; the next step is the next epoch's first.
    pub fn end_epoch(&mut self, record: R) {
        self.history.push(record);
        self.epoch += 1;
        self.step = 0;
        self.meter = EpochMeter::default();
    }

    /// Adds it to a checkpoint's metadata (`epoch`, `step`, `epoch_sums`, `history`).
    pub fn save(&self, c: &mut Checkpoint) {
        c.meta("epoch", &self.epoch);
        c.meta("step", &self.step);
        c.meta("epoch_sums", &self.meter.to_array());
        c.meta("history", &self.history);
    }

    /// Reads what [`Progress::save`] wrote.
    pub fn load(f: &TensorFile) -> Result<Self> {
        Ok(Progress {
            epoch: f.meta("epoch")?,
            step: f.meta("step")?,
            meter: EpochMeter::from_array(f.meta("epoch_sums")?),
            history: f.meta("history")?,
        })
    }
}
