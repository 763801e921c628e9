//! Depthwise 2-D convolution (groups = channels, one kxk filter per channel), stride, padding,
//! dilation and the fused input ReLU, written directly with f32x8 over output columns.
//!
//! Shapes: x [N, C, H, W], w [C, 1, kh, kw], y [N, C, Ho, Wo]; the geometry is a [`ConvGeom`] with
//! `c_in == c_out == groups`. Its reference is the grouped dense conv's reference, which it must match.
use crate::conv::{valid_range, ConvGeom};
use crate::par;
use crate::simd::{f32x8, load, load_strided, store, LANES};

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

/// Rows up to this long (input width plus both paddings) take the fast path, which zero-pads one
/// input row at a time into a stack buffer split into `stride` phases (phase r holds padded columns
/// r, r + s, r + 2s, ...), so every tap reads one contiguous run: tap column t is phase t % s from
/// offset t / s.
const PADDED_ROW_MAX: usize = 512;

fn fast_path(g: &ConvGeom) -> bool {
    (g.stride == 1 || g.stride == 2) && g.w + 2 * g.pad + g.stride <= PADDED_ROW_MAX
}

/// Length of one phase of a padded row.
fn phase_len(g: &ConvGeom) -> usize {
    (g.w + 2 * g.pad).div_ceil(g.stride)
}

/// Writes the padded (relu of the) input row into `buf` as `stride` phases of [`phase_len`] each.
#[inline(always)]
fn pad_row(g: &ConvGeom, row: &[f32], buf: &mut [f32]) {
    let (s, plen) = (g.stride, phase_len(g));
    buf[..s * plen].fill(0.0);
    if s == 1 {
        let mid = &mut buf[g.pad..g.pad + g.w];
        if g.pre_relu {
            for (o, &v) in mid.iter_mut().zip(row) {
                *o = v.max(0.0);
            }
        } else {
            mid.copy_from_slice(row);
        }
        return;
    }
    for (iw, &v) in row.iter().enumerate() {
        let c = iw + g.pad;
        buf[(c % s) * plen + c / s] = if g.pre_relu { v.max(0.0) } else { v };
    }
}

/// The contiguous run of padded columns t, t + s, ... (`len` of them) inside a phase buffer.
#[inline(always)]
fn tap(g: &ConvGeom, t: usize, len: usize) -> std::ops::Range<usize> {
    let start = (t % g.stride) * phase_len(g) + t / g.stride;
    start..start + len
}

/// out[i] += a * src[i] over equal-length slices.
#[inline(always)]
fn axpy_row(a: f32, src: &[f32], out: &mut [f32]) {
    let n8 = out.len() / LANES * LANES;
    let av = f32x8::splat(a);
    for j in (0..n8).step_by(LANES) {
        store(load(&out[j..]) + av * load(&src[j..]), &mut out[j..]);
    }
    for j in n8..out.len() {
        out[j] += a * src[j];
    }
}

/// Input row feeding output row `oh` through kernel row `ki`, if inside the image.
#[inline(always)]
fn input_row(g: &ConvGeom, oh: usize, ki: usize) -> Option<usize> {
    let ih = (oh * g.stride + ki * g.dilation) as isize - g.pad as isize;
    (ih >= 0 && (ih as usize) < g.h).then_some(ih as usize)
}

fn forward_plane_fast(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32], wo: usize) {
    let mut buf = [0.0f32; PADDED_ROW_MAX];
    for (oh, yrow) in y.chunks_mut(wo).enumerate() {
        yrow.fill(0.0);
        for ki in 0..g.kh {
            let Some(ih) = input_row(g, oh, ki) else {
                continue;
            };
            pad_row(g, &x[ih * g.w..][..g.w], &mut buf);
            for kj in 0..g.kw {
                axpy_row(w[ki * g.kw + kj], &buf[tap(g, kj * g.dilation, wo)], yrow);
            }
        }
    }
}

fn backward_data_plane_fast(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    ho: usize,
    wo: usize,
) {
    let mut acc = [0.0f32; PADDED_ROW_MAX];
    let (s, plen) = (g.stride, phase_len(g));
    for ih in 0..g.h {
        acc[..s * plen].fill(0.0);
        for ki in 0..g.kh {
            // oh * s + ki * d - p = ih
            let num = (ih + g.pad) as isize - (ki * g.dilation) as isize;
            if num < 0 || num as usize % s != 0 || num as usize / s >= ho {
                continue;
            }
            let dyrow = &dy[num as usize / s * wo..][..wo];
            for kj in 0..g.kw {
                let r = tap(g, kj * g.dilation, wo);
                axpy_row(w[ki * g.kw + kj], dyrow, &mut acc[r]);
            }
        }
        let (xr, dxr) = (&x[ih * g.w..][..g.w], &mut dx[ih * g.w..][..g.w]);
        if s == 1 {
            let src = &acc[g.pad..g.pad + g.w];
            if g.pre_relu {
                let n8 = g.w / LANES * LANES;
                for j in (0..n8).step_by(LANES) {
                    let add = load(&xr[j..])
                        .simd_gt(f32x8::ZERO)
                        .select(load(&src[j..]), f32x8::ZERO);
                    store(load(&dxr[j..]) + add, &mut dxr[j..]);
                }
                for j in n8..g.w {
                    if xr[j] > 0.0 {
                        dxr[j] += src[j];
                    }
                }
            } else {
                axpy_row(1.0, src, dxr);
            }
        } else {
            for (iw, (d, &xv)) in dxr.iter_mut().zip(xr).enumerate() {
                let c = iw + g.pad;
                if !g.pre_relu || xv > 0.0 {
                    *d += acc[(c % s) * plen + c / s];
                }
            }
        }
    }
}

fn backward_weight_plane_fast(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32], wo: usize) {
    let mut buf = [0.0f32; PADDED_ROW_MAX];
    for (oh, dyrow) in dy.chunks(wo).enumerate() {
        for ki in 0..g.kh {
            let Some(ih) = input_row(g, oh, ki) else {
                continue;
            };
            pad_row(g, &x[ih * g.w..][..g.w], &mut buf);
            for kj in 0..g.kw {
                dw[ki * g.kw + kj] += crate::simd::dot(dyrow, &buf[tap(g, kj * g.dilation, wo)]);
            }
        }
    }
}

/// y = depthwise_conv(x, w).
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let (plane, k2) = (g.h * g.w, g.kh * g.kw);
    par::chunks(y, ho * wo, 2 * g.y_len() * k2, |p, y| {
        let (x, w) = (&x[p * plane..][..plane], &w[(p % g.c_in) * k2..][..k2]);
        if fast_path(g) {
            return forward_plane_fast(g, x, w, y, wo);
        }
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
    });
}

/// dx += input gradient of the depthwise conv (masked by x > 0 when the ReLU is fused).
pub fn backward_data(g: &ConvGeom, x: &[f32], w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let (plane, k2) = (g.h * g.w, g.kh * g.kw);
    par::chunks(dx, plane, 2 * g.y_len() * k2, |p, dx| {
        let (x, w, dy) = (
            &x[p * plane..][..plane],
            &w[(p % g.c_in) * k2..][..k2],
            &dy[p * ho * wo..][..ho * wo],
        );
        if fast_path(g) {
            return backward_data_plane_fast(g, x, w, dy, dx, ho, wo);
        }
        for oh in 0..ho {
            let dyrow = &dy[oh * wo..][..wo];
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
    });
}

/// dw += weight gradient of the depthwise conv. Parallel over channels; within a channel the sum runs
/// over samples, then taps, then rows in a fixed order, so any thread count gives the same bits.
pub fn backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let (plane, k2) = (g.h * g.w, g.kh * g.kw);
    par::chunks(dw, k2, 2 * g.y_len() * k2, |c, dw| {
        for n in 0..g.n {
            let p = n * g.c_in + c;
            let (x, dy) = (&x[p * plane..][..plane], &dy[p * ho * wo..][..ho * wo]);
            if fast_path(g) {
                backward_weight_plane_fast(g, x, dy, dw, wo);
                continue;
            }
            for oh in 0..ho {
                let dyrow = &dy[oh * wo..][..wo];
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

    fn geom() -> impl Strategy<Value = ConvGeom> {
        // Widths up to 40 so the 8-lane body and the tail both run; k up to 5 as in DARTS.
        (
            1usize..3,
            1usize..4,
            3usize..12,
            3usize..40,
            prop_oneof![Just(3usize), Just(5), 1usize..5],
            1usize..3,
            0usize..5,
            1usize..3,
            any::<bool>(),
        )
            .prop_map(|(n, c, h, w, k, s, p, d, relu)| ConvGeom {
                n,
                c_in: c,
                h,
                w,
                c_out: c,
                kh: k,
                kw: k,
                stride: s,
                pad: p,
                dilation: d,
                groups: c,
                pre_relu: relu,
            })
            .prop_filter("window fits", |g| {
                let (a, b) = g.out_hw();
                a > 0 && b > 0
            })
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
