//! The separable block as one node: y = W_pw depthwise(x, W_dw) (the depthwise conv may read x
//! through a ReLU), optionally followed by a non-affine BN. Only x and y are kept: the depthwise
//! output is made again in the backward, sample by sample in cache ([`kernels::separable`]),
//! instead of being stored, which drops the largest tensor of a DARTS search step.
use crate::batchnorm::TrailingBn;
use crate::check;
use crate::conv::{depthwise_geometry, Conv2dOptions};
use crate::mixed::TermGrad;
use crate::{BatchNormOptions, RunningStats};
use autograd::{Backward, Cost, Deferred, GradOut, GradSlots, Result, Tape, Tensor, Var, Work};
use kernels::separable::{self as ksep, SepGeom, SepGrads, Upstream};
use std::any::TypeId;

struct SepBack(SepGeom, Option<TrailingBn>);

impl SepBack {
    /// The block's backward for dL/dy from `up`: dz = W_pw^T dy, z = depthwise(x) made again,
    /// dW_pw = dy z^T, and the depthwise conv's dx and dW_dw from dz.
    fn run(&self, inputs: &[&Tensor], up: Upstream, grads: &mut GradSlots) {
        let mut scratch = grads.scratch(self.0.backward_scratch_len());
        let mut outs = grads.outs().into_iter();
        let (Some(dx), Some(dw_dw), Some(dw_pw)) = (outs.next(), outs.next(), outs.next()) else {
            unreachable!("three inputs: x, w_dw, w_pw")
        };
        // dx is written whole into a fresh slot; the weights' gradients are added into.
        let want = SepGrads {
            dx_add: dx.as_ref().is_none_or(|d| d.add),
            dx: dx.map(|d| d.data),
            dw_dw: dw_dw.map(GradOut::accumulate),
            dw_pw: dw_pw.map(GradOut::accumulate),
        };
        let (x, w_dw, w_pw) = (inputs[0].data(), inputs[1].data(), inputs[2].data());
        ksep::backward(&self.0, x, w_dw, w_pw, up, want, &mut scratch);
        drop(outs);
        grads.recycle(scratch);
    }
}

impl Backward for SepBack {
    /// The BN's VJP from its output (when fused; in training mode sample by sample inside the
    /// block), then the block's ([`SepBack::run`]).
    fn backward(&self, inputs: &[&Tensor], y: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        // A training-mode BN's gradient is made sample by sample inside the block's backward
        // (from per-channel coefficients); an eval-mode one's in a buffer first.
        let mut bn_scratch = grads.scratch(self.1.as_ref().map_or(0, TrailingBn::scratch_len));
        let coef = self
            .1
            .as_ref()
            .and_then(|bn| bn.output_grad(y, g, &mut bn_scratch));
        let dpre = match (&self.1, &coef) {
            (Some(bn), None) => Some(bn.input_grad(y, g, grads)),
            _ => None,
        };
        let up = match (&coef, &dpre) {
            (Some(coef), _) => Upstream::Bn {
                y: y.data(),
                g: g.data(),
                coef,
            },
            (None, Some(d)) => Upstream::Grad(d.data()),
            (None, None) => Upstream::Grad(g.data()),
        };
        self.run(inputs, up, grads);
        grads.recycle(bn_scratch);
        if let Some(d) = dpre {
            grads.recycle(d.into_vec());
        }
    }

    /// A block without a trailing BN takes a mixed op's term gradient as a recipe
    /// ([`TermGrad`]): each sample's dL/dy is made in cache from the mixed op's output gradient
    /// and this block's output, never written to memory.
    fn takes_deferred(&self, kind: TypeId) -> bool {
        self.1.is_none() && kind == TypeId::of::<TermGrad>()
    }

    fn backward_deferred(
        &self,
        inputs: &[&Tensor],
        y: &Tensor,
        grad_out: &dyn Deferred,
        grads: &mut GradSlots,
    ) {
        let t = TermGrad::of(grad_out);
        self.run(inputs, Upstream::Term(t.planes(y.data())), grads);
    }

    /// Both convs' work; the backward also makes the depthwise output again (its forward's
    /// arithmetic once more). The intermediate is never written to memory.
    fn cost(&self, _: &[&Tensor], y: &Tensor) -> Cost {
        let (d, p) = (
            crate::cost::conv(&self.0.dw),
            crate::cost::conv(&self.0.pointwise()),
        );
        // z's bytes: written and read once forward; read twice and its gradient written and read
        // once backward, in the two convs' separate costs.
        let z = 4.0 * self.0.dw.y_len() as f64;
        let cost = Cost {
            forward: Work {
                flops: d.forward.flops + p.forward.flops,
                bytes: d.forward.bytes + p.forward.bytes - 2.0 * z,
            },
            backward: Work {
                flops: d.backward.flops + p.backward.flops + d.forward.flops,
                bytes: d.backward.bytes + p.backward.bytes - 4.0 * z,
            },
        };
        match self.1 {
            Some(_) => crate::cost::then_bn(cost, y.numel()),
            None => cost,
        }
    }
}

/// Validates the block: x [N, C, H, W], w_dw [C, 1, kh, kw] (with `o`), w_pw [Cout, C, 1, 1].
fn geometry(
    tape: &Tape,
    x: Var,
    w_dw: Var,
    w_pw: Var,
    o: Conv2dOptions,
    op: &'static str,
) -> Result<SepGeom> {
    let dw = depthwise_geometry(tape, x, w_dw, o, op)?;
    let c_out = tape.value(w_pw).dims().first().copied().unwrap_or(0);
    check::shape_is(tape, w_pw, &[c_out.max(1), dw.c_in, 1, 1], op)?;
    Ok(SepGeom { dw, c_out })
}

/// The block's output before any BN, its buffer from the tape's pool.
/// The block's output; with `stats`, also each output plane's statistics for a trailing
/// training-mode BN (a pool buffer: hand it back with `tape.recycle`).
fn output(
    tape: &mut Tape,
    g: &SepGeom,
    x: Var,
    w_dw: Var,
    w_pw: Var,
    stats: bool,
) -> (Tensor, Option<Tensor>) {
    let (ho, wo) = g.dw.out_hw();
    let mut y = tape.buffer([g.dw.n, g.c_out, ho, wo]);
    let mut planes = stats.then(|| tape.buffer([g.dw.n, g.c_out, 2]));
    let (xv, a, b) = (
        tape.value(x).data(),
        tape.value(w_dw).data(),
        tape.value(w_pw).data(),
    );
    let out = planes.as_mut().map(|p| p.data_mut());
    ksep::forward(g, xv, a, b, y.data_mut(), out);
    (y, planes)
}

/// Depthwise conv (options `o`: stride, padding, dilation, fused input ReLU) then a 1x1 conv, as
/// one node: x [N, C, H, W], w_dw [C, 1, kh, kw], w_pw [Cout, C, 1, 1] -> [N, Cout, Ho, Wo].
pub fn separable_conv(
    tape: &mut Tape,
    x: Var,
    w_dw: Var,
    w_pw: Var,
    o: Conv2dOptions,
) -> Result<Var> {
    const OP: &str = "separable_conv";
    let g = geometry(tape, x, w_dw, w_pw, o, OP)?;
    let (y, _) = output(tape, &g, x, w_dw, w_pw, false);
    Ok(tape.push(OP, y, &[x, w_dw, w_pw], SepBack(g, None)))
}

/// [`separable_conv`], and each output plane's BN statistics ([N, Cout, 2]: its sum and squared
/// deviations from its mean), taken while the plane is in cache, for a training-mode BN folded
/// into the op that reads it ([`crate::Norm::BnPlanes`]): the bits that BN would take itself,
/// without reading the output once more.
pub fn separable_conv_stats(
    tape: &mut Tape,
    x: Var,
    w_dw: Var,
    w_pw: Var,
    o: Conv2dOptions,
) -> Result<(Var, Vec<f32>)> {
    const OP: &str = "separable_conv";
    let g = geometry(tape, x, w_dw, w_pw, o, OP)?;
    let (y, planes) = output(tape, &g, x, w_dw, w_pw, true);
    let planes = planes.expect("asked for").into_vec();
    Ok((tape.push(OP, y, &[x, w_dw, w_pw], SepBack(g, None)), planes))
}

/// [`separable_conv`] followed by a batch norm *without* affine parameters, as one node: only x
/// and y are stored (for a non-affine BN, y is xhat). BN modes as in [`crate::batch_norm`].
pub fn separable_conv_bn(
    tape: &mut Tape,
    x: Var,
    w_dw: Var,
    w_pw: Var,
    o: Conv2dOptions,
    running: Option<&mut RunningStats>,
    bn: BatchNormOptions,
) -> Result<Var> {
    const OP: &str = "separable_conv_bn";
    let g = geometry(tape, x, w_dw, w_pw, o, OP)?;
    // A training-mode BN's statistics are taken per sample inside the block, while it is in cache.
    let (z, planes) = output(tape, &g, x, w_dw, w_pw, bn.training);
    let applied = TrailingBn::apply(OP, z, planes.as_ref().map(Tensor::data), running, bn);
    if let Some(p) = planes {
        tape.recycle(p);
    }
    let (y, trailing) = applied?;
    Ok(tape.push(OP, y, &[x, w_dw, w_pw], SepBack(g, Some(trailing))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{away_from_zero, check, min_channel_std, tensor};
    use crate::{conv2d, conv2d_bn, depthwise_conv2d};
    use proptest::prelude::*;

    /// DARTS's dw options: k 3 or 5, stride 1 or 2, dilation 1 or 2, "same" padding.
    fn options() -> impl Strategy<Value = (usize, Conv2dOptions)> {
        (
            prop_oneof![Just(3usize), Just(5)],
            1usize..3,
            1usize..3,
            any::<bool>(),
        )
            .prop_map(|(k, stride, dilation, pre_relu)| {
                let o = Conv2dOptions {
                    stride,
                    padding: dilation * (k - 1) / 2,
                    dilation,
                    groups: 1,
                    pre_relu,
                };
                (k, o)
            })
    }

    /// The one node against the ops it replaces (depthwise, then conv2d or conv2d_bn), values and
    /// gradients to the bit: same kernels, same order of sums.
    fn same_as_unfused(
        x: &Tensor,
        w_dw: &Tensor,
        w_pw: &Tensor,
        o: Conv2dOptions,
        bn: bool,
    ) -> std::result::Result<(), TestCaseError> {
        let r = Tensor::randn(
            vec![x.dims()[0], w_pw.dims()[0], 1, 1],
            1.0,
            &mut tensor::Rng::new(5),
        );
        let run = |fused: bool| {
            let mut t = Tape::new();
            let v: Vec<Var> = [x, w_dw, w_pw]
                .iter()
                .map(|a| t.leaf((*a).clone(), true))
                .collect();
            let mut rs = RunningStats::new(w_pw.dims()[0]);
            let train = BatchNormOptions::default();
            let y = match (fused, bn) {
                (true, true) => {
                    separable_conv_bn(&mut t, v[0], v[1], v[2], o, Some(&mut rs), train).unwrap()
                }
                (true, false) => separable_conv(&mut t, v[0], v[1], v[2], o).unwrap(),
                (false, _) => {
                    let z = depthwise_conv2d(&mut t, v[0], v[1], o).unwrap();
                    if bn {
                        conv2d_bn(
                            &mut t,
                            z,
                            v[2],
                            Conv2dOptions::default(),
                            Some(&mut rs),
                            train,
                        )
                        .unwrap()
                    } else {
                        conv2d(&mut t, z, v[2], Conv2dOptions::default()).unwrap()
                    }
                }
            };
            // A per-(sample, channel) weighting of the spatial sum: a loss BN does not cancel.
            let pooled = crate::global_avg_pool(&mut t, y).unwrap();
            let flat =
                Tensor::from_vec(t.value(pooled).shape().clone(), r.data().to_vec()).unwrap();
            let l = crate::dot_const(&mut t, pooled, &flat).unwrap();
            t.backward(l).unwrap();
            let bits = |t: &Tensor| t.data().iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            let mut out = vec![bits(t.value(y))];
            out.extend(v.iter().map(|&v| bits(t.grad(v).unwrap())));
            (out, rs)
        };
        let (a, b) = (run(true), run(false));
        prop_assert!(a.0 == b.0, "fused and unfused differ");
        prop_assert_eq!(a.1, b.1);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn separable_gradient_and_equivalence(
            (x, w_dw, w_pw, o) in (1usize..3, 1usize..4, 1usize..4, 4usize..8, options())
                .prop_flat_map(|(n, c, co, h, (k, o))| (tensor(vec![n, c, h, h + 1]), tensor(vec![c, 1, k, k]), tensor(vec![co, c, 1, 1]), Just(o)))
        ) {
            let x = if o.pre_relu { away_from_zero(x, 0.05) } else { x };
            same_as_unfused(&x, &w_dw, &w_pw, o, false)?;
            check(|t, v| separable_conv(t, v[0], v[1], v[2], o), &[x, w_dw, w_pw], 31);
        }

        #[test]
        fn separable_bn_gradient_and_equivalence(
            (x, w_dw, w_pw, o) in (2usize..4, 1usize..4, 1usize..4, 4usize..8, options())
                .prop_flat_map(|(n, c, co, h, (k, o))| (tensor(vec![n, c, h, h]), tensor(vec![c, 1, k, k]), tensor(vec![co, c, 1, 1]), Just(o)))
        ) {
            let x = if o.pre_relu { away_from_zero(x, 0.05) } else { x };
            same_as_unfused(&x, &w_dw, &w_pw, o, true)?;
            // The BN input must vary within each channel for the finite differences to be
            // meaningful (see the BN tests); weights of norm >= 0.5 keep BN's scale invariance
            // from bending the loss at the FD step.
            let (w_dw, w_pw) = (away_from_zero(w_dw, 0.5), away_from_zero(w_pw, 0.5));
            let mut t = Tape::new();
            let v: Vec<Var> = [&x, &w_dw, &w_pw].iter().map(|a| t.leaf((*a).clone(), false)).collect();
            let pre = separable_conv(&mut t, v[0], v[1], v[2], o).unwrap();
            prop_assume!(min_channel_std(t.value(pre)) >= 0.2, "a nearly constant BN channel");
            let train = BatchNormOptions::default();
            check(|t, v| separable_conv_bn(t, v[0], v[1], v[2], o, None, train), &[x.clone(), w_dw.clone(), w_pw.clone()], 32);
            let c = w_pw.dims()[0];
            let eval = BatchNormOptions { training: false, ..train };
            let running = RunningStats { mean: vec![0.1; c], var: vec![0.7; c] };
            check(|t, v| separable_conv_bn(t, v[0], v[1], v[2], o, Some(&mut running.clone()), eval), &[x, w_dw, w_pw], 33);
        }
    }

    /// The work a profiling tape hears, by hand: x [2, 4, 6, 6], w_dw [4, 1, 3, 3] (padding 1),
    /// w_pw [6, 4, 1, 1] -> y [2, 6, 6, 6]. Multiply-adds: 9 per depthwise output (z, 288 values),
    /// 4 per output (432). Bytes: x, the weights and y forward; backward dy, x and the weights
    /// read, dx and the weight gradients read and written; z never.
    #[test]
    fn profiled_work_is_both_convs_without_the_intermediate() {
        let mut t = Tape::new();
        t.set_profiling(true);
        let x = t.leaf(Tensor::zeros([2, 4, 6, 6]), true);
        let w_dw = t.leaf(Tensor::zeros([4, 1, 3, 3]), true);
        let w_pw = t.leaf(Tensor::zeros([6, 4, 1, 1]), true);
        let o = Conv2dOptions {
            padding: 1,
            ..Default::default()
        };
        let y = separable_conv(&mut t, x, w_dw, w_pw, o).unwrap();
        let l = crate::sum(&mut t, y).unwrap();
        t.backward(l).unwrap();
        let p = &t.take_profile()["separable_conv"];
        let (macs_dw, macs_pw) = (288.0 * 9.0, 432.0 * 4.0);
        let (xs, ws, ys) = (288.0, 36.0 + 24.0, 432.0);
        assert_eq!(
            p.forward,
            Work::new(2.0 * (macs_dw + macs_pw), xs + ws + ys)
        );
        assert_eq!(
            p.backward,
            Work::new(
                4.0 * (macs_dw + macs_pw) + 2.0 * macs_dw,
                ys + 3.0 * (xs + ws)
            )
        );
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let mut t = Tape::new();
        let x = t.leaf(Tensor::zeros([1, 3, 6, 6]), true);
        let w_dw = t.leaf(Tensor::zeros([3, 1, 3, 3]), true);
        let w_pw = t.leaf(Tensor::zeros([4, 3, 1, 1]), true);
        let o = Conv2dOptions {
            padding: 1,
            ..Default::default()
        };
        assert!(separable_conv(&mut t, x, w_dw, w_pw, o).is_ok());
        let wrong_c = t.leaf(Tensor::zeros([4, 2, 1, 1]), true);
        let not_1x1 = t.leaf(Tensor::zeros([4, 3, 3, 3]), true);
        let dw_wrong = t.leaf(Tensor::zeros([2, 1, 3, 3]), true);
        for (a, b) in [(w_dw, wrong_c), (w_dw, not_1x1), (dw_wrong, w_pw)] {
            let e = separable_conv(&mut t, x, a, b, o).unwrap_err().to_string();
            assert!(e.contains("separable_conv"), "{e}");
        }
        let big = t.leaf(Tensor::zeros([3, 1, 9, 9]), true);
        assert!(separable_conv(&mut t, x, big, w_pw, Conv2dOptions::default()).is_err());
        let eval = BatchNormOptions {
            training: false,
            ..Default::default()
        };
        assert!(
            separable_conv_bn(&mut t, x, w_dw, w_pw, o, None, eval).is_err(),
            "eval BN needs running statistics"
        );
    }
}
