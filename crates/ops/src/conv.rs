//! Convolutions: dense (groups, stride, padding, dilation) and depthwise, both with an optional ReLU
//! fused into the input read. No bias (DARTS convs have none).
use crate::batchnorm::TrailingBn;
use crate::check;
use crate::{BatchNormOptions, RunningStats};
use autograd::{Backward, Error, GradSlots, Result, Tape, Tensor, Var};
use kernels::conv::{self as kconv, out_len, ConvGeom};
use kernels::depthwise as kdw;

/// Conv hyper-parameters. `pre_relu` computes conv(relu(x)) in one op (the ReLU of DARTS's
/// ReLU-Conv-BN blocks), saving a tensor and a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Step between windows, both axes.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Spacing between filter taps (1 = dense).
    pub dilation: usize,
    /// Channel groups: 1 = dense, C = depthwise.
    pub groups: usize,
    /// Read the input through a ReLU, fused into the conv.
    pub pre_relu: bool,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
            pre_relu: false,
        }
    }
}

/// Validates x [N, Cin, H, W] against w [Cout, Cin / groups, kh, kw] and builds the geometry.
fn geometry(tape: &Tape, x: Var, w: Var, o: Conv2dOptions, op: &'static str) -> Result<ConvGeom> {
    let [n, c_in, h, wd] = check::nchw(tape, x, op)?;
    let wdims = tape.value(w).dims().to_vec();
    let [c_out, cg, kh, kw] =
        <[usize; 4]>::try_from(wdims.as_slice()).map_err(|_| Error::BadShape {
            op,
            shape: wdims.clone(),
            why: "weight must be [Cout, Cin/groups, kh, kw]".into(),
        })?;
    check::arg(o.stride > 0 && o.dilation > 0 && o.groups > 0, op, || {
        format!(
            "stride {}, dilation {} and groups {} must be positive",
            o.stride, o.dilation, o.groups
        )
    })?;
    check::arg(c_in % o.groups == 0 && c_out % o.groups == 0, op, || {
        format!(
            "channels in {c_in} and out {c_out} must divide by groups {}",
            o.groups
        )
    })?;
    if cg != c_in / o.groups {
        return Err(Error::ShapeMismatch {
            op,
            expected: vec![c_out, c_in / o.groups, kh, kw],
            got: wdims,
        });
    }
    check::arg(kh > 0 && kw > 0, op, || {
        "kernel size must be positive".into()
    })?;
    let fits = out_len(h, kh, o.stride, o.padding, o.dilation).is_some_and(|v| v > 0)
        && out_len(wd, kw, o.stride, o.padding, o.dilation).is_some_and(|v| v > 0);
    check::arg(fits, op, || {
        format!(
            "a {kh}x{kw} kernel (dilation {}, padding {}) does not fit a {h}x{wd} input",
            o.dilation, o.padding
        )
    })?;
    Ok(ConvGeom {
        n,
        c_in,
        h,
        w: wd,
        c_out,
        kh,
        kw,
        stride: o.stride,
        pad: o.padding,
        dilation: o.dilation,
        groups: o.groups,
        pre_relu: o.pre_relu,
    })
}

struct ConvBack(ConvGeom);
impl Backward for ConvBack {
    /// dx = W^T * dy (col2im, masked by x > 0 with the fused ReLU); dW = sum_n dy_n * im2col(x_n)^T.
    fn backward(&self, inputs: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        let (x, w, geom) = (inputs[0].data(), inputs[1].data(), &self.0);
        if let Some(dx) = grads[0].as_mut() {
            kconv::backward_data(geom, x, w, g.data(), dx.data_mut());
        }
        if grads[1].is_some() {
            let mut partial = grads.scratch(kconv::weight_partial_len(geom));
            let dw = grads[1].as_mut().expect("checked above").data_mut();
            kconv::backward_weight(geom, x, g.data(), dw, &mut partial);
            grads.recycle(partial);
        }
    }

    fn cost(&self, _: &[&Tensor], _: &Tensor) -> autograd::Cost {
        crate::cost::conv(&self.0)
    }
}

/// The dense conv's output for a checked geometry, in a buffer from the tape's pool.
fn conv_output(tape: &mut Tape, g: &ConvGeom, x: Var, w: Var) -> Tensor {
    let (ho, wo) = g.out_hw();
    let mut y = tape.buffer([g.n, g.c_out, ho, wo]);
    let (xv, wv) = (tape.value(x).data(), tape.value(w).data());
    kconv::forward(g, xv, wv, y.data_mut());
    y
}

/// Dense 2-D convolution: x [N, Cin, H, W], w [Cout, Cin/groups, kh, kw] -> [N, Cout, Ho, Wo].
pub fn conv2d(tape: &mut Tape, x: Var, w: Var, o: Conv2dOptions) -> Result<Var> {
    let g = geometry(tape, x, w, o, "conv2d")?;
    let y = conv_output(tape, &g, x, w);
    Ok(tape.push("conv2d", y, &[x, w], ConvBack(g)))
}

/// Validates a depthwise conv (x [N, C, H, W], w [C, 1, kh, kw]; `o.groups` ignored) and builds
/// its geometry.
pub(crate) fn depthwise_geometry(
    tape: &Tape,
    x: Var,
    w: Var,
    o: Conv2dOptions,
    op: &'static str,
) -> Result<ConvGeom> {
    let c = check::nchw(tape, x, op)?[1];
    let g = geometry(tape, x, w, Conv2dOptions { groups: c, ..o }, op)?;
    check::arg(g.c_out == c, op, || {
        format!("weight has {} filters for {c} channels", g.c_out)
    })?;
    Ok(g)
}

struct DepthwiseBack(ConvGeom);
impl Backward for DepthwiseBack {
    fn backward(&self, inputs: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        let (x, w, geom) = (inputs[0].data(), inputs[1].data(), &self.0);
        if let Some(dx) = grads[0].as_mut() {
            kdw::backward_data(geom, x, w, g.data(), dx.data_mut());
        }
        if let Some(dw) = grads[1].as_mut() {
            kdw::backward_weight(geom, x, g.data(), dw.data_mut());
        }
    }

    fn cost(&self, _: &[&Tensor], _: &Tensor) -> autograd::Cost {
        crate::cost::conv(&self.0)
    }
}

/// Depthwise 2-D convolution: x [N, C, H, W], w [C, 1, kh, kw] -> [N, C, Ho, Wo]. `o.groups` is
/// ignored (it is C).
pub fn depthwise_conv2d(tape: &mut Tape, x: Var, w: Var, o: Conv2dOptions) -> Result<Var> {
    let g = depthwise_geometry(tape, x, w, o, "depthwise_conv2d")?;
    let (c, (ho, wo)) = (g.c_in, g.out_hw());
    let mut y = tape.buffer([g.n, c, ho, wo]);
    kdw::forward(&g, tape.value(x).data(), tape.value(w).data(), y.data_mut());
    Ok(tape.push("depthwise_conv2d", y, &[x, w], DepthwiseBack(g)))
}

struct ConvBnBack(ConvGeom, TrailingBn);

impl Backward for ConvBnBack {
    /// The BN's VJP from its output, then the conv's.
    fn backward(&self, inputs: &[&Tensor], y: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        let dz = self.1.input_grad(y, g, grads);
        ConvBack(self.0).backward(inputs, y, &dz, grads);
        grads.recycle(dz.into_vec());
    }

    fn cost(&self, _: &[&Tensor], y: &Tensor) -> autograd::Cost {
        crate::cost::then_bn(crate::cost::conv(&self.0), y.numel())
    }
}

/// conv2d followed by a batch norm *without* affine parameters, as one node: y = BN(W * x). Only y
/// is kept for the backward (for a non-affine BN, y is xhat), so the conv output is never stored.
/// BN modes as in [`crate::batch_norm`].
pub fn conv2d_bn(
    tape: &mut Tape,
    x: Var,
    w: Var,
    o: Conv2dOptions,
    running: Option<&mut RunningStats>,
    bn: BatchNormOptions,
) -> Result<Var> {
    const OP: &str = "conv2d_bn";
    let g = geometry(tape, x, w, o, OP)?;
    let z = conv_output(tape, &g, x, w);
    let (y, trailing) = TrailingBn::apply(OP, z, None, running, bn)?;
    Ok(tape.push(OP, y, &[x, w], ConvBnBack(g, trailing)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{away_from_zero, check, tensor};
    use proptest::prelude::*;

    fn fits(x: &Tensor, w: &Tensor, o: &Conv2dOptions) -> bool {
        (2..4).all(|d| out_len(x.dims()[d], w.dims()[d], o.stride, o.padding, o.dilation).is_some())
    }

    fn options() -> impl Strategy<Value = Conv2dOptions> {
        (1usize..3, 0usize..3, 1usize..3, any::<bool>()).prop_map(
            |(stride, padding, dilation, pre_relu)| Conv2dOptions {
                stride,
                padding,
                dilation,
                groups: 1,
                pre_relu,
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn conv2d_gradient(
            (x, w, o) in (1usize..3, 1usize..3, 1usize..4, 4usize..7, 4usize..7, 1usize..4, options(), 1usize..3)
                .prop_flat_map(|(n, cpg, opg, h, wd, k, o, groups)| (tensor(vec![n, cpg * groups, h, wd]), tensor(vec![opg * groups, cpg, k, k]), Just(Conv2dOptions { groups, ..o })))
                .prop_filter("fits", |(x, w, o)| fits(x, w, o))
        ) {
            let x = if o.pre_relu { away_from_zero(x, 0.05) } else { x };
            check(|t, v| conv2d(t, v[0], v[1], o), &[x, w], 7);
        }

        #[test]
        fn depthwise_gradient(
            (x, w, o) in (1usize..3, 1usize..4, 4usize..9, 4usize..9, prop_oneof![Just(3usize), Just(5)], options())
                .prop_flat_map(|(n, c, h, wd, k, o)| (tensor(vec![n, c, h, wd]), tensor(vec![c, 1, k, k]), Just(o)))
                .prop_filter("fits", |(x, w, o)| fits(x, w, o))
        ) {
            let x = if o.pre_relu { away_from_zero(x, 0.05) } else { x };
            check(|t, v| depthwise_conv2d(t, v[0], v[1], o), &[x, w], 8);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        /// The fused op against finite differences, and against conv2d then batch_norm.
        #[test]
        fn conv_bn_gradient_and_equivalence(
            (x, w, relu) in (2usize..4, 1usize..4, 1usize..4, 3usize..6, any::<bool>())
                .prop_flat_map(|(n, ci, co, h, relu)| (tensor(vec![n, ci, h, h]), tensor(vec![co, ci, 1, 1]), Just(relu)))
        ) {
            let o = Conv2dOptions { pre_relu: relu, ..Default::default() };
            let x = if relu { away_from_zero(x, 0.05) } else { x };
            let c = w.dims()[0];
            let train = BatchNormOptions::default();
            let r = Tensor::randn(vec![x.dims()[0], c, x.dims()[2], x.dims()[3]], 1.0, &mut tensor::Rng::new(3));
            let run = |fused: bool| {
                let mut t = Tape::new();
                let (xv, wv) = (t.leaf(x.clone(), true), t.leaf(w.clone(), true));
                let mut rs = RunningStats::new(c);
                let y = if fused { conv2d_bn(&mut t, xv, wv, o, Some(&mut rs), train).unwrap() } else {
                    let z = conv2d(&mut t, xv, wv, o).unwrap();
                    crate::batch_norm(&mut t, z, None, Some(&mut rs), train).unwrap()
                };
                let l = crate::dot_const(&mut t, y, &r).unwrap();
                t.backward(l).unwrap();
                (t.value(y).clone(), t.grad(xv).unwrap().clone(), t.grad(wv).unwrap().clone(), rs)
            };
            let (a, b) = (run(true), run(false));
            prop_assert!(a.0.max_abs_diff(&b.0) < 1e-5 && a.1.max_abs_diff(&b.1) < 1e-3 && a.2.max_abs_diff(&b.2) < 1e-3);
            prop_assert_eq!(a.3, b.3);
            // BN makes the loss invariant to each channel's weight scale; weights of norm >= 0.5 keep
            // that curvature small at the FD step (the equivalence above covers every weight).
            let w = away_from_zero(w, 0.5);
            check(|t, v| conv2d_bn(t, v[0], v[1], o, None, train), &[x.clone(), w.clone()], 27);
            let eval = BatchNormOptions { training: false, ..train };
            let running = RunningStats { mean: vec![0.1; c], var: vec![0.7; c] };
            check(|t, v| conv2d_bn(t, v[0], v[1], o, Some(&mut running.clone()), eval), &[x, w], 28);
        }
    }

    /// The work a profiling tape hears, by hand: x [2, 4, 6, 6], grouped w [6, 2, 3, 3] (groups
    /// 2), stride 1, padding 1 -> y [2, 6, 6, 6]; each output value takes 2 * 3 * 3 multiply-adds.
    /// Depthwise [4, 1, 3, 3] on the same x: 1 * 3 * 3 per output value.
    #[test]
    fn profiled_work_is_the_multiply_adds_and_the_tensors() {
        let mut t = Tape::new();
        t.set_profiling(true);
        let x = t.leaf(Tensor::zeros([2, 4, 6, 6]), true);
        let w = t.leaf(Tensor::zeros([6, 2, 3, 3]), true);
        let dw = t.leaf(Tensor::zeros([4, 1, 3, 3]), true);
        let o = Conv2dOptions {
            padding: 1,
            groups: 2,
            ..Default::default()
        };
        let y = conv2d(&mut t, x, w, o).unwrap();
        let z = depthwise_conv2d(&mut t, x, dw, o).unwrap();
        let ly = crate::sum(&mut t, y).unwrap();
        let lz = crate::sum(&mut t, z).unwrap();
        let l = crate::add(&mut t, ly, lz).unwrap();
        t.backward(l).unwrap();
        let p = t.take_profile();
        let (xs, ys, zs) = (2.0 * 4.0 * 36.0, 2.0 * 6.0 * 36.0, 2.0 * 4.0 * 36.0);
        let (c, d) = (&p["conv2d"], &p["depthwise_conv2d"]);
        assert_eq!(
            c.forward,
            autograd::Work::new(2.0 * ys * 18.0, xs + 108.0 + ys)
        );
        assert_eq!(
            c.backward,
            autograd::Work::new(4.0 * ys * 18.0, ys + 3.0 * (xs + 108.0))
        );
        assert_eq!(
            d.forward,
            autograd::Work::new(2.0 * zs * 9.0, xs + 36.0 + zs)
        );
        assert_eq!(
            d.backward,
            autograd::Work::new(4.0 * zs * 9.0, zs + 3.0 * (xs + 36.0))
        );
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let mut t = Tape::new();
        let x = t.leaf(Tensor::zeros([1, 3, 4, 4]), true);
        let w_bad_cin = t.leaf(Tensor::zeros([2, 2, 3, 3]), true);
        let w_big = t.leaf(Tensor::zeros([2, 3, 7, 7]), true);
        let w_ok = t.leaf(Tensor::zeros([2, 3, 3, 3]), true);
        let v = t.leaf(Tensor::zeros([3, 4]), true);
        assert!(matches!(
            conv2d(&mut t, x, w_bad_cin, Conv2dOptions::default()),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(conv2d(&mut t, x, w_big, Conv2dOptions::default())
            .unwrap_err()
            .to_string()
            .contains("does not fit"));
        assert!(conv2d(
            &mut t,
            x,
            w_ok,
            Conv2dOptions {
                stride: 0,
                ..Default::default()
            }
        )
        .is_err());
        assert!(conv2d(
            &mut t,
            x,
            w_ok,
            Conv2dOptions {
                groups: 2,
                ..Default::default()
            }
        )
        .is_err());
        assert!(conv2d(&mut t, v, w_ok, Conv2dOptions::default()).is_err());
        assert!(depthwise_conv2d(&mut t, x, w_ok, Conv2dOptions::default()).is_err());
    }
}
