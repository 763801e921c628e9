//! The running sums of an epoch's steps, from which the epoch's record takes its means.

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
