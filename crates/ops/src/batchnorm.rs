//! Batch normalisation with PyTorch's semantics (see `kernels::batchnorm`): training mode uses the
//! batch statistics and updates the running ones; eval mode uses the running ones.
use crate::check;
use autograd::{Backward, GradSlots, Result, Tape, Tensor, Var};
use kernels::batchnorm::{self as kbn, BnShape};

/// A layer's running mean and variance (not differentiated; updated in training mode).
#[derive(Clone, Debug, PartialEq)]
pub struct RunningStats {
    /// Running mean per channel.
    pub mean: Vec<f32>,
    /// Running (unbiased) variance per channel.
    pub var: Vec<f32>,
}

impl RunningStats {
    /// PyTorch's initial state: mean 0, variance 1.
    pub fn new(channels: usize) -> Self {
        RunningStats {
            mean: vec![0.0; channels],
            var: vec![1.0; channels],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
/// How a batch norm runs: batch statistics and a running update in training mode, the running
/// statistics in eval mode (PyTorch's semantics).
pub struct BatchNormOptions {
    /// Normalise with the batch's statistics and update the running ones.
    pub training: bool,
    /// Weight of the new batch in the running update (PyTorch's 0.1).
    pub momentum: f32,
    /// Added to the variance before the square root (PyTorch's 1e-5).
    pub eps: f32,
}

impl Default for BatchNormOptions {
    /// Training mode, PyTorch's momentum 0.1 and eps 1e-5.
    fn default() -> Self {
        BatchNormOptions {
            training: true,
            momentum: 0.1,
            eps: 1e-5,
        }
    }
}

struct BnBack {
    shape: BnShape,
    mean: Vec<f32>,
    var: Vec<f32>,
    eps: f32,
    training: bool,
}

impl Backward for BnBack {
    /// Training: dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)); eval: dx = gamma *
    /// invstd * dy. Both: dgamma = sum(dy * xhat), dbeta = sum(dy), per channel.
    fn backward(&self, inputs: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        let gamma = inputs.get(1).map(|t| t.data());
        let mut scratch = grads.scratch(kbn::backward_scratch_len(self.shape));
        let [dx, rest @ ..] = &mut grads[..] else {
            return;
        };
        let (dgamma, dbeta) = match rest {
            [a, b] => (
                a.as_mut().map(|t| t.data_mut()),
                b.as_mut().map(|t| t.data_mut()),
            ),
            _ => (None, None),
        };
        let pass = if self.training {
            kbn::backward_train
        } else {
            kbn::backward_eval
        };
        pass(
            self.shape,
            inputs[0].data(),
            &self.mean,
            &self.var,
            self.eps,
            gamma,
            g.data(),
            dx.as_mut().map(|t| t.data_mut()),
            dgamma,
            dbeta,
            &mut scratch,
        );
        grads.recycle(scratch);
    }

    fn cost(&self, _: &[&Tensor], y: &Tensor) -> autograd::Cost {
        crate::cost::batch_norm(y.numel())
    }
}

/// Batch norm of x `[N, C, H, W]` (or `[N, C]`) per channel. `affine` = (gamma, beta), each `[C]`.
/// Training mode needs more than one value per channel and updates `running` if given; eval mode
/// requires `running`.
pub fn batch_norm(
    tape: &mut Tape,
    x: Var,
    affine: Option<(Var, Var)>,
    running: Option<&mut RunningStats>,
    o: BatchNormOptions,
) -> Result<Var> {
    const OP: &str = "batch_norm";
    let dims = tape.value(x).dims().to_vec();
    let shape = bn_shape(OP, &dims)?;
    if let Some((g, b)) = affine {
        check::shape_is(tape, g, &[shape.c], OP)?;
        check::shape_is(tape, b, &[shape.c], OP)?;
    }
    let (mean, var) = statistics(OP, shape, &dims, tape.value(x).data(), None, running, o)?;
    let mut y = tape.buffer(dims);
    let gamma = affine.map(|(g, _)| tape.value(g).data());
    let beta = affine.map(|(_, b)| tape.value(b).data());
    kbn::normalize(
        shape,
        tape.value(x).data(),
        &mean,
        &var,
        o.eps,
        gamma,
        beta,
        y.data_mut(),
    );
    let inputs: Vec<Var> = match affine {
        Some((g, b)) => vec![x, g, b],
        None => vec![x],
    };
    Ok(tape.push(
        OP,
        y,
        &inputs,
        BnBack {
            shape,
            mean,
            var,
            eps: o.eps,
            training: o.training,
        },
    ))
}

/// A batch norm's view of an input of dimensions `dims` ([N, C, ...] -> N, C, the product of the
/// rest); an error naming `op` for fewer than two dimensions.
pub(crate) fn bn_shape(op: &'static str, dims: &[usize]) -> Result<BnShape> {
    check::arg(dims.len() >= 2, op, || {
        format!("input {dims:?} needs at least [N, C]")
    })?;
    Ok(BnShape {
        n: dims[0],
        c: dims[1],
        hw: dims[2..].iter().product(),
    })
}

/// The per-channel mean and variance a batch norm of `x` (laid out as `shape`) normalises with:
/// training mode computes the batch statistics (more than one value per channel needed) and moves
/// `running` towards them; eval mode returns `running`, which it requires. `dims` is for messages.
/// `planes`: x's per-plane statistics when its producer took them ([`kbn::plane_stats`], the
/// same bits as taking them here).
pub(crate) fn statistics(
    op: &'static str,
    shape: BnShape,
    dims: &[usize],
    x: &[f32],
    planes: Option<&[f32]>,
    running: Option<&mut RunningStats>,
    o: BatchNormOptions,
) -> Result<(Vec<f32>, Vec<f32>)> {
    if let Some(r) = &running {
        check::arg(
            r.mean.len() == shape.c && r.var.len() == shape.c,
            op,
            || {
                format!(
                    "running stats hold {} channels, input has {}",
                    r.mean.len(),
                    shape.c
                )
            },
        )?;
    }
    let (mut mean, mut var) = (vec![0.0; shape.c], vec![0.0; shape.c]);
    if o.training {
        check::arg(shape.n * shape.hw > 1, op, || {
            format!("training needs more than one value per channel, input {dims:?}")
        })?;
        match planes {
            Some(p) => kbn::merge_stats(shape, p, &mut mean, &mut var),
            None => {
                let mut partial = vec![0.0; kbn::stats_partial_len(shape)];
                kbn::batch_stats(shape, x, &mut partial, &mut mean, &mut var);
            }
        }
        if let Some(r) = running {
            kbn::update_running(shape, &mean, &var, o.momentum, &mut r.mean, &mut r.var);
        }
    } else {
        let r = running.ok_or_else(|| autograd::Error::BadArgument {
            op,
            why: "eval mode needs running statistics".into(),
        })?;
        mean.copy_from_slice(&r.mean);
        var.copy_from_slice(&r.var);
    }
    Ok((mean, var))
}

/// A batch norm without affine parameters fused after another op (`conv2d_bn`, `separable_conv_bn`). Only
/// its output y is kept: for a non-affine BN y is x-hat, so the VJP needs nothing else.
pub(crate) struct TrailingBn {
    shape: BnShape,
    mean: Vec<f32>,
    var: Vec<f32>,
    eps: f32,
    training: bool,
}

impl TrailingBn {
    /// Normalises `z`, the producing op's [N, C, H, W] output, in place into the node's value.
    /// `planes`: z's per-plane statistics if the producer took them.
    pub(crate) fn apply(
        op: &'static str,
        z: Tensor,
        planes: Option<&[f32]>,
        running: Option<&mut RunningStats>,
        o: BatchNormOptions,
    ) -> Result<(Tensor, TrailingBn)> {
        let d = z.dims().to_vec();
        let shape = bn_shape(op, &d)?;
        let (mean, var) = statistics(op, shape, &d, z.data(), planes, running, o)?;
        // Nothing reads z after this: normalised where it is.
        let mut y = z;
        kbn::normalize_in_place(shape, y.data_mut(), (&mean, &var, o.eps), None, None);
        Ok((
            y,
            TrailingBn {
                shape,
                mean,
                var,
                eps: o.eps,
                training: o.training,
            },
        ))
    }

    /// Values of the scratch [`TrailingBn::output_grad`] needs.
    pub(crate) fn scratch_len(&self) -> usize {
        kbn::backward_scratch_len(self.shape)
    }

    /// In training mode, dL/dz's per-channel coefficients from the output y and dL/dy
    /// ([`kbn::OutputGrad`]), for a producing op that applies them sample by sample; `None` in
    /// eval mode (use [`TrailingBn::input_grad`]).
    pub(crate) fn output_grad<'a>(
        &self,
        y: &Tensor,
        g: &Tensor,
        scratch: &'a mut [f32],
    ) -> Option<kbn::OutputGrad<'a>> {
        self.training.then(|| {
            kbn::OutputGrad::train(self.shape, y.data(), &self.var, self.eps, g.data(), scratch)
        })
    }

    /// dL/dz from the output y and dL/dy: training invstd * (dy - mean(dy) - y * mean(dy * y)),
    /// eval invstd * dy. Its buffer comes from the tape's pool: hand it back with `grads.recycle`.
    pub(crate) fn input_grad(&self, y: &Tensor, g: &Tensor, grads: &mut GradSlots) -> Tensor {
        let mut scratch = grads.scratch(kbn::backward_scratch_len(self.shape));
        let mut dz;
        if self.training {
            // Written whole (`0.0 + v`, the bits of adding into zeros), not zeroed first.
            dz = grads.scratch(y.numel());
            kbn::backward_train_from_output(
                self.shape,
                y.data(),
                &self.var,
                self.eps,
                g.data(),
                &mut dz,
                false,
                &mut scratch,
            );
        } else {
            dz = grads.zeros(y.numel());
            kbn::backward_eval(
                self.shape,
                y.data(),
                &self.mean,
                &self.var,
                self.eps,
                None,
                g.data(),
                Some(&mut dz),
                None,
                None,
                &mut scratch,
            );
        }
        grads.recycle(scratch);
        Tensor::from_vec(y.shape().clone(), dz).expect("same shape")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check, min_channel_std, tensor};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn train_and_eval_gradients(
            (x, g, b, rm, rv) in (2usize..4, 1usize..4, 2usize..4, 2usize..4).prop_flat_map(|(n, c, h, w)|
                (tensor(vec![n, c, h, w]), tensor(vec![c]), tensor(vec![c]), tensor(vec![c]), tensor(vec![c])))
        ) {
            prop_assume!(min_channel_std(&x) >= 0.2, "a nearly constant channel: FD step too coarse");
            let c = g.numel();
            check(|t, v| batch_norm(t, v[0], None, None, BatchNormOptions::default()), std::slice::from_ref(&x), 11);
            check(|t, v| batch_norm(t, v[0], Some((v[1], v[2])), None, BatchNormOptions::default()), &[x.clone(), g.clone(), b.clone()], 12);
            let running = RunningStats { mean: rm.data().to_vec(), var: rv.data().iter().map(|v| v.abs() + 0.5).collect() };
            let eval = BatchNormOptions { training: false, ..Default::default() };
            check(|t, v| batch_norm(t, v[0], Some((v[1], v[2])), Some(&mut running.clone()), eval), &[x.clone(), g, b], 13);
            // A training forward moves the running statistics as PyTorch does: momentum 0.1
            // towards the batch mean and the unbiased batch variance, per channel.
            let mut moved = running.clone();
            let mut t = Tape::new();
            let xv = t.leaf(x.clone(), false);
            batch_norm(&mut t, xv, None, Some(&mut moved), BatchNormOptions::default()).unwrap();
            let [n, _, h, w] = [x.dims()[0], c, x.dims()[2], x.dims()[3]];
            for ch in 0..c {
                let vals: Vec<f64> = (0..n)
                    .flat_map(|s| x.data()[(s * c + ch) * h * w..][..h * w].iter().map(|&v| v as f64))
                    .collect();
                let m = vals.iter().sum::<f64>() / vals.len() as f64;
                let var = vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (vals.len() - 1) as f64;
                let want_mean = 0.9 * running.mean[ch] as f64 + 0.1 * m;
                let want_var = 0.9 * running.var[ch] as f64 + 0.1 * var;
                prop_assert!((moved.mean[ch] as f64 - want_mean).abs() < 1e-5, "mean {} vs {want_mean}", moved.mean[ch]);
                prop_assert!((moved.var[ch] as f64 - want_var).abs() < 1e-5 * want_var.max(1.0), "var {} vs {want_var}", moved.var[ch]);
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut t = Tape::new();
        let x = t.leaf(Tensor::zeros([1, 2, 1, 1]), true);
        assert!(
            batch_norm(&mut t, x, None, None, BatchNormOptions::default()).is_err(),
            "one value per channel"
        );
        let x = t.leaf(Tensor::zeros([2, 2, 2, 2]), true);
        let eval = BatchNormOptions {
            training: false,
            ..Default::default()
        };
        assert!(
            batch_norm(&mut t, x, None, None, eval).is_err(),
            "eval without running stats"
        );
        assert!(batch_norm(
            &mut t,
            x,
            None,
            Some(&mut RunningStats::new(3)),
            BatchNormOptions::default()
        )
        .is_err());
    }
}
