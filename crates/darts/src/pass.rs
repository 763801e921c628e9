//! One pass of the search model on one batch: the mean cross-entropy, the accuracy, and the
//! gradients asked for (weights, alphas, both or none).
use crate::checkpoint::ALPHA_NAMES;
use crate::forward::{count_correct, take_grads, Weights};
use crate::model::{Mixing, Supernet};
use crate::params::BnStore;
use crate::{Result, Weighting};
use autograd::Tape;
use tensor::Tensor;

/// What one pass produced.
pub struct PassOut {
    /// Mean cross-entropy of the batch.
    pub loss: f32,
    /// Rows whose largest logit is the label.
    pub correct: usize,
    /// Gradients of the weights (same order as the parameters), empty unless asked for.
    pub weight_grads: Vec<Tensor>,
    /// Gradients of [alphas_normal, alphas_reduce], empty unless asked for.
    pub alpha_grads: Vec<Tensor>,
}

/// The search model's tensors for one pass.
pub struct Model<'a> {
    /// The network's structure.
    pub net: &'a Supernet,
    /// Parameter names, in the order of `weights`.
    pub names: &'a [String],
    /// The weights to run with (the model's own, or a virtual step's).
    pub weights: &'a [Tensor],
    /// alphas_normal and alphas_reduce, each [14, 8].
    pub alphas: &'a [Tensor; 2],
    /// How alphas become mixture weights.
    pub weighting: Weighting,
}

/// Which gradients a pass computes; with neither, the tape records no backward at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Want {
    /// Compute the weights' gradients.
    pub weights: bool,
    /// Compute the alphas' gradients.
    pub alphas: bool,
}

/// Forward (and backward for the wanted gradients) of the mean cross-entropy on one batch.
/// `train_bn` chooses batch statistics (updating `bns`) or running statistics.
pub fn pass(
    tape: &mut Tape,
    m: &Model,
    bns: &mut BnStore,
    x: &Tensor,
    y: &[u32],
    want: Want,
    train_bn: bool,
) -> Result<PassOut> {
    tape.reset();
    tape.set_grad_enabled(want.weights || want.alphas);
    let weights = Weights {
        names: m.names,
        values: m.weights,
        bns,
    };
    let mut ctx = weights.leaves(tape, want.weights, train_bn);
    let alphas = [0, 1].map(|k| tape.named_leaf(ALPHA_NAMES[k], &m.alphas[k], want.alphas));
    let xv = tape.leaf(x.clone(), false);
    let mixing = Mixing {
        alphas,
        weighting: m.weighting,
    };
    let logits = m.net.forward(tape, xv, &mut ctx, mixing)?.main;
    let loss = ops::cross_entropy(tape, logits, y)?;
    let mut out = PassOut {
        loss: tape.value(loss).item()?,
        correct: count_correct(tape.value(logits), y),
        weight_grads: Vec::new(),
        alpha_grads: Vec::new(),
    };
    if (want.weights || want.alphas) && out.loss.is_finite() {
        tape.backward(loss)?;
        if want.weights {
            out.weight_grads = ctx.grads(tape);
        }
        if want.alphas {
            out.alpha_grads = take_grads(tape, &alphas, m.alphas);
        }
    }
    tape.set_grad_enabled(true);
    Ok(out)
}
