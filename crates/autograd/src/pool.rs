//! Recycled f32 buffers, so a training loop stops allocating after its first steps.
use std::collections::HashMap;

/// Buffers at least this long are zeroed in parallel, in chunks of this many values.
const PARALLEL_FILL: usize = 1 << 16;

/// Buffers returned by [`crate::Tape::reset`] and by freed gradients, keyed by length.
///
/// The pool never holds more buffers of a length than the last two steps asked for: buffers that
/// entered from outside (a caller's input tensor, say) would otherwise pile up step after step.
#[derive(Default)]
pub(crate) struct BufferPool {
    free: HashMap<usize, Vec<Vec<f32>>>,
    /// Buffers taken per length since the last trim, and in the step before.
    demand: HashMap<usize, usize>,
    previous: HashMap<usize, usize>,
}

impl BufferPool {
    /// A buffer of `len` values with unspecified contents (a recycled one when available).
    pub(crate) fn take(&mut self, len: usize) -> Vec<f32> {
        *self.demand.entry(len).or_default() += 1;
        match self.free.get_mut(&len).and_then(Vec::pop) {
            Some(buf) => buf,
            None => vec![0.0; len],
        }
    }

    /// A buffer of `len` zeros.
    pub(crate) fn zeros(&mut self, len: usize) -> Vec<f32> {
        let mut buf = self.take(len);
        fill(&mut buf, 0.0);
        buf
    }

    pub(crate) fn give(&mut self, buf: Vec<f32>) {
        if !buf.is_empty() {
            self.free.entry(buf.len()).or_default().push(buf);
        }
    }

    /// Drops free buffers beyond what the last two steps took of each length.
    pub(crate) fn trim(&mut self) {
        let (demand, previous) = (&self.demand, &self.previous);
        self.free.retain(|len, bufs| {
            bufs.truncate(
                demand
                    .get(len)
                    .copied()
                    .unwrap_or(0)
                    .max(previous.get(len).copied().unwrap_or(0)),
            );
            !bufs.is_empty()
        });
        self.previous = std::mem::take(&mut self.demand);
    }

    /// Number of buffers held (for tests).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.free.values().map(Vec::len).sum()
    }
}

/// Sets every value of `buf` to `v`; large buffers by all threads (the backward pass zeroes one
/// per input gradient an op adds into, and a serial fill would be a serial share of every step).
pub(crate) fn fill(buf: &mut [f32], v: f32) {
    use rayon::prelude::*;
    if buf.len() >= PARALLEL_FILL {
        buf.par_chunks_mut(PARALLEL_FILL).for_each(|c| c.fill(v));
    } else {
        buf.fill(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zeros whatever a recycled buffer held; keeps what the last two steps took of a length
    /// and drops the rest; ignores empty buffers.
    #[test]
    fn recycles_zeroes_and_trims_to_recent_demand() {
        let mut p = BufferPool::default();
        p.give(vec![7.0; 3]);
        p.give(Vec::new());
        assert_eq!(p.held(), 1);
        assert_eq!(p.zeros(3), vec![0.0; 3]);
        assert_eq!(p.held(), 0);
        assert_eq!(p.zeros(PARALLEL_FILL + 3), vec![0.0; PARALLEL_FILL + 3]);
        // This step took two buffers of length 5 (and one of 3 above): four given back, two kept.
        let (a, b) = (p.take(5), p.take(5));
        for buf in [a, b, vec![1.0; 5], vec![1.0; 5], vec![2.0; 3]] {
            p.give(buf);
        }
        p.trim();
        assert_eq!(p.held(), 3);
        // The next step takes none: the previous step's demand still holds them; then it lapses.
        p.trim();
        assert_eq!(p.held(), 3);
        p.trim();
        assert_eq!(p.held(), 0);
    }
}
