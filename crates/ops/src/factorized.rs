//! FactorizedReduce as one node: DARTS's stride-2 identity (and the preprocessing after a reduction
//! cell), y = concat(w0 relu(x)[::2, ::2], w1 relu(x)[1::2, 1::2]) over channels. It replaces
//! slice2d + two strided 1x1 conv2d + concat_channels ([`kernels::factorized`]): no shifted copy
//! of x, no concatenation copy, and their gradients' passes gone.
use crate::check;
use autograd::{Backward, Cost, GradOut, GradSlots, Result, Tape, Tensor, Var};
use kernels::factorized::{self as kfr, FrGeom, FrGrads};

struct FrBack(FrGeom);

impl Backward for FrBack {
    /// Per phase p: dx += mask(x > 0) * scatter(w_p^T dy_p), dw_p += sum_n dy_p,n gather_p(relu(x_n))^T.
    fn backward(&self, inputs: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        let mut scratch = grads.scratch(self.0.backward_scratch_len());
        let mut outs = grads.outs().into_iter();
        let (Some(dx), Some(dw0), Some(dw1)) = (outs.next(), outs.next(), outs.next()) else {
            unreachable!("three inputs: x, w0, w1")
        };
        // dx is written whole into a fresh slot; the weights' gradients are added into.
        let want = FrGrads {
            dx_add: dx.as_ref().is_none_or(|d| d.add),
            dx: dx.map(|d| d.data),
            dw: [dw0.map(GradOut::accumulate), dw1.map(GradOut::accumulate)],
        };
        let w = [inputs[1].data(), inputs[2].data()];
        kfr::backward(&self.0, inputs[0].data(), w, g.data(), want, &mut scratch);
        drop(outs);
        grads.recycle(scratch);
    }

    /// One multiply-add per (output, input channel), counted as a conv's; all of x is read (its
    /// unread pixels are in the cache lines read).
    fn cost(&self, _: &[&Tensor], _: &Tensor) -> Cost {
        let g = &self.0;
        let w = ((g.c_out[0] + g.c_out[1]) * g.c_in) as f64;
        crate::cost::linear_map(g.work() as f64, g.x_len() as f64, w, g.y_len() as f64)
    }
}

/// FactorizedReduce: x [N, C, H, W] (H and W even), w0 [C0, C, 1, 1], w1 [C1, C, 1, 1] ->
/// [N, C0 + C1, H / 2, W / 2]; the first C0 channels are w0 applied to relu(x) at the even
/// pixels (2i, 2j), the rest w1 at the odd ones (2i + 1, 2j + 1).
pub fn factorized_reduce(tape: &mut Tape, x: Var, w0: Var, w1: Var) -> Result<Var> {
    const OP: &str = "factorized_reduce";
    let [n, c_in, h, w] = check::nchw(tape, x, OP)?;
    check::arg(h % 2 == 0 && w % 2 == 0 && h > 0 && w > 0, OP, || {
        format!("needs an even, non-zero height and width, got {h}x{w}")
    })?;
    let c_out = [w0, w1].map(|v| tape.value(v).dims().first().copied().unwrap_or(0));
    for (v, c) in [w0, w1].into_iter().zip(c_out) {
        check::shape_is(tape, v, &[c.max(1), c_in, 1, 1], OP)?;
    }
    let g = FrGeom {
        n,
        c_in,
        h,
        w,
        c_out,
    };
    let mut y = tape.buffer([n, c_out[0] + c_out[1], h / 2, w / 2]);
    let ws = [tape.value(w0).data(), tape.value(w1).data()];
    kfr::forward(&g, tape.value(x).data(), ws, y.data_mut());
    Ok(tape.push(OP, y, &[x, w0, w1], FrBack(g)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{away_from_zero, check, tensor};
    use crate::{concat_channels, conv2d, slice2d, Conv2dOptions, Slice};
    use proptest::prelude::*;

    fn inputs() -> impl Strategy<Value = (Tensor, Tensor, Tensor)> {
        (
            1usize..3,
            1usize..4,
            1usize..4,
            1usize..4,
            1usize..3,
            1usize..3,
        )
            .prop_flat_map(|(n, c, h2, w2, c0, c1)| {
                (
                    tensor(vec![n, c, 2 * h2, 2 * w2]).prop_map(|x| away_from_zero(x, 0.05)),
                    tensor(vec![c0, c, 1, 1]),
                    tensor(vec![c1, c, 1, 1]),
                )
            })
    }

    /// The ops the node replaces: conv2d(relu(x)) stride 2, the same on x cropped by one pixel,
    /// channels concatenated.
    fn unfused(t: &mut Tape, v: &[Var]) -> Result<Var> {
        let o = Conv2dOptions {
            stride: 2,
            pre_relu: true,
            ..Default::default()
        };
        let [_, _, h, w] = t.value(v[0]).shape().nchw("test")?;
        let a = conv2d(t, v[0], v[1], o)?;
        let shifted = slice2d(t, v[0], Slice::crop(1, 1, h, w))?;
        let b = conv2d(t, shifted, v[2], o)?;
        concat_channels(t, &[a, b])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn gradients_match_finite_differences((x, w0, w1) in inputs()) {
            check(|t, v| factorized_reduce(t, v[0], v[1], v[2]), &[x, w0, w1], 7);
        }

        /// Values and every gradient equal to those of the ops it replaces (same products in the
        /// same order; == rather than bits: a slot the old path added 0.0 into may differ in the
        /// sign of a zero).
        #[test]
        fn same_values_as_the_ops_it_replaces((x, w0, w1) in inputs()) {
            let run = |fused: bool| {
                let mut t = Tape::new();
                let v: Vec<Var> = [&x, &w0, &w1].iter().map(|x| t.leaf((*x).clone(), true)).collect();
                let y = if fused { factorized_reduce(&mut t, v[0], v[1], v[2]) } else { unfused(&mut t, &v) }.unwrap();
                let r: Vec<f32> = (0..t.value(y).numel()).map(|i| (i % 7) as f32 * 0.3 - 0.8).collect();
                let r = Tensor::from_vec(t.value(y).shape().clone(), r).unwrap();
                let loss = crate::dot_const(&mut t, y, &r).unwrap();
                t.backward(loss).unwrap();
                let mut out = vec![t.value(y).data().to_vec()];
                out.extend(v.iter().map(|&v| t.grad(v).unwrap().data().to_vec()));
                out
            };
            prop_assert_eq!(run(true), run(false));
        }
    }

    #[test]
    fn states_its_cost() {
        let mut t = Tape::new();
        t.set_profiling(true);
        let x = t.leaf(Tensor::full([2, 3, 4, 6], 1.0), true);
        let w0 = t.leaf(Tensor::full([2, 3, 1, 1], 1.0), true);
        let w1 = t.leaf(Tensor::full([1, 3, 1, 1], 1.0), true);
        let y = factorized_reduce(&mut t, x, w0, w1).unwrap();
        let l = crate::sum(&mut t, y).unwrap();
        t.backward(l).unwrap();
        let op = &t.take_profile()["factorized_reduce"];
        // 2 x 3 x (2 x 3) x 3 = 108 multiply-adds; x 144, both weights 9, y 36 values.
        assert_eq!((op.forward.flops, op.forward.bytes), (216.0, 4.0 * 189.0));
        // dx and dW: twice the arithmetic; dy, x, w read, dx and dW read and written.
        assert_eq!((op.backward.flops, op.backward.bytes), (432.0, 4.0 * 495.0));
    }

    #[test]
    fn bad_shapes_are_errors() {
        let mut t = Tape::new();
        let x = t.leaf(Tensor::zeros([1, 2, 3, 4]), true);
        let w = t.leaf(Tensor::zeros([1, 2, 1, 1]), true);
        let err = factorized_reduce(&mut t, x, w, w).unwrap_err().to_string();
        assert!(err.contains("even") && err.contains("3x4"), "{err}");
        let x = t.leaf(Tensor::zeros([1, 2, 4, 4]), true);
        let bad = t.leaf(Tensor::zeros([1, 3, 1, 1]), true);
        let err = factorized_reduce(&mut t, x, w, bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("factorized_reduce"), "{err}");
    }
}
