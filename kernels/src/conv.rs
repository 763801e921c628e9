//! Dense 2-D convolution (no bias): stride, padding, dilation, groups, and an optional ReLU fused
//! into the input read (`pre_relu`: the conv sees max(x, 0), as in DARTS's ReLU-Conv-BN blocks).
//!
//! Fast path: per sample (in parallel), im2col into this thread's column buffer (`COLUMNS`), then
//! one sgemm per group. A 1x1 stride-1 unpadded conv without the fused ReLU skips im2col and is a
//! plain sgemm on the input (the pointwise conv). Shapes: x [N, Cin, H, W],
//! w [Cout, Cin/groups, kh, kw], y [N, Cout, Ho, Wo] with Ho = (H + 2p - d(kh - 1) - 1) / s + 1.
use crate::gemm::{self, sgemm, sgemm_ld, Ld, Trans};
use crate::par;
use crate::scratch;
use std::cell::RefCell;

/// The shape of one convolution. Also used by depthwise conv and pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub dilation: usize,
    pub groups: usize,
    /// Read the input through a ReLU (fused; the backward masks by x > 0).
    pub pre_relu: bool,
}

/// Output length of a windowed op along one axis; `None` if the window does not fit.
pub fn out_len(len: usize, k: usize, stride: usize, pad: usize, dilation: usize) -> Option<usize> {
    let span = dilation * (k - 1) + 1;
    let padded = len + 2 * pad;
    (stride > 0 && k > 0 && padded >= span).then(|| (padded - span) / stride + 1)
}

impl ConvGeom {
    /// (Ho, Wo). Callers validate the geometry first; an impossible one yields (0, 0).
    pub fn out_hw(&self) -> (usize, usize) {
        (
            out_len(self.h, self.kh, self.stride, self.pad, self.dilation).unwrap_or(0),
            out_len(self.w, self.kw, self.stride, self.pad, self.dilation).unwrap_or(0),
        )
    }

    pub fn x_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }

    pub fn y_len(&self) -> usize {
        let (ho, wo) = self.out_hw();
        self.n * self.c_out * ho * wo
    }

    pub fn w_len(&self) -> usize {
        self.c_out * (self.c_in / self.groups) * self.kh * self.kw
    }

    /// True when the conv is a plain matrix product on the input (no im2col needed).
    pub fn is_direct(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0 && !self.pre_relu
    }

    /// Rows of the im2col matrix of one group: (Cin / groups) * kh * kw.
    fn col_rows(&self) -> usize {
        self.c_in / self.groups * self.kh * self.kw
    }

    /// Distance between the im2col matrix's rows: [`gemm::row_stride`] of Ho * Wo (the products
    /// read many of its rows at once as their B).
    fn col_stride(&self) -> usize {
        let (ho, wo) = self.out_hw();
        gemm::row_stride(ho * wo)
    }

    /// Values of one sample's column buffer: (Cin / groups) * kh * kw rows `col_stride` apart
    /// (Ho * Wo, padded as [`gemm::row_stride`] pads), or 0 for a direct (pointwise) conv.
    fn col_len(&self) -> usize {
        if self.is_direct() {
            0
        } else {
            self.col_rows() * self.col_stride()
        }
    }

    fn flops(&self) -> usize {
        2 * self.y_len() * self.col_rows()
    }
}

/// Fills `col` ((Cin/groups * kh * kw) x (Ho * Wo), rows [`ConvGeom::col_stride`] apart) from
/// one group of one sample `x` ([Cin/groups, H, W]).
fn im2col(g: &ConvGeom, x: &[f32], col: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let (cg, ld) = (g.c_in / g.groups, g.col_stride());
    for c in 0..cg {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = &mut col[((c * g.kh + ki) * g.kw + kj) * ld..][..ho * wo];
                let (lo, hi) = valid_range(g.w, wo, kj * g.dilation, g.stride, g.pad);
                for oh in 0..ho {
                    let out = &mut row[oh * wo..][..wo];
                    let ih = (oh * g.stride + ki * g.dilation) as isize - g.pad as isize;
                    if ih < 0 || ih >= g.h as isize || lo >= hi {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &x[(c * g.h + ih as usize) * g.w..][..g.w];
                    out[..lo].fill(0.0);
                    out[hi..].fill(0.0);
                    let iw0 = lo * g.stride + kj * g.dilation - g.pad;
                    let out = &mut out[lo..hi];
                    match (g.stride, g.pre_relu) {
                        // Contiguous runs: loops the compiler vectorises.
                        (1, false) => out.copy_from_slice(&src[iw0..][..hi - lo]),
                        (1, true) => {
                            for (o, &v) in out.iter_mut().zip(&src[iw0..]) {
                                *o = v.max(0.0);
                            }
                        }
                        _ => {
                            for (ow, o) in out.iter_mut().enumerate() {
                                let v = src[iw0 + ow * g.stride];
                                *o = if g.pre_relu { v.max(0.0) } else { v };
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The products' B for one group of one sample: `xg` itself for a direct conv, else its im2col
/// columns made in `col`; with the distance between its rows.
fn columns<'a>(g: &ConvGeom, xg: &'a [f32], col: &'a mut [f32]) -> (&'a [f32], usize) {
    let (ho, wo) = g.out_hw();
    if g.is_direct() {
        return (xg, ho * wo);
    }
    let (rows, ld) = (g.col_rows(), g.col_stride());
    im2col(g, xg, &mut col[..rows * ld]);
    (&col[..rows * ld], ld)
}

/// Adds `col` back into the input positions it was read from: dx += col2im(col), masked by x > 0
/// when the ReLU is fused.
fn col2im_add(g: &ConvGeom, x: &[f32], col: &[f32], dx: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let (cg, ld) = (g.c_in / g.groups, g.col_stride());
    for c in 0..cg {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = &col[((c * g.kh + ki) * g.kw + kj) * ld..][..ho * wo];
                let (lo, hi) = valid_range(g.w, wo, kj * g.dilation, g.stride, g.pad);
                for oh in 0..ho {
                    let ih = (oh * g.stride + ki * g.dilation) as isize - g.pad as isize;
                    if ih < 0 || ih >= g.h as isize || lo >= hi {
                        continue;
                    }
                    let off = (c * g.h + ih as usize) * g.w;
                    let iw0 = lo * g.stride + kj * g.dilation - g.pad;
                    let src = &row[oh * wo + lo..oh * wo + hi];
                    if g.stride == 1 {
                        // Contiguous runs: loops the compiler vectorises.
                        let (d, xs) = (&mut dx[off + iw0..][..hi - lo], &x[off + iw0..][..hi - lo]);
                        if g.pre_relu {
                            for ((d, &v), &xv) in d.iter_mut().zip(src).zip(xs) {
                                *d += if xv > 0.0 { v } else { 0.0 };
                            }
                        } else {
                            for (d, &v) in d.iter_mut().zip(src) {
                                *d += v;
                            }
                        }
                        continue;
                    }
                    for (j, &v) in src.iter().enumerate() {
                        let iw = off + iw0 + j * g.stride;
                        if !g.pre_relu || x[iw] > 0.0 {
                            dx[iw] += v;
                        }
                    }
                }
            }
        }
    }
}

/// The output columns `lo..hi` whose input column `ow * stride + tap - pad` lies inside `0..w`.
pub(crate) fn valid_range(
    w: usize,
    wo: usize,
    tap: usize,
    stride: usize,
    pad: usize,
) -> (usize, usize) {
    // ow * s + tap >= pad  <=>  ow >= ceil((pad - tap) / s)
    let lo = if tap >= pad {
        0
    } else {
        (pad - tap).div_ceil(stride)
    };
    // ow * s + tap - pad <= w - 1  <=>  ow <= (w - 1 + pad - tap) / s
    let hi = if w + pad > tap {
        ((w - 1 + pad - tap) / stride + 1).min(wo)
    } else {
        0
    };
    (lo.min(hi), hi)
}

thread_local! {
    /// Each thread's im2col columns of the sample it works on (`scratch.rs`).
    static COLUMNS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// y = conv(x, w).
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let (hw, cg, og) = (ho * wo, g.c_in / g.groups, g.c_out / g.groups);
    let rows = g.col_rows();
    let x_len = g.c_in * g.h * g.w;
    par::chunks(y, g.c_out * hw, g.flops(), |n, y| {
        scratch::with(&COLUMNS, g.col_len(), |col| {
            let x = &x[n * x_len..][..x_len];
            for gi in 0..g.groups {
                let xg = &x[gi * cg * g.h * g.w..][..cg * g.h * g.w];
                let wg = &w[gi * og * rows..][..og * rows];
                let yg = &mut y[gi * og * hw..][..og * hw];
                let (b, ldb) = columns(g, xg, col);
                let lds = Ld {
                    a: rows,
                    b: ldb,
                    c: hw,
                };
                sgemm_ld(og, rows, hw, 1.0, wg, Trans::N, b, Trans::N, 0.0, yg, lds);
            }
        })
    });
}

/// dx += conv's input gradient.
pub fn backward_data(g: &ConvGeom, x: &[f32], w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let (hw, cg, og) = (ho * wo, g.c_in / g.groups, g.c_out / g.groups);
    let (rows, ld) = (g.col_rows(), g.col_stride());
    let x_len = g.c_in * g.h * g.w;
    let y_len = g.c_out * hw;
    par::chunks(dx, x_len, g.flops(), |n, dx| {
        scratch::with(&COLUMNS, g.col_len(), |col| {
            let (x, dy) = (&x[n * x_len..][..x_len], &dy[n * y_len..][..y_len]);
            for gi in 0..g.groups {
                let gx = gi * cg * g.h * g.w..(gi + 1) * cg * g.h * g.w;
                let wg = &w[gi * og * rows..][..og * rows];
                let dyg = &dy[gi * og * hw..][..og * hw];
                if g.is_direct() {
                    sgemm(
                        rows,
                        og,
                        hw,
                        1.0,
                        wg,
                        Trans::T,
                        dyg,
                        Trans::N,
                        1.0,
                        &mut dx[gx],
                    );
                } else {
                    let dcol = &mut col[..rows * ld];
                    let lds = Ld {
                        a: rows,
                        b: hw,
                        c: ld,
                    };
                    sgemm_ld(
                        rows,
                        og,
                        hw,
                        1.0,
                        wg,
                        Trans::T,
                        dyg,
                        Trans::N,
                        0.0,
                        dcol,
                        lds,
                    );
                    col2im_add(g, &x[gx.clone()], dcol, &mut dx[gx]);
                }
            }
        })
    });
}

/// Length of the per-sample partial buffer [`backward_weight`] needs: N * |w|.
pub fn weight_partial_len(g: &ConvGeom) -> usize {
    g.n * g.w_len()
}

/// dw += conv's weight gradient. Each sample's contribution goes to its own slot of `partial`
/// ([`weight_partial_len`] values) in parallel; the slots are then added into `dw` in sample order,
/// so the result does not depend on the thread count.
pub fn backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32], partial: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let (hw, cg, og) = (ho * wo, g.c_in / g.groups, g.c_out / g.groups);
    let rows = g.col_rows();
    let (x_len, y_len, w_len) = (g.c_in * g.h * g.w, g.c_out * hw, g.w_len());
    let partial = &mut partial[..g.n * w_len];
    par::chunks(partial, w_len, g.flops(), |n, pw| {
        scratch::with(&COLUMNS, g.col_len(), |col| {
            let (x, dy) = (&x[n * x_len..][..x_len], &dy[n * y_len..][..y_len]);
            for gi in 0..g.groups {
                let xg = &x[gi * cg * g.h * g.w..][..cg * g.h * g.w];
                let dyg = &dy[gi * og * hw..][..og * hw];
                let (b, ldb) = columns(g, xg, col);
                let pw = &mut pw[gi * og * rows..][..og * rows];
                let lds = Ld {
                    a: hw,
                    b: ldb,
                    c: rows,
                };
                sgemm_ld(og, hw, rows, 1.0, dyg, Trans::N, b, Trans::T, 0.0, pw, lds);
            }
        })
    });
    crate::elementwise::add_parts(dw, partial, w_len, 0);
}

/// Direct seven-loop definitions (same signatures minus the scratch buffers).
pub mod reference {
    use super::ConvGeom;

    /// Calls `f(x_index, y_index, w_index)` for every (output, tap) pair that reads a real input.
    fn for_each_tap(g: &ConvGeom, mut f: impl FnMut(usize, usize, usize)) {
        let (ho, wo) = g.out_hw();
        let (cg, og) = (g.c_in / g.groups, g.c_out / g.groups);
        for n in 0..g.n {
            for co in 0..g.c_out {
                let gi = co / og;
                for oh in 0..ho {
                    for ow in 0..wo {
                        for ci in 0..cg {
                            for ki in 0..g.kh {
                                for kj in 0..g.kw {
                                    let ih =
                                        (oh * g.stride + ki * g.dilation) as isize - g.pad as isize;
                                    let iw =
                                        (ow * g.stride + kj * g.dilation) as isize - g.pad as isize;
                                    if ih < 0 || iw < 0 || ih >= g.h as isize || iw >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xi = ((n * g.c_in + gi * cg + ci) * g.h + ih as usize)
                                        * g.w
                                        + iw as usize;
                                    let yi = ((n * g.c_out + co) * ho + oh) * wo + ow;
                                    let wi = ((co * cg + ci) * g.kh + ki) * g.kw + kj;
                                    f(xi, yi, wi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn input(g: &ConvGeom, v: f32) -> f32 {
        if g.pre_relu {
            v.max(0.0)
        } else {
            v
        }
    }

    pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) {
        y.fill(0.0);
        for_each_tap(g, |xi, yi, wi| y[yi] += w[wi] * input(g, x[xi]));
    }

    pub fn backward_data(g: &ConvGeom, x: &[f32], w: &[f32], dy: &[f32], dx: &mut [f32]) {
        for_each_tap(g, |xi, yi, wi| {
            if !g.pre_relu || x[xi] > 0.0 {
                dx[xi] += w[wi] * dy[yi]
            }
        });
    }

    pub fn backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
        for_each_tap(g, |xi, yi, wi| dw[wi] += dy[yi] * input(g, x[xi]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, vec_f32};
    use proptest::prelude::*;

    /// Random small geometries: kernel 1..=3, stride 1..=2, pad 0..=2, dilation 1..=2, groups 1..=2.
    pub(crate) fn geom() -> impl Strategy<Value = ConvGeom> {
        (
            1usize..3,
            1usize..3,
            1usize..3,
            3usize..9,
            3usize..9,
            1usize..4,
            1usize..4,
            1usize..3,
            0usize..3,
            1usize..3,
            any::<bool>(),
        )
            .prop_map(|(n, gr, cpg, h, w, k, k2, s, p, d, relu)| ConvGeom {
                n,
                c_in: gr * cpg,
                h,
                w,
                c_out: gr * (1 + (k2 % 3)),
                kh: k,
                kw: k2,
                stride: s,
                pad: p,
                dilation: d,
                groups: gr,
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
        fn fast_matches_reference(
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

            let mut partial = vec![0.0; weight_partial_len(&g)];
            let (mut dw, mut dw_ref) = (w.clone(), w.clone());
            backward_weight(&g, &x, &dy, &mut dw, &mut partial);
            reference::backward_weight(&g, &x, &dy, &mut dw_ref);
            assert_close(&dw, &dw_ref, 1e-4);
        }
    }

    #[test]
    fn pointwise_is_direct_and_matches() {
        let g = ConvGeom {
            n: 2,
            c_in: 5,
            h: 4,
            w: 3,
            c_out: 7,
            kh: 1,
            kw: 1,
            stride: 1,
            pad: 0,
            dilation: 1,
            groups: 1,
            pre_relu: false,
        };
        assert!(g.is_direct() && g.col_len() == 0);
        let x: Vec<f32> = (0..g.x_len()).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..g.w_len()).map(|i| (i as f32 * 0.11).cos()).collect();
        let (mut y, mut y_ref) = (vec![0.0; g.y_len()], vec![0.0; g.y_len()]);
        forward(&g, &x, &w, &mut y);
        reference::forward(&g, &x, &w, &mut y_ref);
        assert_close(&y, &y_ref, 1e-5);
    }

    /// On 32 x 32 outputs the im2col rows lie further apart than their length (see
    /// `col_stride`); all three passes still match the reference, with a 3 x 3 window, a 1x1
    /// through the fused ReLU, and two groups.
    #[test]
    fn padded_columns_match_reference() {
        for (k, pad, groups) in [(3, 1, 1), (1, 0, 1), (3, 1, 2)] {
            let g = ConvGeom {
                n: 2,
                c_in: 4,
                h: 32,
                w: 32,
                c_out: 6,
                kh: k,
                kw: k,
                stride: 1,
                pad,
                dilation: 1,
                groups,
                pre_relu: true,
            };
            assert!(g.col_stride() > 32 * 32);
            let f = |n: usize, m: usize| -> Vec<f32> {
                (0..n)
                    .map(|i| ((i * 37 + m) % 23) as f32 / 11.0 - 1.0)
                    .collect()
            };
            let (x, w, dy) = (f(g.x_len(), 1), f(g.w_len(), 2), f(g.y_len(), 3));
            let (mut y, mut y_ref) = (vec![f32::NAN; g.y_len()], vec![0.0; g.y_len()]);
            forward(&g, &x, &w, &mut y);
            reference::forward(&g, &x, &w, &mut y_ref);
            assert_close(&y, &y_ref, 1e-5);
            let (mut dx, mut dx_ref) = (f(g.x_len(), 4), f(g.x_len(), 4));
            backward_data(&g, &x, &w, &dy, &mut dx);
            reference::backward_data(&g, &x, &w, &dy, &mut dx_ref);
            assert_close(&dx, &dx_ref, 1e-5);
            let mut partial = vec![f32::NAN; weight_partial_len(&g)];
            let (mut dw, mut dw_ref) = (w.clone(), w.clone());
            backward_weight(&g, &x, &dy, &mut dw, &mut partial);
            reference::backward_weight(&g, &x, &dy, &mut dw_ref);
            assert_close(&dw, &dw_ref, 1e-3);
        }
    }

    #[test]
    fn valid_range_matches_brute_force() {
        for w in 1..8 {
            for wo in 1..8 {
                for tap in 0..6 {
                    for s in 1..3 {
                        for p in 0..4 {
                            let (lo, hi) = valid_range(w, wo, tap, s, p);
                            let brute: Vec<usize> = (0..wo)
                                .filter(|ow| {
                                    let i = (ow * s + tap) as isize - p as isize;
                                    i >= 0 && i < w as isize
                                })
                                .collect();
                            let got: Vec<usize> = (lo..hi).collect();
                            assert_eq!(got, brute, "w {w} wo {wo} tap {tap} s {s} p {p}");
                        }
                    }
                }
            }
        }
    }
}
