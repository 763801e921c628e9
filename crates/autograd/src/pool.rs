//! Recycled f32 buffers, so a training loop stops allocating after its first step.
use std::collections::HashMap;

/// Buffers returned by [`crate::Tape::reset`] and by freed gradients, keyed by length.
#[derive(Default)]
pub(crate) struct BufferPool {
    free: HashMap<usize, Vec<Vec<f32>>>,
}

impl BufferPool {
    /// A buffer of `len` values with unspecified contents (a recycled one when available).
    pub(crate) fn take(&mut self, len: usize) -> Vec<f32> {
        match self.free.get_mut(&len).and_then(Vec::pop) {
            Some(buf) => buf,
            None => vec![0.0; len],
        }
    }

    /// A buffer of `len` zeros.
    pub(crate) fn zeros(&mut self, len: usize) -> Vec<f32> {
        let mut buf = self.take(len);
        buf.fill(0.0);
        buf
    }

    pub(crate) fn give(&mut self, buf: Vec<f32>) {
        if !buf.is_empty() {
            self.free.entry(buf.len()).or_default().push(buf);
        }
    }
}
