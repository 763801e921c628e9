//! Data movement: channel concat and split, strided spatial slices, global average pooling.
use crate::check;
use autograd::{Backward, Error, GradSlots, Result, Tape, Tensor, Var};
use kernels::layout::{self as kl, Slice2d};

struct ConcatBack(Vec<usize>, usize, usize);
impl Backward for ConcatBack {
    /// Each input gets its channel block of dy.
    fn backward(&self, _: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        for (k, slot) in grads.iter_mut().enumerate() {
            if let Some(dx) = slot.as_mut() {
                kl::split_channels_add(g.data(), &self.0, k, self.1, self.2, dx.data_mut());
            }
        }
    }
}

/// Concatenates [N, C_i, H, W] tensors along channels into [N, sum C_i, H, W].
pub fn concat_channels(tape: &mut Tape, xs: &[Var]) -> Result<Var> {
    const OP: &str = "concat_channels";
    check::arg(!xs.is_empty(), OP, || "needs at least one input".into())?;
    let [n, _, h, w] = check::nchw(tape, xs[0], OP)?;
    let mut channels = Vec::with_capacity(xs.len());
    for &x in xs {
        let [n2, c, h2, w2] = check::nchw(tape, x, OP)?;
        if (n2, h2, w2) != (n, h, w) {
            return Err(Error::ShapeMismatch {
                op: OP,
                expected: vec![n, c, h, w],
                got: vec![n2, c, h2, w2],
            });
        }
        channels.push(c);
    }
    let mut y = tape.buffer([n, channels.iter().sum(), h, w]);
    let parts: Vec<&[f32]> = xs.iter().map(|&x| tape.value(x).data()).collect();
    kl::concat_channels(&parts, &channels, n, h * w, y.data_mut());
    Ok(tape.push(OP, y, xs, ConcatBack(channels, n, h * w)))
}

struct SplitBack(Vec<usize>, usize, usize, usize);
impl Backward for SplitBack {
    /// dx's channel block k += dy.
    fn backward(&self, _: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        if let Some(dx) = grads[0].as_mut() {
            kl::merge_channels_add(g.data(), &self.0, self.3, self.1, self.2, dx.data_mut());
        }
    }
}

/// Splits x [N, C, H, W] into channel blocks of the given sizes (which must add up to C).
pub fn split_channels(tape: &mut Tape, x: Var, sizes: &[usize]) -> Result<Vec<Var>> {
    const OP: &str = "split_channels";
    let [n, c, h, w] = check::nchw(tape, x, OP)?;
    check::arg(
        sizes.iter().sum::<usize>() == c && sizes.iter().all(|&s| s > 0),
        OP,
        || format!("sizes {sizes:?} must be positive and add up to {c} channels"),
    )?;
    let mut out = Vec::with_capacity(sizes.len());
    for k in 0..sizes.len() {
        let mut y = tape.zeros([n, sizes[k], h, w]);
        kl::split_channels_add(tape.value(x).data(), sizes, k, n, h * w, y.data_mut());
        out.push(tape.push(OP, y, &[x], SplitBack(sizes.to_vec(), n, h * w, k)));
    }
    Ok(out)
}

/// A strided spatial window: out[.., i, j] = x[.., top + i * stride, left + j * stride].
/// `x[:, :, 1:, 1:]` is `Slice { top: 1, left: 1, stride: 1, out_h: H - 1, out_w: W - 1 }`;
/// `x[:, :, ::2, ::2]` is `Slice { top: 0, left: 0, stride: 2, out_h: ceil(H/2), out_w: ceil(W/2) }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    /// First input row read.
    pub top: usize,
    /// First input column read.
    pub left: usize,
    /// Step between rows and between columns read.
    pub stride: usize,
    /// Output rows.
    pub out_h: usize,
    /// Output columns.
    pub out_w: usize,
}

impl Slice {
    /// x[:, :, top.., left..] for an h x w input.
    pub fn crop(top: usize, left: usize, h: usize, w: usize) -> Slice {
        Slice {
            top,
            left,
            stride: 1,
            out_h: h.saturating_sub(top),
            out_w: w.saturating_sub(left),
        }
    }

    /// x[:, :, ::stride, ::stride] for an h x w input.
    pub fn subsample(stride: usize, h: usize, w: usize) -> Slice {
        Slice {
            top: 0,
            left: 0,
            stride,
            out_h: h.div_ceil(stride.max(1)),
            out_w: w.div_ceil(stride.max(1)),
        }
    }
}

struct SliceBack(Slice2d);
impl Backward for SliceBack {
    /// dy scattered back to the positions read.
    fn backward(&self, _: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        if let Some(dx) = grads[0].as_mut() {
            kl::slice2d_backward(&self.0, g.data(), dx.data_mut());
        }
    }
}

/// The strided window `s` of every plane of x [N, C, H, W].
pub fn slice2d(tape: &mut Tape, x: Var, s: Slice) -> Result<Var> {
    const OP: &str = "slice2d";
    let [n, c, h, w] = check::nchw(tape, x, OP)?;
    let k = Slice2d {
        planes: n * c,
        h,
        w,
        top: s.top,
        left: s.left,
        stride: s.stride,
        out_h: s.out_h,
        out_w: s.out_w,
    };
    check::arg(k.fits() && s.out_h > 0 && s.out_w > 0, OP, || {
        format!("{s:?} does not fit a {h}x{w} input")
    })?;
    let mut y = tape.buffer([n, c, s.out_h, s.out_w]);
    kl::slice2d(&k, tape.value(x).data(), y.data_mut());
    Ok(tape.push(OP, y, &[x], SliceBack(k)))
}

struct GapBack(usize);
impl Backward for GapBack {
    /// dx = dy / (H W) everywhere in the plane.
    fn backward(&self, _: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        if let Some(dx) = grads[0].as_mut() {
            kl::global_avg_pool_backward(g.data(), self.0, dx.data_mut());
        }
    }
}

/// Mean of every plane: [N, C, H, W] -> [N, C].
pub fn global_avg_pool(tape: &mut Tape, x: Var) -> Result<Var> {
    let [n, c, h, w] = check::nchw(tape, x, "global_avg_pool")?;
    let mut y = tape.buffer([n, c]);
    kl::global_avg_pool(tape.value(x).data(), h * w, y.data_mut());
    Ok(tape.push("global_avg_pool", y, &[x], GapBack(h * w)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check, tensor};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn concat_split_gradients((a, b) in (1usize..3, 1usize..4, 1usize..4, 1usize..4, 1usize..4).prop_flat_map(|(n, c1, c2, h, w)| (tensor(vec![n, c1, h, w]), tensor(vec![n, c2, h, w])))) {
            check(concat_channels, &[a.clone(), b.clone()], 16);
            let sizes = [a.dims()[1], b.dims()[1]];
            check(|t, v| { let cat = concat_channels(t, v)?; let parts = split_channels(t, cat, &sizes)?; crate::scale(t, parts[1], 2.0) }, &[a, b], 17);
        }

        #[test]
        fn slice_and_gap_gradients(x in (1usize..3, 1usize..3, 2usize..7, 2usize..7).prop_flat_map(|(n, c, h, w)| tensor(vec![n, c, h, w]))) {
            let (h, w) = (x.dims()[2], x.dims()[3]);
            check(|t, v| slice2d(t, v[0], Slice::crop(1, 1, h, w)), std::slice::from_ref(&x), 18);
            check(|t, v| slice2d(t, v[0], Slice::subsample(2, h, w)), std::slice::from_ref(&x), 19);
            check(|t, v| global_avg_pool(t, v[0]), &[x], 20);
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let mut t = Tape::new();
        let a = t.leaf(Tensor::zeros([1, 2, 3, 3]), true);
        let b = t.leaf(Tensor::zeros([1, 2, 4, 4]), true);
        assert!(concat_channels(&mut t, &[a, b]).is_err());
        assert!(split_channels(&mut t, a, &[1, 2]).is_err());
        assert!(slice2d(
            &mut t,
            a,
            Slice {
                top: 0,
                left: 0,
                stride: 1,
                out_h: 4,
                out_w: 1
            }
        )
        .is_err());
    }
}
