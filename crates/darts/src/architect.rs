//! The architect: the second-order architecture gradient (SPEC's one-step unrolled approximation
//! with a finite-difference Hessian-vector product). The first-order gradient is one
//! [`crate::pass`] at the current weights.
use crate::pass::{PassOut, Want};
use crate::Result;
use tensor::Tensor;

/// w + s * d, elementwise over parameter lists.
fn axpy_all(w: &[Tensor], s: f32, d: &[Tensor]) -> Vec<Tensor> {
    w.iter()
        .zip(d)
        .map(|(w, d)| {
            let mut out = w.clone();
            kernels::elementwise::axpy(s, d.data(), out.data_mut());
            out
        })
        .collect()
}

/// The hyper-parameters of the virtual SGD step.
#[derive(Clone, Copy, Debug)]
pub struct VirtualStep<'a> {
    /// The current weight learning rate eta.
    pub lr: f32,
    /// The optimizer's momentum (0.9 in DARTS).
    pub momentum: f32,
    /// The optimizer's L2 weight decay.
    pub weight_decay: f32,
    /// The optimizer's momentum buffers v (zeros before the first step).
    pub momentum_buffers: &'a [Tensor],
}

/// w' = w - eta * (momentum * v + g + wd * w).
pub fn virtual_weights(w: &[Tensor], g: &[Tensor], v: VirtualStep) -> Vec<Tensor> {
    w.iter()
        .zip(g)
        .zip(v.momentum_buffers)
        .map(|((w, g), m)| {
            let mut out = w.clone();
            for (((o, &wv), &gv), &mv) in out
                .data_mut()
                .iter_mut()
                .zip(w.data())
                .zip(g.data())
                .zip(m.data())
            {
                *o = wv - v.lr * (v.momentum * mv + gv + v.weight_decay * wv);
            }
            out
        })
        .collect()
}

/// The batch a pass runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch {
    /// The training batch (the virtual step and the Hessian-vector product).
    Train,
    /// The validation batch (the architecture loss).
    Val,
}

/// A loss evaluation for the unrolled architect: `eval(weights, batch, want, scratch_stats)` runs
/// one pass at the given weights (and the current alphas). `scratch_stats` asks for throw-away
/// batch-norm statistics instead of the model's own.
pub type Evaluate<'a> = dyn FnMut(&[Tensor], Batch, Want, bool) -> Result<PassOut> + 'a;

/// Second-order architecture gradient (SPEC): grad_a L_val(w', a) - eta * (grad_a L_train(w+, a) -
/// grad_a L_train(w-, a)) / (2 eps), with w' one virtual SGD step, w± = w ± eps * grad_w' L_val(w', a)
/// and eps = 0.01 / ||grad_w' L_val(w', a)||. Returns the validation pass at w' (its loss and
/// accuracy) with `alpha_grads` replaced by the unrolled gradient. As in the reference, only the
/// validation pass at w' uses throw-away BN statistics (the reference runs it on a copy of the
/// model); the training passes at w, w+ and w- update the model's own running statistics.
pub fn unrolled_alpha_grads(
    eval: &mut Evaluate,
    weights: &[Tensor],
    step: VirtualStep,
) -> Result<PassOut> {
    let g_train = eval(
        weights,
        Batch::Train,
        Want {
            weights: true,
            alphas: false,
        },
        false,
    )?;
    if !g_train.loss.is_finite() {
        return Ok(g_train);
    }
    let w_prime = virtual_weights(weights, &g_train.weight_grads, step);
    let mut val_out = eval(
        &w_prime,
        Batch::Val,
        Want {
            weights: true,
            alphas: true,
        },
        true,
    )?;
    if !val_out.loss.is_finite() {
        return Ok(val_out);
    }
    let dw = std::mem::take(&mut val_out.weight_grads);
    let norm = crate::optim::global_norm(&dw.iter().map(Tensor::data).collect::<Vec<_>>());
    let eps = 0.01 / norm.max(f32::MIN_POSITIVE);
    let mut alpha_grads_at = |sign: f32| -> Result<Vec<Tensor>> {
        let w = axpy_all(weights, sign * eps, &dw);
        Ok(eval(
            &w,
            Batch::Train,
            Want {
                weights: false,
                alphas: true,
            },
            false,
        )?
        .alpha_grads)
    };
    let plus = alpha_grads_at(1.0)?;
    let minus = alpha_grads_at(-1.0)?;
    let coef = step.lr / (2.0 * eps);
    for ((g, p), mi) in val_out.alpha_grads.iter_mut().zip(&plus).zip(&minus) {
        for ((gv, &pv), &mv) in g.data_mut().iter_mut().zip(p.data()).zip(mi.data()) {
            *gv -= coef * (pv - mv);
        }
    }
    Ok(val_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_weights_are_one_sgd_step_with_momentum_and_decay() {
        let w = [Tensor::from_vec([2], vec![1.0, -2.0]).unwrap()];
        let g = [Tensor::from_vec([2], vec![0.5, 0.25]).unwrap()];
        let v = [Tensor::from_vec([2], vec![0.1, -0.3]).unwrap()];
        let step = VirtualStep {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
            momentum_buffers: &v,
        };
        // w - lr * (momentum * v + g + wd * w), by hand.
        let want = [
            1.0 - 0.1 * (0.9 * 0.1 + 0.5 + 0.01 * 1.0),
            -2.0 - 0.1 * (0.9 * -0.3 + 0.25 + 0.01 * -2.0),
        ];
        let got = virtual_weights(&w, &g, step);
        for (a, b) in got[0].data().iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
