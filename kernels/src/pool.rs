//! 2-D max and average pooling over kxk windows with stride and zero padding (dilation 1).
//!
//! Max pooling keeps the flat in-plane index of each window's maximum for the backward pass; ties go to
//! the first maximum in row-major window order (PyTorch's rule). Average pooling divides by the number
//! of window positions that lie inside the input (`count_include_pad=False`).
//! Shapes: x [N, C, H, W], y [N, C, Ho, Wo]; the geometry is a [`ConvGeom`] with c_out == c_in.
//!
//! Fast forward: per plane in parallel; on each output row the columns whose whole window lies inside
//! the input are done eight at a time with f32x8, the border columns one at a time. Backward passes are
//! scatters, parallel over planes.
use crate::conv::{valid_range, ConvGeom};
use crate::par;
use crate::simd::{f32x8, load_strided, LANES};

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

/// Output columns whose whole window is inside the input.
fn interior_cols(g: &ConvGeom, wo: usize) -> (usize, usize) {
    let (lo, _) = valid_range(g.w, wo, 0, g.stride, g.pad);
    let (_, hi) = valid_range(g.w, wo, g.kw - 1, g.stride, g.pad);
    (lo, hi.max(lo))
}

/// y = max over each window, argmax = flat index (ih * W + iw) of the maximum in its input plane.
pub fn max_forward(g: &ConvGeom, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    let (ho, wo) = g.out_hw();
    let plane = g.h * g.w;
    debug_assert!(plane < 1 << 24, "argmax indices travel through f32 lanes");
    let (c_lo, c_hi) = interior_cols(g, wo);
    let lane_off = f32x8::new(std::array::from_fn(|l| (l * g.stride) as f32));
    par::chunks2(
        y,
        ho * wo,
        argmax,
        ho * wo,
        g.y_len() * g.kh * g.kw,
        |p, y, am| {
            let x = &x[p * plane..][..plane];
            for oh in 0..ho {
                let (r0, r1) = rows(g, oh);
                let mut ow = 0;
                while ow < wo {
                    if ow >= c_lo && ow + LANES <= c_hi {
                        let (mut best, mut idx) = (f32x8::splat(f32::NEG_INFINITY), f32x8::ZERO);
                        for ih in r0..r1 {
                            for kj in 0..g.kw {
                                let start = ih * g.w + ow * g.stride + kj - g.pad;
                                let v = load_strided(&x[start..], g.stride);
                                let better = v.simd_gt(best);
                                best = better.select(v, best);
                                idx = better.select(f32x8::splat(start as f32) + lane_off, idx);
                            }
                        }
                        for l in 0..LANES {
                            y[oh * wo + ow + l] = best.as_array()[l];
                            am[oh * wo + ow + l] = idx.as_array()[l] as u32;
                        }
                        ow += LANES;
                    } else {
                        let (best, idx) = reference::window_max(g, x, r0, r1, cols(g, ow));
                        y[oh * wo + ow] = best;
                        am[oh * wo + ow] = idx;
                        ow += 1;
                    }
                }
            }
        },
    );
}

/// dx[argmax] += dy, plane by plane.
pub fn max_backward(g: &ConvGeom, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    par::chunks(dx, g.h * g.w, g.y_len(), |p, dx| {
        let (dy, am) = (
            &dy[p * ho * wo..][..ho * wo],
            &argmax[p * ho * wo..][..ho * wo],
        );
        for (d, &i) in dy.iter().zip(am) {
            dx[i as usize] += d;
        }
    });
}

/// y = mean over the in-bounds positions of each window.
pub fn avg_forward(g: &ConvGeom, x: &[f32], y: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let plane = g.h * g.w;
    let (c_lo, c_hi) = interior_cols(g, wo);
    par::chunks(y, ho * wo, g.y_len() * g.kh * g.kw, |p, y| {
        let x = &x[p * plane..][..plane];
        for oh in 0..ho {
            let (r0, r1) = rows(g, oh);
            let mut ow = 0;
            while ow < wo {
                if ow >= c_lo && ow + LANES <= c_hi {
                    let mut acc = f32x8::ZERO;
                    for ih in r0..r1 {
                        for kj in 0..g.kw {
                            acc +=
                                load_strided(&x[ih * g.w + ow * g.stride + kj - g.pad..], g.stride);
                        }
                    }
                    let inv = 1.0 / ((r1 - r0) * g.kw) as f32;
                    for l in 0..LANES {
                        y[oh * wo + ow + l] = acc.as_array()[l] * inv;
                    }
                    ow += LANES;
                } else {
                    y[oh * wo + ow] = reference::window_mean(g, x, r0, r1, cols(g, ow));
                    ow += 1;
                }
            }
        }
    });
}

/// dx += dy / count spread over each window's in-bounds positions.
pub fn avg_backward(g: &ConvGeom, dy: &[f32], dx: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    par::chunks(dx, g.h * g.w, g.y_len() * g.kh * g.kw, |p, dx| {
        reference::avg_backward_plane(g, &dy[p * ho * wo..][..ho * wo], dx)
    });
}

/// The readable definitions; the fast kernels also use the per-window helpers on border columns.
pub mod reference {
    use super::{cols, rows, ConvGeom};

    /// Max and its flat index over input rows r0..r1, columns c.0..c.1 (first maximum wins).
    pub(crate) fn window_max(
        g: &ConvGeom,
        x: &[f32],
        r0: usize,
        r1: usize,
        c: (usize, usize),
    ) -> (f32, u32) {
        let (mut best, mut idx) = (f32::NEG_INFINITY, 0u32);
        for ih in r0..r1 {
            for iw in c.0..c.1 {
                let v = x[ih * g.w + iw];
                if v > best {
                    best = v;
                    idx = (ih * g.w + iw) as u32;
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

    pub fn max_forward(g: &ConvGeom, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
        let (ho, wo) = g.out_hw();
        let plane = g.h * g.w;
        for p in 0..g.n * g.c_in {
            for oh in 0..ho {
                let (r0, r1) = rows(g, oh);
                for ow in 0..wo {
                    let (v, i) = window_max(g, &x[p * plane..][..plane], r0, r1, cols(g, ow));
                    y[(p * ho + oh) * wo + ow] = v;
                    argmax[(p * ho + oh) * wo + ow] = i;
                }
            }
        }
    }

    pub fn max_backward(g: &ConvGeom, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
        let (ho, wo) = g.out_hw();
        for p in 0..g.n * g.c_in {
            for o in 0..ho * wo {
                dx[p * g.h * g.w + argmax[p * ho * wo + o] as usize] += dy[p * ho * wo + o];
            }
        }
    }

    pub fn avg_forward(g: &ConvGeom, x: &[f32], y: &mut [f32]) {
        let (ho, wo) = g.out_hw();
        let plane = g.h * g.w;
        for p in 0..g.n * g.c_in {
            for oh in 0..ho {
                let (r0, r1) = rows(g, oh);
                for ow in 0..wo {
                    y[(p * ho + oh) * wo + ow] =
                        window_mean(g, &x[p * plane..][..plane], r0, r1, cols(g, ow));
                }
            }
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
        )
            .prop_map(|(n, c, h, w, k, s, p)| ConvGeom {
                n,
                c_in: c,
                h,
                w,
                c_out: c,
                kh: k,
                kw: k,
                stride: s,
                pad: p.min(k / 2),
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
            (g, x, dy, dx0, ties) in geom().prop_flat_map(|g| (Just(g), vec_f32(g.x_len()), vec_f32(g.y_len()), vec_f32(g.x_len()), any::<bool>()))
        ) {
            // Rounded inputs make ties common, exercising the first-maximum rule.
            let x: Vec<f32> = if ties { x.iter().map(|v| v.round()).collect() } else { x };
            let (mut y, mut y_ref) = (vec![0.0; g.y_len()], vec![0.0; g.y_len()]);
            let (mut am, mut am_ref) = (vec![0u32; g.y_len()], vec![0u32; g.y_len()]);
            max_forward(&g, &x, &mut y, &mut am);
            reference::max_forward(&g, &x, &mut y_ref, &mut am_ref);
            prop_assert_eq!(&y, &y_ref);
            prop_assert_eq!(&am, &am_ref);
            let (mut dx, mut dx_ref) = (dx0.clone(), dx0.clone());
            max_backward(&g, &dy, &am, &mut dx);
            reference::max_backward(&g, &dy, &am_ref, &mut dx_ref);
            prop_assert_eq!(&dx, &dx_ref);

            avg_forward(&g, &x, &mut y);
            reference::avg_forward(&g, &x, &mut y_ref);
            assert_close(&y, &y_ref, 1e-6);
            let (mut dx, mut dx_ref) = (dx0.clone(), dx0.clone());
            avg_backward(&g, &dy, &mut dx);
            reference::avg_backward(&g, &dy, &mut dx_ref);
            prop_assert_eq!(&dx, &dx_ref);
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
        avg_forward(&g, &[1.0, 2.0, 3.0, 4.0], &mut y);
        assert_eq!(y, vec![2.5; 4]); // every window covers all four inputs, divisor 4 not 9
    }
}
