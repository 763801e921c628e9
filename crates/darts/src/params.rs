//! Named parameter and batch-norm buffers, in the DARTS reference's state_dict naming.
use ops::RunningStats;
use std::collections::HashMap;
use tensor::Tensor;

/// Trainable weights, in creation order, addressed by index (the model) or name (files).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamStore {
    /// Reference names, in creation order.
    pub names: Vec<String>,
    /// The tensors, same order.
    pub values: Vec<Tensor>,
    index: HashMap<String, usize>,
}

impl ParamStore {
    /// Adds a tensor; returns its index.
    pub fn push(&mut self, name: String, value: Tensor) -> usize {
        let i = self.values.len();
        self.index.insert(name.clone(), i);
        self.names.push(name);
        self.values.push(value);
        i
    }

    /// The index of a name.
    pub fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Total number of scalars.
    pub fn numel(&self) -> usize {
        self.values.iter().map(Tensor::numel).sum()
    }
}

/// Batch-norm running statistics, each under its module prefix (e.g. `cells.0.preprocess0.op.2`);
/// files store `{prefix}.running_mean`, `{prefix}.running_var` and `{prefix}.num_batches_tracked`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BnStore {
    /// Each BN's name prefix (`cells.0.preprocess0.op.2`).
    pub prefixes: Vec<String>,
    /// Each BN's running mean and variance.
    pub stats: Vec<RunningStats>,
    /// Each BN's count of training-mode forwards (PyTorch's `num_batches_tracked`).
    pub batches_tracked: Vec<i64>,
}

impl BnStore {
    /// Adds a BN of `channels` channels at PyTorch's initial state; returns its index.
    pub fn push(&mut self, prefix: String, channels: usize) -> usize {
        self.prefixes.push(prefix);
        self.stats.push(RunningStats::new(channels));
        self.batches_tracked.push(0);
        self.stats.len() - 1
    }
}
