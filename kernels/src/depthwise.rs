//! Depthwise 2-D convolution (groups = channels, one kxk filter per channel), stride, padding,
//! dilation and the fused input ReLU.
//!
//! Fast path ([`crate::tiled`]; square filters, stride 1 or 2, planes whose padded copy fits
//! [`PLANE_MAX`](crate::tiled::PLANE_MAX) values: all DARTS shapes up to 32x32, about 43x43 at most):
//! each plane is padded once and every output is a weighted sum over the taps, in register tiles. The
//! input gradient is the same correlation run on dy (zero-inserted by the stride, padded by
//! (k - 1) * d - pad) with the flipped filter; at stride 2 with an even dilation and padding (the
//! stride-2 dil convs) only x's even positions receive any, and it runs on dy itself onto those.
//! The weight gradient is one tiled dot of dy with the padded input per tap; on small planes with
//! 8 or more channels at stride 1 it runs channels-last ([`crate::channels_last`]), and the forward
//! beside it in the fused separable backward with it. Other geometries take a row-by-row f32x8
//! path.
//!
//! Shapes: x [N, C, H, W], w [C, 1, kh, kw], y [N, C, Ho, Wo]; the geometry is a [`ConvGeom`] with
//! `c_in == c_out == groups`. Its reference is the grouped dense conv's reference, which it must match.
use crate::channels_last::Hwc;
use crate::conv::{valid_range, ConvGeom};
use crate::par;
use crate::simd::{f32x8, load, load_strided, store, LANES};
use crate::tiled::{self, put, Framed, Layout, Padded, Use, Weighted, MAX_K};

/// The taps of one output row: calls `f(tap_index, ih, lo, hi, iw0)` for every kernel tap that reads
/// a real input row `ih`, where output columns `lo..hi` read input columns `iw0 + (ow - lo) * stride`.
fn row_taps(
    g: &ConvGeom,
    oh: usize,
    wo: usize,
    mut f: impl FnMut(usize, usize, usize, usize, usize),
) {
    for ki in 0..g.kh {
        let ih = (oh * g.stride + ki * g.dilation) as isize - g.pad as isize;
        if ih < 0 || ih >= g.h as isize {
            continue;
        }
        for kj in 0..g.kw {
            let (lo, hi) = valid_range(g.w, wo, kj * g.dilation, g.stride, g.pad);
            if lo < hi {
                f(
                    ki * g.kw + kj,
                    ih as usize,
                    lo,
                    hi,
                    lo * g.stride + kj * g.dilation - g.pad,
                );
            }
        }
    }
}

/// Input values at `x[0], x[stride], ...` (8 of them), through the fused ReLU if asked.
#[inline(always)]
fn read8(x: &[f32], stride: usize, relu: bool) -> f32x8 {
    let v = if stride == 1 {
        load(x)
    } else {
        load_strided(x, stride)
    };
    if relu {
        v.max(f32x8::ZERO)
    } else {
        v
    }
}

#[inline(always)]
fn read1(v: f32, relu: bool) -> f32 {
    if relu {
        v.max(0.0)
    } else {
        v
    }
}

/// y (one plane) = the weighted sums of the padded plane `buf` over every window.
fn weighted_tiles(lay: &Layout, buf: &[f32], w: &[f32], y: &mut [f32]) {
    let (_, wo) = lay.out();
    tiled::tiles(lay, buf, &Weighted(w), |oh, ow0, v| {
        put(v, &mut y[oh * wo..][..wo], ow0)
    });
}

/// `scratch` readied for the input planes of the forward and the weight gradient (`lay`).
fn input_frame<'a>(g: &ConvGeom, lay: &'a Layout, scratch: &'a mut Padded) -> Framed<'a> {
    scratch.frame(lay, g.h * g.w, g.w, g.pad, 1, 0.0)
}

/// Pads (the ReLU of) the input plane x into `buf` (two copies of the loop: the test stays outside).
fn fill_input<'b>(g: &ConvGeom, x: &[f32], buf: &'b mut Framed) -> &'b [f32] {
    if g.pre_relu {
        buf.fill(x, |v| v.max(0.0))
    } else {
        buf.fill(x, |v| v)
    }
}

/// `scratch` readied for the planes of dy that the input gradient reads (`lay`): padded by
/// (k - 1) d - pad and zero-inserted by the stride, or for an [`even_phase`] geometry dy itself
/// padded by half that.
fn grad_frame<'a>(g: &ConvGeom, lay: &'a Layout, scratch: &'a mut Padded) -> Framed<'a> {
    let (ho, wo) = g.out_hw();
    let pad = (g.kh - 1) * g.dilation - g.pad;
    if even_phase(g) {
        scratch.frame(lay, ho * wo, wo, pad / 2, 1, 0.0)
    } else {
        scratch.frame(lay, ho * wo, wo, pad, g.stride, 0.0)
    }
}

/// The tiled input gradient of one plane: a stride-1 correlation of dy, zero-inserted by the stride
/// and padded by (k - 1) * d - pad ([`grad_frame`]), with the flipped filter `wf`; masked by x > 0
/// for the fused ReLU. Added into dx when `add`, else written (every position once).
#[allow(clippy::too_many_arguments)]
fn backward_data_plane_tiled(
    g: &ConvGeom,
    lay: &Layout,
    x: &[f32],
    wf: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    add: bool,
    buf: &mut Framed,
) {
    let p = buf.fill(dy, |v| v);
    if even_phase(g) {
        return even_grad_tiles(g, lay, x, wf, p, dx, add);
    }
    // The tiles cover every input position once: a fresh dx is written, not zeroed and added to.
    if add {
        grad_tiles::<true>(g, lay, x, wf, p, dx)
    } else {
        grad_tiles::<false>(g, lay, x, wf, p, dx)
    }
}

/// The tiles of [`backward_data_plane_tiled`] over the padded dy `p`, added into dx (`ADD`) or
/// written.
fn grad_tiles<const ADD: bool>(
    g: &ConvGeom,
    lay: &Layout,
    x: &[f32],
    wf: &[f32],
    p: &[f32],
    dx: &mut [f32],
) {
    tiled::tiles(lay, p, &Weighted(wf), |ih, iw0, v| {
        let (at, n) = (ih * g.w + iw0, (g.w - iw0).min(LANES));
        tiled::put_grad::<ADD>(v, &mut dx[at..at + n], g.pre_relu.then_some(&x[at..at + n]));
    });
}

/// Whether only the even rows and columns of x receive gradient: stride 2 with an even dilation
/// and padding (DARTS's stride-2 dil convs), where every tap's offset `ki d - pad` is even. Their
/// input gradient is then a stride-1 correlation of dy itself (dilation d / 2, padding
/// ((k - 1) d - pad) / 2) onto the even positions: a quarter of the zero-inserted correlation's
/// windows, every one of which reads only real dy values or padding, the same taps in the same
/// order (the other windows of the zero-inserted dy sum to exactly 0.0).
fn even_phase(g: &ConvGeom) -> bool {
    g.stride == 2 && g.dilation.is_multiple_of(2) && g.pad.is_multiple_of(2)
}

/// [`grad_tiles`] for an [`even_phase`] geometry: window (i, j) of the padded dy `p` is dx's
/// position (2 i, 2 j). Every other position gets what the zero-inserted correlation gives it,
/// exactly 0.0: dx = 0.0 there when written, dx + 0.0 when added to (first, for the whole plane:
/// the even positions' dx + 0.0 + v has the bits of dx + v, as v is never -0.0).
fn even_grad_tiles(
    g: &ConvGeom,
    lay: &Layout,
    x: &[f32],
    wf: &[f32],
    p: &[f32],
    dx: &mut [f32],
    add: bool,
) {
    if add {
        for v in dx.iter_mut() {
            *v += 0.0;
        }
    } else {
        dx.fill(0.0);
    }
    tiled::tiles(lay, p, &Weighted(wf), |i, j0, v| {
        let (row, n) = (2 * i * g.w, g.w.div_ceil(2).saturating_sub(j0).min(LANES));
        for (l, &v) in v.as_array()[..n].iter().enumerate() {
            let at = row + 2 * (j0 + l);
            if !g.pre_relu || x[at] > 0.0 {
                dx[at] += v;
            }
        }
    });
}

/// The layouts of the tiled path for this geometry (forward and weight gradient, input gradient), or
/// `None` where it does not apply: non-square filters, padding wider than the filter's reach, and
/// what [`Layout::new`] refuses.
fn tiled_layouts(g: &ConvGeom) -> Option<(Layout, Layout)> {
    let (ho, wo) = g.out_hw();
    if g.kh == 0 || ho == 0 || wo == 0 {
        return None;
    }
    let span = (g.kh - 1) * g.dilation;
    if g.kh != g.kw || g.pad > span {
        return None;
    }
    let (s, p, d) = (g.stride, g.pad, g.dilation);
    let fwd = Layout::new(g.h + 2 * p, g.w + 2 * p, (g.kh, d, s), (ho, wo), Use::Conv)?;
    let bwd = if even_phase(g) {
        let q = span - p;
        let out = (g.h.div_ceil(2), g.w.div_ceil(2));
        Layout::new(ho + q, wo + q, (g.kh, d / 2, 1), out, Use::ConvGrad)?
    } else {
        zero_inserted_layout(g)?
    };
    Some((fwd, bwd))
}

/// The input gradient's layout for dy zero-inserted by the stride and padded by (k - 1) d - pad:
/// a stride-1 window over every input position.
fn zero_inserted_layout(g: &ConvGeom) -> Option<Layout> {
    let (ho, wo) = g.out_hw();
    let (s, q) = (g.stride, (g.kh - 1) * g.dilation - g.pad);
    let (dh, dw) = ((ho - 1) * s + 1 + 2 * q, (wo - 1) * s + 1 + 2 * q);
    Layout::new(dh, dw, (g.kh, g.dilation, 1), (g.h, g.w), Use::ConvGrad)
}

/// A depthwise conv prepared once: its geometry and, where the tiled path applies, its layouts
/// (else planes take the row-by-row path). Runs one plane, or one sample of C planes, at a time:
/// the batch kernels below, and callers that parallelise over samples themselves (the fused
/// separable conv), share it.
#[derive(Clone, Copy)]
pub struct Planes<'g> {
    g: &'g ConvGeom,
    tiled: Option<(Layout, Layout)>,
    /// The channels-last path, which the weight gradient of small planes with many channels takes
    /// (and the forward beside it) instead of the tiles.
    hwc: Option<Hwc>,
    /// Distance between a sample's output planes (y and dy) in the per-sample calls.
    out_stride: usize,
}

impl<'g> Planes<'g> {
    /// Output planes one after the other (Ho * Wo apart).
    pub fn new(g: &'g ConvGeom) -> Self {
        let (ho, wo) = g.out_hw();
        Planes {
            g,
            tiled: tiled_layouts(g),
            hwc: Hwc::new(g),
            out_stride: ho * wo,
        }
    }

    /// The same conv with a sample's output planes (y, and dy) `stride` values apart in
    /// the per-sample calls (at least Ho * Wo; the values between planes are neither read nor
    /// written).
    pub fn out_planes_apart(self, stride: usize) -> Self {
        let (ho, wo) = self.g.out_hw();
        assert!(stride >= ho * wo, "output planes overlap");
        Planes {
            out_stride: stride,
            ..self
        }
    }

    /// y (one Ho x Wo plane) = the plane x ([H, W]) correlated with its channel's filter `w`, row
    /// by row (geometries the tiled path does not take; no scratch).
    fn forward_rows(&self, x: &[f32], w: &[f32], y: &mut [f32]) {
        let g = self.g;
        let (ho, wo) = g.out_hw();
        y.fill(0.0);
        for oh in 0..ho {
            let yrow = &mut y[oh * wo..][..wo];
            row_taps(g, oh, wo, |t, ih, lo, hi, iw0| {
                let (xs, wv, len) = (&x[ih * g.w + iw0..], w[t], hi - lo);
                let out = &mut yrow[lo..hi];
                let n8 = len / LANES * LANES;
                for j in (0..n8).step_by(LANES) {
                    let v = load(&out[j..])
                        + f32x8::splat(wv) * read8(&xs[j * g.stride..], g.stride, g.pre_relu);
                    store(v, &mut out[j..]);
                }
                for j in n8..len {
                    out[j] += wv * read1(xs[j * g.stride], g.pre_relu);
                }
            });
        }
    }

    /// dx (one plane) += the plane's input gradient from dy (or = it when not `add`), masked by
    /// x > 0 for the fused ReLU, row by row (geometries the tiled path does not take; no scratch).
    fn backward_data_rows(&self, x: &[f32], w: &[f32], dy: &[f32], dx: &mut [f32], add: bool) {
        let g = self.g;
        if !add {
            dx.fill(0.0);
        }
        let (_, wo) = g.out_hw();
        for (oh, dyrow) in dy.chunks_exact(wo).enumerate() {
            row_taps(g, oh, wo, |t, ih, lo, hi, iw0| {
                let base = ih * g.w + iw0;
                let (src, wv, len) = (&dyrow[lo..hi], w[t], hi - lo);
                if g.stride == 1 {
                    let (out, xs) = (&mut dx[base..][..len], &x[base..][..len]);
                    let n8 = len / LANES * LANES;
                    for j in (0..n8).step_by(LANES) {
                        let mut add = f32x8::splat(wv) * load(&src[j..]);
                        if g.pre_relu {
                            add = load(&xs[j..]).simd_gt(f32x8::ZERO).select(add, f32x8::ZERO);
                        }
                        store(load(&out[j..]) + add, &mut out[j..]);
                    }
                    for j in n8..len {
                        if !g.pre_relu || xs[j] > 0.0 {
                            out[j] += wv * src[j];
                        }
                    }
                } else {
                    for (j, s) in src.iter().enumerate() {
                        let i = base + j * g.stride;
                        if !g.pre_relu || x[i] > 0.0 {
                            dx[i] += wv * s;
                        }
                    }
                }
            });
        }
    }

    /// dw (one channel's k x k taps) += the plane's weight gradient, one dot per row and tap
    /// (geometries the tiled path does not take, where [`tiled::tap_dots`] adds each tap's
    /// whole-plane dot once; no scratch).
    fn backward_weight_rows(&self, x: &[f32], dy: &[f32], dw: &mut [f32]) {
        let g = self.g;
        let (_, wo) = g.out_hw();
        for (oh, dyrow) in dy.chunks_exact(wo).enumerate() {
            row_taps(g, oh, wo, |t, ih, lo, hi, iw0| {
                let (xs, src, len) = (&x[ih * g.w + iw0..], &dyrow[lo..hi], hi - lo);
                let n8 = len / LANES * LANES;
                let mut acc = f32x8::ZERO;
                for j in (0..n8).step_by(LANES) {
                    acc += load(&src[j..]) * read8(&xs[j * g.stride..], g.stride, g.pre_relu);
                }
                let mut s = crate::simd::hsum(acc);
                for j in n8..len {
                    s += src[j] * read1(xs[j * g.stride], g.pre_relu);
                }
                dw[t] += s;
            });
        }
    }
}

impl Planes<'_> {
    /// One sample's forward: `x` [C, H, W] -> `y` [C, Ho, Wo] (planes [`Planes::out_planes_apart`]).
    pub fn forward_sample(&self, x: &[f32], w: &[f32], y: &mut [f32]) {
        self.forward_weight_grad_sample(x, w, Some(y), None)
    }

    /// One sample's input gradient from `dy` [C, Ho, Wo] (planes [`Planes::out_planes_apart`]):
    /// `dx` [C, H, W] += it when `add`, else
    /// dx = 0.0 + it (the bits of adding into zeros; dx's old values unread).
    pub fn backward_data_sample(
        &self,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        add: bool,
    ) {
        let g = self.g;
        let (ho, wo) = g.out_hw();
        let (k2, plane, ys) = (g.kh * g.kw, g.h * g.w, self.out_stride);
        let mut scratch = Padded::default();
        let mut frame =
            (self.tiled.as_ref()).map(|(_, lay)| (lay, grad_frame(g, lay, &mut scratch)));
        for (c, dx) in dx.chunks_mut(plane).enumerate() {
            let (x, dy) = (&x[c * plane..][..plane], &dy[c * ys..][..ho * wo]);
            let w = &w[c * k2..][..k2];
            match &mut frame {
                Some((lay, buf)) => {
                    let mut wf = [0.0f32; MAX_K * MAX_K];
                    for (f, &v) in wf.iter_mut().zip(w.iter().rev()) {
                        *f = v;
                    }
                    backward_data_plane_tiled(g, lay, x, &wf[..k2], dy, dx, add, buf)
                }
                None => self.backward_data_rows(x, w, dy, dx, add),
            }
        }
    }

    /// One sample's forward (into `y` [C, Ho, Wo], if given) and weight gradient (`dw`
    /// [C, 1, kh, kw] += from `dy` [C, Ho, Wo], if given), from one padded copy of each input
    /// plane: the fused separable backward makes z again and needs the weight gradient of the
    /// same x.
    pub fn forward_weight_grad_sample(
        &self,
        x: &[f32],
        w: &[f32],
        mut y: Option<&mut [f32]>,
        mut grad: Option<(&[f32], &mut [f32])>,
    ) {
        if y.is_none() && grad.is_none() {
            return;
        }
        if let (Some(h), Some(_)) = (&self.hwc, &grad) {
            return h.forward_weight_grad(x, w, self.out_stride, y, grad);
        }
        let g = self.g;
        let (ho, wo) = g.out_hw();
        let (k2, plane, out, ys) = (g.kh * g.kw, g.h * g.w, ho * wo, self.out_stride);
        let mut scratch = Padded::default();
        let mut frame =
            (self.tiled.as_ref()).map(|(lay, _)| (lay, input_frame(g, lay, &mut scratch)));
        for c in 0..g.c_in {
            let (x, w) = (&x[c * plane..][..plane], &w[c * k2..][..k2]);
            let y = y.as_deref_mut().map(|y| &mut y[c * ys..][..out]);
            let grad = grad
                .as_mut()
                .map(|(dy, dw)| (&dy[c * ys..][..out], &mut dw[c * k2..][..k2]));
            match &mut frame {
                Some((lay, buf)) => {
                    let p = fill_input(g, x, buf);
                    if let Some(y) = y {
                        weighted_tiles(lay, p, w, y);
                    }
                    if let Some((dy, dw)) = grad {
                        tiled::tap_dots(lay, p, dy, dw);
                    }
                }
                None => {
                    if let Some(y) = y {
                        self.forward_rows(x, w, y);
                    }
                    if let Some((dy, dw)) = grad {
                        self.backward_weight_rows(x, dy, dw);
                    }
                }
            }
        }
    }
}

/// y = depthwise_conv(x, w). Parallel over samples on the tiled path (each with its own padding
/// scratch on the stack), over planes on the row path (large planes, few of them per sample).
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let (plane, k2) = (g.h * g.w, g.kh * g.kw);
    let work = 2 * g.y_len() * k2;
    let p = Planes::new(g);
    if p.tiled.is_some() {
        return par::chunks(y, g.c_in * ho * wo, work, |n, y| {
            p.forward_sample(&x[n * g.c_in * plane..][..g.c_in * plane], w, y)
        });
    }
    par::chunks(y, ho * wo, work, |i, y| {
        let (x, w) = (&x[i * plane..][..plane], &w[(i % g.c_in) * k2..][..k2]);
        p.forward_rows(x, w, y)
    });
}

/// dx += input gradient of the depthwise conv (masked by x > 0 when the ReLU is fused).
pub fn backward_data(g: &ConvGeom, x: &[f32], w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let (plane, k2) = (g.h * g.w, g.kh * g.kw);
    let work = 2 * g.y_len() * k2;
    let p = Planes::new(g);
    if p.tiled.is_some() {
        let (xs, ys) = (g.c_in * plane, g.c_in * ho * wo);
        return par::chunks(dx, xs, work, |n, dx| {
            p.backward_data_sample(&x[n * xs..][..xs], w, &dy[n * ys..][..ys], dx, true)
        });
    }
    par::chunks(dx, plane, work, |i, dx| {
        let (x, dy) = (&x[i * plane..][..plane], &dy[i * ho * wo..][..ho * wo]);
        p.backward_data_rows(x, &w[(i % g.c_in) * k2..][..k2], dy, dx, true)
    });
}

/// dw += weight gradient of the depthwise conv. Parallel over channels; within a channel the sum runs
/// over samples, then taps, then rows in a fixed order, so any thread count gives the same bits.
pub fn backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let (plane, k2) = (g.h * g.w, g.kh * g.kw);
    let p = Planes::new(g);
    let work = 2 * g.y_len() * k2;
    if let Some(h) = p.hwc {
        // Channels-last: 8 channels at a time, every sample's frame of them in turn.
        let (xs, ys) = (plane, ho * wo);
        return par::chunks(dw, LANES * k2, work, |i, dw| {
            let (c0, cs) = (i * LANES, dw.len() / k2);
            let h = h.channels(cs);
            for n in 0..g.n {
                let at = n * g.c_in + c0;
                let (x, dy) = (&x[at * xs..][..cs * xs], &dy[at * ys..][..cs * ys]);
                h.forward_weight_grad(x, &[], ys, None, Some((dy, &mut *dw)));
            }
        });
    }
    par::chunks(dw, k2, work, |c, dw| {
        let mut scratch = Padded::default();
        let mut frame = (p.tiled.as_ref()).map(|(lay, _)| (lay, input_frame(g, lay, &mut scratch)));
        for n in 0..g.n {
            let i = n * g.c_in + c;
            let (x, dy) = (&x[i * plane..][..plane], &dy[i * ho * wo..][..ho * wo]);
            match &mut frame {
                Some((lay, buf)) => tiled::tap_dots(lay, fill_input(g, x, buf), dy, dw),
                None => p.backward_weight_rows(x, dy, dw),
            }
        }
    });
}

/// The depthwise conv is the grouped conv with one channel per group: its reference is that one.
pub mod reference {
    pub use crate::conv::reference::{backward_data, backward_weight, forward};
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, vec_f32};
    use proptest::prelude::*;

    /// A depthwise conv's geometry: n samples of c planes h x w, a k x k window at
    /// (stride, pad, dilation), with or without the fused ReLU.
    fn depthwise(
        n: usize,
        c: usize,
        (h, w): (usize, usize),
        k: usize,
        (stride, pad, dilation): (usize, usize, usize),
        pre_relu: bool,
    ) -> ConvGeom {
        ConvGeom {
            n,
            c_in: c,
            h,
            w,
            c_out: c,
            kh: k,
            kw: k,
            stride,
            pad,
            dilation,
            groups: c,
            pre_relu,
        }
    }

    /// Whether the window fits the padded plane (at least one output each way).
    fn window_fits(g: &ConvGeom) -> bool {
        let (a, b) = g.out_hw();
        a > 0 && b > 0
    }

    fn geom() -> impl Strategy<Value = ConvGeom> {
        // Widths up to 40 so the 8-lane body and the tail both run; k 3 and 5 as in DARTS, and up to
        // the tiled path's largest window (7).
        (
            1usize..3,
            1usize..4,
            3usize..12,
            3usize..40,
            prop_oneof![Just(3usize), Just(5), 1usize..8],
            1usize..3,
            0usize..5,
            1usize..3,
            any::<bool>(),
        )
            .prop_map(|(n, c, h, w, k, s, p, d, relu)| depthwise(n, c, (h, w), k, (s, p, d), relu))
            .prop_filter("window fits", window_fits)
    }

    fn darts_geom(hw: usize, k: usize, pad: usize, dilation: usize, stride: usize) -> ConvGeom {
        depthwise(2, 3, (hw, hw), k, (stride, pad, dilation), true)
    }

    /// The even-phase input gradient (stride 2, even dilation and padding) has the bits of the
    /// zero-inserted correlation it replaces, signed zeros included: written, and added into a
    /// dx holding -0.0 and +0.0 (which the zero-inserted sums turn into dx + 0.0).
    #[test]
    fn even_phase_gives_the_bits_of_the_zero_inserted_correlation() {
        for (hw, k, pad, relu) in [
            (8, 3, 2, true),
            (9, 5, 4, false),
            (16, 3, 2, false),
            (7, 5, 4, true),
        ] {
            let g = ConvGeom {
                stride: 2,
                pre_relu: relu,
                ..darts_geom(hw, k, pad, 2, 2)
            };
            assert!(even_phase(&g));
            let (ho, wo) = g.out_hw();
            let plane = hw * hw;
            let x: Vec<f32> = (0..plane).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
            let dy: Vec<f32> = (0..ho * wo)
                .map(|i| ((i * 13) % 7) as f32 * 0.25 - 0.75)
                .collect();
            let w: Vec<f32> = (0..k * k).map(|i| i as f32 * 0.1 - 0.7).collect();
            let wf: Vec<f32> = w.iter().rev().copied().collect();
            let (_, even) = tiled_layouts(&g).unwrap();
            // The zero-inserted layout and correlation, as for any other stride.
            let span = (k - 1) * 2;
            let zi = zero_inserted_layout(&g).unwrap();
            let start: Vec<f32> = (0..plane)
                .map(|i| if i % 3 == 0 { -0.0 } else { i as f32 * 0.5 })
                .collect();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            for add in [false, true] {
                let (mut a, mut b) = (start.clone(), start.clone());
                let mut scratch = Padded::default();
                let mut buf = grad_frame(&g, &even, &mut scratch);
                backward_data_plane_tiled(&g, &even, &x, &wf, &dy, &mut a, add, &mut buf);
                let mut scratch = Padded::default();
                let mut zero_inserted = scratch.frame(&zi, dy.len(), wo, span - pad, 2, 0.0);
                let p = zero_inserted.fill(&dy, |v| v);
                if add {
                    grad_tiles::<true>(&g, &zi, &x, &wf, p, &mut b);
                } else {
                    grad_tiles::<false>(&g, &zi, &x, &wf, p, &mut b);
                }
                assert_eq!(bits(&a), bits(&b), "{hw}x{hw} k{k} add {add}");
            }
        }
    }

    #[test]
    fn darts_shapes_take_the_tiled_path_and_large_planes_do_not() {
        for hw in [8, 16, 32] {
            for (k, p, d) in [(3, 1, 1), (5, 2, 1), (3, 2, 2), (5, 4, 2)] {
                for s in [1, 2] {
                    assert!(tiled_layouts(&darts_geom(hw, k, p, d, s)).is_some());
                }
            }
        }
        // 70x70 with its border is beyond the stack scratch: the row path must still be right.
        let g = darts_geom(70, 3, 1, 1, 1);
        assert!(tiled_layouts(&g).is_none());
        let x: Vec<f32> = (0..g.x_len())
            .map(|i| ((i * 37) % 11) as f32 - 5.0)
            .collect();
        let w: Vec<f32> = (0..g.w_len()).map(|i| i as f32 * 0.1 - 1.0).collect();
        let (mut y, mut y_ref) = (vec![0.0; g.y_len()], vec![0.0; g.y_len()]);
        forward(&g, &x, &w, &mut y);
        reference::forward(&g, &x, &w, &mut y_ref);
        assert_close(&y, &y_ref, 1e-5);
    }

    /// Small planes with 8 or more channels, stride 1, 3 x 3 or 5 x 5 windows: the channels-last
    /// path's geometries (channel counts off the multiples of 8, and rows up to 21 wide: more
    /// than one 8-column transpose a row, and a scalar tail, included).
    fn hwc_geom() -> impl Strategy<Value = ConvGeom> {
        let hw = (3usize..22).prop_flat_map(|w| (1usize..=64 / w, Just(w)));
        (
            (1usize..3, 8usize..20, hw),
            prop_oneof![Just(3usize), Just(5)],
            (1usize..3, 0usize..9, any::<bool>()),
        )
            .prop_map(|((n, c, hw), k, (d, p, relu))| {
                depthwise(n, c, hw, k, (1, p.min((k - 1) * d), d), relu)
            })
            .prop_filter("window fits", window_fits)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The channels-last weight gradient against the reference (the batch kernel, and one
        /// sample's beside the forward), and its forward against the plane tiles to the bit (same
        /// taps, same order of sums).
        #[test]
        fn channels_last_matches_reference_and_the_plane_path(
            (g, x, w, dy, dw0) in hwc_geom().prop_flat_map(|g| (Just(g), vec_f32(g.x_len()), vec_f32(g.w_len()), vec_f32(g.y_len()), vec_f32(g.w_len())))
        ) {
            let p = Planes::new(&g);
            prop_assert!(p.hwc.is_some() && p.tiled.is_some());
            let (mut dw, mut dw_ref) = (dw0.clone(), dw0.clone());
            backward_weight(&g, &x, &dy, &mut dw);
            reference::backward_weight(&g, &x, &dy, &mut dw_ref);
            assert_close(&dw, &dw_ref, 1e-4);

            // One sample, forward and weight gradient together, against the tiles'.
            let tiles = Planes { hwc: None, ..p };
            let (xs, ys) = (g.c_in * g.h * g.w, g.y_len() / g.n);
            let (x, dy) = (&x[..xs], &dy[..ys]);
            let (mut y, mut y_tiles) = (vec![f32::NAN; ys], vec![f32::NAN; ys]);
            let (mut dw, mut dw_tiles) = (dw0.clone(), dw0.clone());
            p.forward_weight_grad_sample(x, &w, Some(&mut y), Some((dy, &mut dw)));
            tiles.forward_weight_grad_sample(x, &w, Some(&mut y_tiles), Some((dy, &mut dw_tiles)));
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&y), bits(&y_tiles));
            assert_close(&dw, &dw_tiles, 1e-4);
            // Without the forward, the same weight gradient.
            let mut alone = dw0.clone();
            p.forward_weight_grad_sample(x, &w, None, Some((dy, &mut alone)));
            prop_assert_eq!(bits(&alone), bits(&dw));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn simd_matches_reference(
            (g, x, w, dy, dx0) in geom().prop_flat_map(|g| (Just(g), vec_f32(g.x_len()), vec_f32(g.w_len()), vec_f32(g.y_len()), vec_f32(g.x_len())))
        ) {
            let (mut y, mut y_ref) = (vec![f32::NAN; g.y_len()], vec![0.0; g.y_len()]);
            forward(&g, &x, &w, &mut y);
            reference::forward(&g, &x, &w, &mut y_ref);
            assert_close(&y, &y_ref, 1e-5);

            let (mut dx, mut dx_ref) = (dx0.clone(), dx0.clone());
            backward_data(&g, &x, &w, &dy, &mut dx);
            reference::backward_data(&g, &x, &w, &dy, &mut dx_ref);
            assert_close(&dx, &dx_ref, 1e-5);

            let (mut dw, mut dw_ref) = (w.clone(), w.clone());
            backward_weight(&g, &x, &dy, &mut dw);
            reference::backward_weight(&g, &x, &dy, &mut dw_ref);
            assert_close(&dw, &dw_ref, 1e-4);
        }
    }
}
