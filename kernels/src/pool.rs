//! 2-D max and average pooling over kxk windows with stride and zero padding (dilation 1).
//!
//! Max pooling keeps, for the backward pass, which tap of its window holds each maximum: one byte
//! per output (`ki * kw + kj`, windows of at most [`MAX_TAPS`] taps), a quarter of the bytes of a
//! flat index, written by the forward and read by the backward. Ties go to the first maximum in
//! row-major window order (PyTorch's rule); a window with nothing above -inf points at its first
//! in-bounds position. Average pooling divides by the number of window positions that lie inside
//! the input (`count_include_pad=False`).
//! Shapes: x [N, C, H, W], y [N, C, Ho, Wo]; the geometry is a [`ConvGeom`] with c_out == c_in.
//!
//! Fast path ([`crate::tiled`]): square windows, stride 1 or 2, planes whose padded copy fits
//! [`PLANE_MAX`] values (32x32 DARTS planes; about 43x43 at most): each plane is
//! padded once (with -inf for max, zeros for average) and every window reduced in register tiles;
//! the average's backward is the same box sum over dy / count, zero-inserted by the stride. Other
//! geometries run the per-window reference loops. All passes are parallel over samples or planes.
use crate::batchnorm;
use crate::conv::ConvGeom;
use crate::par;
use crate::simd::{f32x8, LANES};
use crate::tiled::{self, put, Layout, MaxArg, Padded, Use, Weighted, MAX_K, PLANE_MAX};

/// The most taps a max pool's window may have: its argmax is one byte.
pub const MAX_TAPS: usize = 256;

/// Input rows `ih_lo..ih_hi` that output row `oh` reads.
fn rows(g: &ConvGeom, oh: usize) -> (usize, usize) {
    let top = (oh * g.stride) as isize - g.pad as isize;
    (
        top.max(0) as usize,
        ((top + g.kh as isize) as usize).min(g.h),
    )
}

/// Input columns `iw_lo..iw_hi` that output column `ow` reads.
fn cols(g: &ConvGeom, ow: usize) -> (usize, usize) {
    let left = (ow * g.stride) as isize - g.pad as isize;
    (
        left.max(0) as usize,
        ((left + g.kw as isize) as usize).min(g.w),
    )
}

/// The average's divisor, the in-bounds positions of output (oh, ow)'s window, as the product of
/// two factors made once per call: count(oh, ow) = rows[oh] * cols[ow] (its in-bounds rows times
/// its in-bounds columns, small integers: exact in f32, so dividing by it has the bits of dividing
/// by the integer count). `cols` runs on past wo with 1s, so every 8 columns load as one vector:
/// the forward's tiles and the backward's shares divide 8 values at a time (a count per value,
/// with a scalar division, took a third of the forward and half of the backward).
struct Counts {
    rows: [f32; PLANE_MAX],
    cols: [f32; PLANE_MAX + LANES],
}

impl Counts {
    /// For a geometry of the tiled path (ho and wo at most [`PLANE_MAX`]).
    fn new(g: &ConvGeom) -> Self {
        let (ho, wo) = g.out_hw();
        let mut c = Counts {
            rows: [1.0; PLANE_MAX],
            cols: [1.0; PLANE_MAX + LANES],
        };
        for (oh, r) in c.rows.iter_mut().enumerate().take(ho) {
            let (r0, r1) = rows(g, oh);
            *r = (r1 - r0) as f32;
        }
        for (ow, v) in c.cols.iter_mut().enumerate().take(wo) {
            let (c0, c1) = cols(g, ow);
            *v = (c1 - c0) as f32;
        }
        c
    }

    /// The counts of row oh, columns ow0..ow0 + 8.
    fn lanes(&self, oh: usize, ow0: usize) -> f32x8 {
        f32x8::splat(self.rows[oh]) * crate::simd::load(&self.cols[ow0..])
    }

    /// shares = dy / count, position by position, for one plane of dy (rows `wo` long).
    fn shares(&self, dy: &[f32], wo: usize, shares: &mut [f32]) {
        let n8 = wo / LANES * LANES;
        for (oh, (d, s)) in dy
            .chunks_exact(wo)
            .zip(shares.chunks_exact_mut(wo))
            .enumerate()
        {
            for j in (0..n8).step_by(LANES) {
                crate::simd::store(crate::simd::load(&d[j..]) / self.lanes(oh, j), &mut s[j..]);
            }
            for j in n8..wo {
                s[j] = d[j] / (self.rows[oh] * self.cols[j]);
            }
        }
    }
}

/// The tiled layouts (input padded for the forward of the pool `what`, dy zero-inserted and padded
/// by k - 1 - pad for the average's backward), or `None` where the fast path does not apply.
fn layouts(g: &ConvGeom, what: Use) -> Option<(Layout, Layout)> {
    let (ho, wo) = g.out_hw();
    let (k, s, p) = (g.kh, g.stride, g.pad);
    if g.kw != k || p >= k || ho == 0 || wo == 0 {
        return None;
    }
    let fwd = Layout::new(g.h + 2 * p, g.w + 2 * p, (k, 1, s), (ho, wo), what)?;
    let q = k - 1 - p;
    let bwd = Layout::new(
        (ho - 1) * s + 1 + 2 * q,
        (wo - 1) * s + 1 + 2 * q,
        (k, 1, 1),
        (g.h, g.w),
        Use::AvgPool,
    )?;
    Some((fwd, bwd))
}

/// y = max over each window, argmax = the tap (ki * kw + kj) of the window that holds it.
/// With `stats` ([N, C, 2]), each output plane's [`batchnorm::plane_stats`] too, taken while the
/// plane is in cache (a trailing training-mode BN's statistics without reading y again).
pub fn max_forward(
    g: &ConvGeom,
    x: &[f32],
    y: &mut [f32],
    argmax: &mut [u8],
    stats: Option<&mut [f32]>,
) {
    let (ho, wo) = g.out_hw();
    let plane = g.h * g.w;
    assert!(
        g.kh * g.kw <= MAX_TAPS,
        "a max pool window of more than 256 taps"
    );
    let work = g.y_len() * g.kh * g.kw;
    let Some((lay, _)) = layouts(g, Use::MaxPool) else {
        par::chunks2(y, ho * wo, argmax, ho * wo, work, |p, y, am| {
            reference::max_plane(g, &x[p * plane..][..plane], y, am)
        });
        return plane_stats_of(g, y, stats);
    };
    // Each tap's id is its index.
    let ids: [f32; MAX_K * MAX_K] = std::array::from_fn(|t| t as f32);
    let op = MaxArg(&ids[..g.kh * g.kw]);
    let sample = g.c_in * ho * wo;
    let (stats, stats_len) = per_sample_stats(g, stats);
    par::chunks2_with_scratch(
        y,
        sample,
        argmax,
        sample,
        stats,
        stats_len,
        work,
        |n, y, am, st| {
            let mut scratch = Padded::default();
            let mut buf = scratch.frame(&lay, plane, g.w, g.pad, 1, f32::NEG_INFINITY);
            for (c, (y, am)) in y
                .chunks_mut(ho * wo)
                .zip(am.chunks_mut(ho * wo))
                .enumerate()
            {
                let x = &x[(n * g.c_in + c) * plane..][..plane];
                let p = buf.fill(x, |v| v);
                tiled::tiles(&lay, p, &op, |oh, ow0, (best, id)| {
                    let n = (wo - ow0).min(LANES);
                    let at = oh * wo + ow0;
                    put(best, &mut y[oh * wo..][..wo], ow0);
                    let found = best.simd_gt(f32x8::splat(f32::NEG_INFINITY)).to_bitmask();
                    if n == LANES && found == 0xff {
                        // Every lane found its maximum (the usual case): the ids narrowed to
                        // bytes in registers (lane by lane, a sixth of the forward), one store.
                        let t16 = wide::i16x8::from_i32x8_saturate(id.round_int());
                        let b = wide::u8x16::narrow_i16x8(t16, t16).to_array();
                        am[at..at + LANES].copy_from_slice(&b[..LANES]);
                        return;
                    }
                    let taps = id.round_int().to_array();
                    for (l, (a, &t)) in am[at..at + n].iter_mut().zip(&taps).enumerate() {
                        *a = if found >> l & 1 == 1 {
                            t as u8
                        } else {
                            // Nothing beats -inf: the reference's rule decides the tap.
                            reference::window_max(g, x, oh, ow0 + l).1
                        };
                    }
                });
                put_stats(st, c, y);
            }
        },
    );
}

/// `stats` as the per-sample scratch of the [`par`] helpers: the buffer and 2 C values a sample,
/// or an empty buffer and 0 (every sample then gets an empty slice).
fn per_sample_stats<'a>(g: &ConvGeom, stats: Option<&'a mut [f32]>) -> (&'a mut [f32], usize) {
    match stats {
        Some(s) => (s, 2 * g.c_in),
        None => (&mut [], 0),
    }
}

/// Plane c's [`batchnorm::plane_stats`] into a sample's statistics `st` (none if `st` is empty).
fn put_stats(st: &mut [f32], c: usize, plane: &[f32]) {
    if !st.is_empty() {
        st[2 * c..2 * c + 2].copy_from_slice(&batchnorm::plane_stats(plane));
    }
}

/// Each output plane's [`batchnorm::plane_stats`] into `stats`, if given: for the paths that do
/// not take them in cache.
fn plane_stats_of(g: &ConvGeom, y: &[f32], stats: Option<&mut [f32]>) {
    let (ho, wo) = g.out_hw();
    if let Some(stats) = stats {
        par::chunks(stats, 2, g.y_len(), |p, st| {
            st.copy_from_slice(&batchnorm::plane_stats(&y[p * ho * wo..][..ho * wo]))
        });
    }
}

/// Tap t's offset in the input plane from its window's corner: (t / kw) * W + t % kw.
fn tap_offsets(g: &ConvGeom) -> [usize; MAX_TAPS] {
    std::array::from_fn(|t| (t / g.kw) * g.w + t % g.kw)
}

/// `dx[argmax] += dy`, plane by plane: output (oh, ow)'s tap t is input (oh s - pad + t / kw,
/// ow s - pad + t % kw). Each plane's outputs add in row-major order.
pub fn max_backward(g: &ConvGeom, dy: &[f32], argmax: &[u8], dx: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let off = tap_offsets(g);
    par::chunks(dx, g.h * g.w, g.y_len(), |p, dx| {
        let (dy, am) = (
            &dy[p * ho * wo..][..ho * wo],
            &argmax[p * ho * wo..][..ho * wo],
        );
        for (oh, (dy, am)) in dy.chunks_exact(wo).zip(am.chunks_exact(wo)).enumerate() {
            // The window corner (oh s - pad, ow s - pad) may lie in the padding: the index is
            // taken with the padding added back to the row and column, then removed.
            let row = (oh * g.stride) * g.w;
            for (ow, (d, &t)) in dy.iter().zip(am).enumerate() {
                dx[row + ow * g.stride + off[t as usize] - g.pad * g.w - g.pad] += d;
            }
        }
    });
}

/// y = mean over the in-bounds positions of each window; with `stats`, each output plane's BN
/// statistics as [`max_forward`] takes them.
pub fn avg_forward(g: &ConvGeom, x: &[f32], y: &mut [f32], stats: Option<&mut [f32]>) {
    let (ho, wo) = g.out_hw();
    let plane = g.h * g.w;
    let work = g.y_len() * g.kh * g.kw;
    let Some((lay, _)) = layouts(g, Use::AvgPool) else {
        par::chunks(y, ho * wo, work, |p, y| {
            reference::mean_plane(g, &x[p * plane..][..plane], y)
        });
        return plane_stats_of(g, y, stats);
    };
    let ones = [1.0f32; MAX_K * MAX_K];
    let op = Weighted(&ones[..g.kh * g.kw]);
    let counts = Counts::new(g);
    let (stats, stats_len) = per_sample_stats(g, stats);
    par::chunks_with_scratch(y, g.c_in * ho * wo, stats, stats_len, work, |n, y, st| {
        let mut scratch = Padded::default();
        let mut buf = scratch.frame(&lay, plane, g.w, g.pad, 1, 0.0);
        for (c, y) in y.chunks_mut(ho * wo).enumerate() {
            let x = &x[(n * g.c_in + c) * plane..][..plane];
            let p = buf.fill(x, |v| v);
            tiled::tiles(&lay, p, &op, |oh, ow0, sum| {
                let n = counts.lanes(oh, ow0);
                put(sum * (f32x8::ONE / n), &mut y[oh * wo..][..wo], ow0);
            });
            put_stats(st, c, y);
        }
    });
}

/// dx += dy / count spread over each window's in-bounds positions.
pub fn avg_backward(g: &ConvGeom, dy: &[f32], dx: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let plane = g.h * g.w;
    let work = g.y_len() * g.kh * g.kw;
    let Some((_, lay)) = layouts(g, Use::AvgPool) else {
        return par::chunks(dx, plane, work, |p, dx| {
            reference::avg_backward_plane(g, &dy[p * ho * wo..][..ho * wo], dx)
        });
    };
    let ones = [1.0f32; MAX_K * MAX_K];
    let op = Weighted(&ones[..g.kh * g.kw]);
    let q = g.kh - 1 - g.pad;
    let counts = Counts::new(g);
    par::chunks(dx, g.c_in * plane, work, |n, dx| {
        let (mut scratch, mut shares) = (Padded::default(), [0.0f32; PLANE_MAX]);
        let mut buf = scratch.frame(&lay, ho * wo, wo, q, g.stride, 0.0);
        for (c, dx) in dx.chunks_mut(plane).enumerate() {
            let dy = &dy[(n * g.c_in + c) * ho * wo..][..ho * wo];
            let shares = &mut shares[..ho * wo];
            counts.shares(dy, wo, shares);
            let p = buf.fill(shares, |v| v);
            tiled::tiles(&lay, p, &op, |ih, iw0, v| {
                let (at, n) = (ih * g.w + iw0, (g.w - iw0).min(LANES));
                tiled::put_grad::<true>(v, &mut dx[at..at + n], None);
            });
        }
    });
}

/// The readable definitions; the fast kernels also use the per-window helpers on border columns.
pub mod reference {
    use super::{cols, rows, ConvGeom};

    /// Max over the window of output (oh, ow) and the tap (ki * kw + kj) that holds it (first
    /// maximum wins; the first in-bounds tap if nothing beats -inf).
    pub(crate) fn window_max(g: &ConvGeom, x: &[f32], oh: usize, ow: usize) -> (f32, u8) {
        let ((r0, r1), (c0, c1)) = (rows(g, oh), cols(g, ow));
        // Window row ki is input row oh s - pad + ki (column likewise).
        let tap = |ih: usize, iw: usize| {
            ((ih + g.pad - oh * g.stride) * g.kw + iw + g.pad - ow * g.stride) as u8
        };
        let (mut best, mut idx) = (f32::NEG_INFINITY, tap(r0, c0));
        for ih in r0..r1 {
            for iw in c0..c1 {
                let v = x[ih * g.w + iw];
                if v > best {
                    best = v;
                    idx = tap(ih, iw);
                }
            }
        }
        (best, idx)
    }

    /// Sum of the window divided by its in-bounds size, summed in row-major window order.
    pub(crate) fn window_mean(
        g: &ConvGeom,
        x: &[f32],
        r0: usize,
        r1: usize,
        c: (usize, usize),
    ) -> f32 {
        let mut acc = 0.0;
        for ih in r0..r1 {
            for iw in c.0..c.1 {
                acc += x[ih * g.w + iw];
            }
        }
        acc * (1.0 / ((r1 - r0) * (c.1 - c.0)) as f32)
    }

    pub(crate) fn avg_backward_plane(g: &ConvGeom, dy: &[f32], dx: &mut [f32]) {
        let (ho, wo) = g.out_hw();
        for oh in 0..ho {
            let (r0, r1) = rows(g, oh);
            for ow in 0..wo {
                let c = cols(g, ow);
                let share = dy[oh * wo + ow] / ((r1 - r0) * (c.1 - c.0)) as f32;
                for ih in r0..r1 {
                    for iw in c.0..c.1 {
                        dx[ih * g.w + iw] += share;
                    }
                }
            }
        }
    }

    /// Max pooling of one plane.
    pub(crate) fn max_plane(g: &ConvGeom, x: &[f32], y: &mut [f32], argmax: &mut [u8]) {
        let (ho, wo) = g.out_hw();
        for oh in 0..ho {
            for ow in 0..wo {
                (y[oh * wo + ow], argmax[oh * wo + ow]) = window_max(g, x, oh, ow);
            }
        }
    }

    /// Average pooling of one plane.
    pub(crate) fn mean_plane(g: &ConvGeom, x: &[f32], y: &mut [f32]) {
        let (ho, wo) = g.out_hw();
        for oh in 0..ho {
            let (r0, r1) = rows(g, oh);
            for ow in 0..wo {
                y[oh * wo + ow] = window_mean(g, x, r0, r1, cols(g, ow));
            }
        }
    }

    pub fn max_forward(g: &ConvGeom, x: &[f32], y: &mut [f32], argmax: &mut [u8]) {
        let (ho, wo) = g.out_hw();
        let plane = g.h * g.w;
        for p in 0..g.n * g.c_in {
            let o = p * ho * wo..(p + 1) * ho * wo;
            max_plane(
                g,
                &x[p * plane..][..plane],
                &mut y[o.clone()],
                &mut argmax[o],
            );
        }
    }

    pub fn max_backward(g: &ConvGeom, dy: &[f32], argmax: &[u8], dx: &mut [f32]) {
        let (ho, wo) = g.out_hw();
        for p in 0..g.n * g.c_in {
            for oh in 0..ho {
                for ow in 0..wo {
                    let o = p * ho * wo + oh * wo + ow;
                    let (ki, kj) = (argmax[o] as usize / g.kw, argmax[o] as usize % g.kw);
                    let (ih, iw) = (oh * g.stride + ki - g.pad, ow * g.stride + kj - g.pad);
                    dx[p * g.h * g.w + ih * g.w + iw] += dy[o];
                }
            }
        }
    }

    pub fn avg_forward(g: &ConvGeom, x: &[f32], y: &mut [f32]) {
        let (ho, wo) = g.out_hw();
        let plane = g.h * g.w;
        for p in 0..g.n * g.c_in {
            mean_plane(
                g,
                &x[p * plane..][..plane],
                &mut y[p * ho * wo..][..ho * wo],
            );
        }
    }

    pub fn avg_backward(g: &ConvGeom, dy: &[f32], dx: &mut [f32]) {
        let (ho, wo) = g.out_hw();
        let plane = g.h * g.w;
        for p in 0..g.n * g.c_in {
            avg_backward_plane(
                g,
                &dy[p * ho * wo..][..ho * wo],
                &mut dx[p * plane..][..plane],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, vec_f32};
    use proptest::prelude::*;

    fn geom() -> impl Strategy<Value = ConvGeom> {
        (
            1usize..3,
            1usize..3,
            1usize..12,
            1usize..40,
            prop_oneof![Just(3usize), 1usize..6],
            1usize..4,
            0usize..3,
            prop_oneof![3 => Just(None), 1 => (1usize..6).prop_map(Some)],
        )
            .prop_map(|(n, c, h, w, k, s, p, kw)| ConvGeom {
                n,
                c_in: c,
                h,
                w,
                c_out: c,
                kh: k,
                // Mostly square windows (all that ops asks for); sometimes not, as the kernels allow.
                kw: kw.unwrap_or(k),
                stride: s,
                pad: p.min(k / 2).min(kw.unwrap_or(k) / 2),
                dilation: 1,
                groups: 1,
                pre_relu: false,
            })
            .prop_filter("window fits", |g| {
                let (a, b) = g.out_hw();
                a > 0 && b > 0
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn simd_matches_reference(
            (g, x, dy, dx0, ties, holes) in geom().prop_flat_map(|g| (Just(g), vec_f32(g.x_len()), vec_f32(g.y_len()), vec_f32(g.x_len()), any::<bool>(), any::<bool>()))
        ) {
            // Rounded inputs make ties common, exercising the first-maximum rule.
            let x: Vec<f32> = if ties { x.iter().map(|v| v.round()).collect() } else { x };
            // -inf holes (the max pool only): windows that hold nothing but -inf and padding take
            // the reference's rule for their index.
            let xm: Vec<f32> = if holes { x.iter().map(|&v| if v < 0.5 { f32::NEG_INFINITY } else { v }).collect() } else { x.clone() };
            let (mut y, mut y_ref) = (vec![0.0; g.y_len()], vec![0.0; g.y_len()]);
            let (mut am, mut am_ref) = (vec![0u8; g.y_len()], vec![0u8; g.y_len()]);
            let planes = |y: &[f32]| {
                let hw = y.len() / (g.n * g.c_in);
                y.chunks(hw).flat_map(crate::batchnorm::plane_stats).collect::<Vec<f32>>()
            };
            let mut stats = vec![f32::NAN; 2 * g.n * g.c_in];
            max_forward(&g, &xm, &mut y, &mut am, Some(&mut stats));
            reference::max_forward(&g, &xm, &mut y_ref, &mut am_ref);
            prop_assert_eq!(&y, &y_ref);
            prop_assert_eq!(&am, &am_ref);
            // The statistics taken in cache: the bits of taking them from y afterwards.
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&stats), bits(&planes(&y)));
            // Each tap names an in-bounds input that holds its window's maximum.
            let (ho, wo) = g.out_hw();
            for (o, (&t, &v)) in am.iter().zip(&y).enumerate() {
                let (p, oh, ow) = (o / (ho * wo), o / wo % ho, o % wo);
                let (ki, kj) = (t as usize / g.kw, t as usize % g.kw);
                prop_assert!(ki < g.kh);
                let (ih, iw) = ((oh * g.stride + ki) as isize - g.pad as isize, (ow * g.stride + kj) as isize - g.pad as isize);
                prop_assert!((0..g.h as isize).contains(&ih) && (0..g.w as isize).contains(&iw));
                let at = xm[p * g.h * g.w + ih as usize * g.w + iw as usize];
                prop_assert_eq!(at.to_bits(), v.to_bits());
            }
            let mut again = vec![0u8; g.y_len()];
            max_forward(&g, &xm, &mut y, &mut again, None);
            prop_assert_eq!(&y, &y_ref);
            let (mut dx, mut dx_ref) = (dx0.clone(), dx0.clone());
            max_backward(&g, &dy, &am, &mut dx);
            reference::max_backward(&g, &dy, &am_ref, &mut dx_ref);
            prop_assert_eq!(&dx, &dx_ref);

            avg_forward(&g, &x, &mut y, None);
            reference::avg_forward(&g, &x, &mut y_ref);
            assert_close(&y, &y_ref, 1e-6);
            let mut y2 = vec![0.0; g.y_len()];
            avg_forward(&g, &x, &mut y2, Some(&mut stats));
            prop_assert_eq!(&y2, &y);
            prop_assert_eq!(bits(&stats), bits(&planes(&y)));
            let (mut dx, mut dx_ref) = (dx0.clone(), dx0.clone());
            avg_backward(&g, &dy, &mut dx);
            reference::avg_backward(&g, &dy, &mut dx_ref);
            assert_close(&dx, &dx_ref, 1e-6);
        }
    }

    #[test]
    fn darts_pools_take_the_tiled_path() {
        for hw in [8, 16, 32] {
            for stride in [1, 2] {
                let g = ConvGeom {
                    n: 2,
                    c_in: 3,
                    h: hw,
                    w: hw,
                    c_out: 3,
                    kh: 3,
                    kw: 3,
                    stride,
                    pad: 1,
                    dilation: 1,
                    groups: 1,
                    pre_relu: false,
                };
                assert!(layouts(&g, Use::MaxPool).is_some() && layouts(&g, Use::AvgPool).is_some());
            }
        }
    }

    #[test]
    fn avg_pool_does_not_count_padding() {
        let g = ConvGeom {
            n: 1,
            c_in: 1,
            h: 2,
            w: 2,
            c_out: 1,
            kh: 3,
            kw: 3,
            stride: 1,
            pad: 1,
            dilation: 1,
            groups: 1,
            pre_relu: false,
        };
        let mut y = vec![0.0; 4];
        avg_forward(&g, &[1.0, 2.0, 3.0, 4.0], &mut y, None);
        assert_eq!(y, vec![2.5; 4]); // every window covers all four inputs, divisor 4 not 9
    }
}
