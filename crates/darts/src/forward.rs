//! Running either network on the tape. [`Weights`] is what a pass reads (the parameters, the
//! model's own or a virtual step's, and the BN statistics); [`Weights::leaves`] puts them on the
//! tape and gives the one [`ForwardCtx`] both networks' `forward(tape, x, ctx, ..)` take;
//! [`ForwardCtx::grads`] takes the parameters' gradients off the tape after the backward.
use crate::params::{BnStore, ParamStore};
use autograd::{Tape, Var};
use tensor::Tensor;

/// A network's tensors for one pass: parameter names and values (same order) and the BN running
/// statistics the pass reads and, in training mode, updates.
pub struct Weights<'a> {
    /// Reference names of the parameters.
    pub names: &'a [String],
    /// The parameter values, in `names` order.
    pub values: &'a [Tensor],
    /// The BN running statistics.
    pub bns: &'a mut BnStore,
}

impl<'a> Weights<'a> {
    /// A store's parameters with BN statistics.
    pub fn of(params: &'a ParamStore, bns: &'a mut BnStore) -> Weights<'a> {
        Weights {
            names: &params.names,
            values: &params.values,
            bns,
        }
    }

    /// Records every parameter on `t` as a named leaf (with a gradient slot when `grad`): the
    /// context a forward pass reads. `train_bn` picks batch statistics (updating the running
    /// ones, as PyTorch's `train()`) over running statistics.
    pub fn leaves(self, t: &mut Tape, grad: bool, train_bn: bool) -> ForwardCtx<'a> {
        let vars = self
            .names
            .iter()
            .zip(self.values)
            .map(|(n, w)| t.named_leaf(n.as_str(), w, grad))
            .collect();
        ForwardCtx {
            values: self.values,
            weights: vars,
            bns: self.bns,
            train_bn,
        }
    }
}

/// Everything a forward pass reads besides its input: the parameters' handles on the tape (in
/// store order), the BN statistics and the BN mode. Both networks take it.
pub struct ForwardCtx<'a> {
    values: &'a [Tensor],
    pub(crate) weights: Vec<Var>,
    pub(crate) bns: &'a mut BnStore,
    pub(crate) train_bn: bool,
}

impl ForwardCtx<'_> {
    /// The parameters' gradients after `t.backward`, in store order (zeros for a parameter the
    /// loss does not reach).
    pub fn grads(&self, t: &mut Tape) -> Vec<Tensor> {
        take_grads(t, &self.weights, self.values)
    }
}

/// The gradients of leaves `vars` (made from `values`) after `t.backward`: zeros shaped like the
/// value for a leaf the loss does not reach.
pub(crate) fn take_grads(t: &mut Tape, vars: &[Var], values: &[Tensor]) -> Vec<Tensor> {
    vars.iter()
        .zip(values)
        .map(|(&v, w)| {
            t.take_grad(v)
                .unwrap_or_else(|| Tensor::zeros(w.shape().clone()))
        })
        .collect()
}

/// What a forward pass gives: the logits [N, classes], and the auxiliary head's logits (only the
/// evaluation network has that head, and it runs only in training mode).
#[derive(Clone, Copy, Debug)]
pub struct Logits {
    /// The classifier's logits.
    pub main: Var,
    /// The auxiliary head's logits, when it ran.
    pub aux: Option<Var>,
}

/// Number of rows whose largest logit is at the label.
pub fn count_correct(logits: &Tensor, labels: &[u32]) -> usize {
    let k = logits.dims()[1];
    logits
        .data()
        .chunks(k)
        .zip(labels)
        .filter(|(row, &l)| (0..k).max_by(|&a, &b| row[a].total_cmp(&row[b])) == Some(l as usize))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_correct_counts_rows_whose_largest_logit_is_the_label() {
        let logits = Tensor::from_vec(
            [4, 3],
            vec![
                0.1, 2.0, -1.0, // argmax 1
                3.0, 0.0, 0.5, // argmax 0
                -2.0, -1.0, -0.5, // argmax 2
                1.0, 1.5, 0.2, // argmax 1
            ],
        )
        .unwrap();
        assert_eq!(count_correct(&logits, &[1, 0, 2, 1]), 4);
        assert_eq!(count_correct(&logits, &[1, 1, 2, 0]), 2);
        assert_eq!(count_correct(&logits, &[0, 2, 1, 2]), 0);
    }

    /// Leaves carry the store's names; grads come back in store order, zeros where the loss does
    /// not reach.
    #[test]
    fn leaves_and_grads_follow_the_store_order() {
        let mut params = ParamStore::default();
        params.push("a".into(), Tensor::from_vec([2], vec![1.0, 2.0]).unwrap());
        params.push("unused".into(), Tensor::from_vec([1], vec![5.0]).unwrap());
        params.push("b".into(), Tensor::from_vec([2], vec![3.0, -1.0]).unwrap());
        let mut bns = BnStore::default();
        let mut t = Tape::new();
        let ctx = Weights::of(&params, &mut bns).leaves(&mut t, true, false);
        let y = ops::axpy(&mut t, 2.0, ctx.weights[0], ctx.weights[2]).unwrap();
        let loss = ops::sum(&mut t, y).unwrap();
        t.backward(loss).unwrap();
        let g = ctx.grads(&mut t);
        assert_eq!(g[0].data(), &[2.0, 2.0]); // d sum(2a + b) / da = 2
        assert_eq!(g[1].data(), &[0.0]);
        assert_eq!(g[2].data(), &[1.0, 1.0]);
    }
}
