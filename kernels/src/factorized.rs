//! FactorizedReduce, DARTS's stride-2 identity: two 1x1 stride-2 convs over relu(x), the second one
//! pixel down and right of the first, their channels concatenated:
//! y[:, :c0] = w0 relu(x)[:, :, 0::2, 0::2] and y[:, c0:] = w1 relu(x)[:, :, 1::2, 1::2].
//! Shapes: x [N, C, H, W] with H and W even, w_p [c_p, C], y [N, c0 + c1, H / 2, W / 2].
//!
//! One kernel instead of a shifted copy, two im2col convs and a concatenation: per sample (in
//! parallel), each phase is gathered into this thread's column buffer (`COLUMNS`) and multiplied
//! straight into its channel range of y; the backward scatters both phases' input gradients into dx in one pass (the phases
//! never share a pixel). Same products, in the same order, as those ops.
use crate::gemm::{sgemm, Trans};
use crate::par;
use crate::scratch;
use crate::simd::{f32x8, load, store, LANES};
use std::cell::RefCell;

/// The shape of one FactorizedReduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrGeom {
    pub n: usize,
    pub c_in: usize,
    /// Input height and width, both even.
    pub h: usize,
    pub w: usize,
    /// Output channels of the unshifted and the shifted conv.
    pub c_out: [usize; 2],
}

impl FrGeom {
    /// Output pixels per plane: (H / 2) * (W / 2).
    fn hw(&self) -> usize {
        (self.h / 2) * (self.w / 2)
    }

    pub fn x_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }

    pub fn y_len(&self) -> usize {
        self.n * (self.c_out[0] + self.c_out[1]) * self.hw()
    }

    /// Values of one phase's column buffer: C x (H / 2) (W / 2).
    fn col(&self) -> usize {
        self.c_in * self.hw()
    }

    /// Per-sample scratch of [`backward`]: both weight-gradient partials.
    fn backward_slot(&self) -> usize {
        (self.c_out[0] + self.c_out[1]) * self.c_in
    }

    /// Scratch [`backward`] needs.
    pub fn backward_scratch_len(&self) -> usize {
        self.n * self.backward_slot()
    }

    /// Multiply-adds of the forward (a parallel-or-serial decision's work).
    pub fn work(&self) -> usize {
        self.n * (self.c_out[0] + self.c_out[1]) * self.hw() * self.c_in
    }
}

/// col [C, H/2 * W/2] = relu(x[c, 2i + p, 2j + p]) for one sample x [C, H, W] and phase p.
fn gather(g: &FrGeom, x: &[f32], p: usize, col: &mut [f32]) {
    match p {
        0 => gather_phase::<0>(g, x, col),
        _ => gather_phase::<1>(g, x, col),
    }
}

/// [`gather`] for phase `P`: 8 outputs from 16 inputs at a time (fixed-size arrays, which the
/// compiler turns into vector shuffles), then the rest one by one.
fn gather_phase<const P: usize>(g: &FrGeom, x: &[f32], col: &mut [f32]) {
    let wo = g.w / 2;
    for (c, plane) in col.chunks_exact_mut(g.hw()).enumerate() {
        for (i, out) in plane.chunks_exact_mut(wo).enumerate() {
            let src = &x[(c * g.h + 2 * i + P) * g.w..][..g.w];
            let mut blocks = out.chunks_exact_mut(LANES);
            for (o, s) in (&mut blocks).zip(src.chunks_exact(2 * LANES)) {
                let s: &[f32; 2 * LANES] = s.try_into().unwrap();
                let v: [f32; LANES] = std::array::from_fn(|j| s[2 * j + P].max(0.0));
                o.copy_from_slice(&v);
            }
            let done = wo / LANES * LANES;
            for (j, o) in blocks.into_remainder().iter_mut().enumerate() {
                *o = src[2 * (done + j) + P].max(0.0);
            }
        }
    }
}

/// dx[c, 2i + p, 2j + p] += col[c, i, j] where x there is positive (the ReLU's mask). Rows 2i + p
/// hold only phase p's pixels, so with `add` false they are written whole instead: 0.0 + the
/// masked value at phase p's columns, 0.0 at the others (what adding into zeros would give).
fn scatter(g: &FrGeom, x: &[f32], p: usize, col: &[f32], dx: &mut [f32], add: bool) {
    match (p, add) {
        (0, false) => scatter_phase::<0, false>(g, x, col, dx),
        (0, true) => scatter_phase::<0, true>(g, x, col, dx),
        (_, false) => scatter_phase::<1, false>(g, x, col, dx),
        (_, true) => scatter_phase::<1, true>(g, x, col, dx),
    }
}

/// [`scatter`] for phase `P`, added into dx or written (`ADD`): 4 pixel pairs a vector, phase
/// P's lane of each pair selected where x > 0 (selects, not branches: the mask's signs are as
/// good as random), then the pairs left one by one.
fn scatter_phase<const P: usize, const ADD: bool>(
    g: &FrGeom,
    x: &[f32],
    col: &[f32],
    dx: &mut [f32],
) {
    let wo = g.w / 2;
    let phase =
        f32x8::from(std::array::from_fn(|l| (l % 2) as f32)).simd_eq(f32x8::splat(P as f32));
    for (c, plane) in col.chunks_exact(g.hw()).enumerate() {
        for (i, row) in plane.chunks_exact(wo).enumerate() {
            let at = (c * g.h + 2 * i + P) * g.w;
            let (xs, ds) = (&x[at..][..g.w], &mut dx[at..][..g.w]);
            let pairs = LANES / 2;
            let mut vs = row.chunks_exact(pairs);
            for ((d, xv), v) in ds
                .chunks_exact_mut(LANES)
                .zip(xs.chunks_exact(LANES))
                .zip(&mut vs)
            {
                let vv = f32x8::from(std::array::from_fn(|l| v[l / 2]));
                let on = load(xv).simd_gt(f32x8::ZERO) & phase;
                let out = if ADD {
                    let old = load(d);
                    on.select(old + vv, old)
                } else {
                    on.select(f32x8::ZERO + vv, f32x8::ZERO)
                };
                store(out, d);
            }
            let done = wo / pairs * pairs;
            let rest = ds[2 * done..]
                .chunks_exact_mut(2)
                .zip(xs[2 * done..].chunks_exact(2));
            for ((d, xs), &v) in rest.zip(vs.remainder()) {
                let on = xs[P] > 0.0;
                if ADD {
                    d[P] = if on { d[P] + v } else { d[P] };
                } else {
                    d[P] = if on { 0.0 + v } else { 0.0 };
                    d[1 - P] = 0.0;
                }
            }
        }
    }
}

thread_local! {
    /// Each thread's gathered phase of the sample it works on (`scratch.rs`).
    static COLUMNS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// y = FactorizedReduce(x) with the two weights `w` ([c_p, C] each).
pub fn forward(g: &FrGeom, x: &[f32], w: [&[f32]; 2], y: &mut [f32]) {
    let (x_len, hw) = (g.c_in * g.h * g.w, g.hw());
    let y_len = (g.c_out[0] + g.c_out[1]) * hw;
    par::chunks(y, y_len, 2 * g.work(), |n, y| {
        scratch::with(&COLUMNS, g.col(), |col| {
            forward_sample(g, &x[n * x_len..][..x_len], w, y, col)
        })
    });
}

/// One sample's y from its x, each phase gathered into `col`.
fn forward_sample(g: &FrGeom, x: &[f32], w: [&[f32]; 2], y: &mut [f32], col: &mut [f32]) {
    let hw = g.hw();
    let (y0, y1) = y.split_at_mut(g.c_out[0] * hw);
    for (p, yp) in [y0, y1].into_iter().enumerate() {
        gather(g, x, p, col);
        sgemm(
            g.c_out[p],
            g.c_in,
            hw,
            1.0,
            w[p],
            Trans::N,
            col,
            Trans::N,
            0.0,
            yp,
        );
    }
}

/// The gradients wanted of a FactorizedReduce: each `Some` is added into, except dx when `dx_add`
/// is false: then dx = 0.0 + its gradient (0.0 at the pixels neither phase reads).
pub struct FrGrads<'a> {
    pub dx: Option<&'a mut [f32]>,
    pub dx_add: bool,
    pub dw: [Option<&'a mut [f32]>; 2],
}

/// Adds the gradients of y = FactorizedReduce(x) for dL/dy `dy` into `grads`: per phase,
/// dcol = w_p^T dy_p scattered into dx (masked by x > 0) and dw_p = sum_n dy_p,n col_p,n^T (per
/// sample, then added in sample order: the same bits for any thread count). `scratch` holds
/// [`FrGeom::backward_scratch_len`] values.
pub fn backward(
    g: &FrGeom,
    x: &[f32],
    w: [&[f32]; 2],
    dy: &[f32],
    grads: FrGrads,
    scratch: &mut [f32],
) {
    let (x_len, hw, slot) = (g.c_in * g.h * g.w, g.hw(), g.backward_slot());
    let y_len = (g.c_out[0] + g.c_out[1]) * hw;
    let FrGrads { dx, dx_add, dw } = grads;
    let want_dw = [dw[0].is_some(), dw[1].is_some()];
    let sample = |n: usize, parts: &mut [f32], mut dx: Option<&mut [f32]>, col: &mut [f32]| {
        let x = &x[n * x_len..][..x_len];
        let dy = &dy[n * y_len..][..y_len];
        let (part0, part1) = parts.split_at_mut(g.c_out[0] * g.c_in);
        let (dy0, dy1) = dy.split_at(g.c_out[0] * hw);
        for (p, (dyp, part)) in [(dy0, part0), (dy1, part1)].into_iter().enumerate() {
            if let Some(dx) = dx.as_deref_mut() {
                sgemm(
                    g.c_in,
                    g.c_out[p],
                    hw,
                    1.0,
                    w[p],
                    Trans::T,
                    dyp,
                    Trans::N,
                    0.0,
                    col,
                );
                scatter(g, x, p, col, dx, dx_add);
            }
            if want_dw[p] {
                gather(g, x, p, col);
                sgemm(
                    g.c_out[p],
                    hw,
                    g.c_in,
                    1.0,
                    dyp,
                    Trans::N,
                    col,
                    Trans::T,
                    0.0,
                    part,
                );
            }
        }
    };
    let work = 4 * g.work();
    let scratch = &mut scratch[..g.n * slot];
    match dx {
        Some(dx) => par::chunks2(scratch, slot, dx, x_len, work, |n, s, dx| {
            scratch::with(&COLUMNS, g.col(), |col| sample(n, s, Some(dx), col))
        }),
        None => par::chunks(scratch, slot, work, |n, s| {
            scratch::with(&COLUMNS, g.col(), |col| sample(n, s, None, col))
        }),
    }
    let [dw0, dw1] = dw;
    if let Some(d) = dw0 {
        crate::elementwise::add_parts(d, scratch, slot, 0);
    }
    if let Some(d) = dw1 {
        crate::elementwise::add_parts(d, scratch, slot, g.c_out[0] * g.c_in);
    }
}

/// The definition, loop by loop (same signatures minus the scratch; gradients added into).
pub mod reference {
    use super::FrGeom;

    /// Calls `f(p, x_index, y_index, w_index)` for every (output, input channel) pair.
    fn for_each_tap(g: &FrGeom, mut f: impl FnMut(usize, usize, usize, usize)) {
        let (ho, wo) = (g.h / 2, g.w / 2);
        let c_total = g.c_out[0] + g.c_out[1];
        for n in 0..g.n {
            for p in 0..2 {
                for co in 0..g.c_out[p] {
                    let yc = co + p * g.c_out[0];
                    for ci in 0..g.c_in {
                        for i in 0..ho {
                            for j in 0..wo {
                                let xi = ((n * g.c_in + ci) * g.h + 2 * i + p) * g.w + 2 * j + p;
                                let yi = ((n * c_total + yc) * ho + i) * wo + j;
                                f(p, xi, yi, co * g.c_in + ci);
                            }
                        }
                    }
                }
            }
        }
    }

    pub fn forward(g: &FrGeom, x: &[f32], w: [&[f32]; 2], y: &mut [f32]) {
        y.fill(0.0);
        for_each_tap(g, |p, xi, yi, wi| y[yi] += w[p][wi] * x[xi].max(0.0));
    }

    pub fn backward(
        g: &FrGeom,
        x: &[f32],
        w: [&[f32]; 2],
        dy: &[f32],
        dx: &mut [f32],
        dw: [&mut [f32]; 2],
    ) {
        let [dw0, dw1] = dw;
        for_each_tap(g, |p, xi, yi, wi| {
            if x[xi] > 0.0 {
                dx[xi] += w[p][wi] * dy[yi];
            }
            let d = if p == 0 { &mut *dw0 } else { &mut *dw1 };
            d[wi] += dy[yi] * x[xi].max(0.0);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, vec_f32};
    use proptest::prelude::*;

    fn geom() -> impl Strategy<Value = FrGeom> {
        (
            1usize..4,
            1usize..6,
            1usize..5,
            // Rows of up to 20 pixel pairs: the vector bodies (4 pairs, 8 outputs), their tails,
            // and more pairs than two bodies' worth.
            1usize..21,
            1usize..5,
            1usize..5,
        )
            .prop_map(|(n, c_in, h2, w2, c0, c1)| FrGeom {
                n,
                c_in,
                h: 2 * h2,
                w: 2 * w2,
                c_out: [c0, c1],
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Forward and every gradient against the loops, in write and add mode for dx, each
        /// weight gradient wanted or not.
        #[test]
        fn matches_reference(
            (g, x, w0, w1, dy, old) in geom().prop_flat_map(|g| (
                Just(g),
                vec_f32(g.x_len()),
                vec_f32(g.c_out[0] * g.c_in),
                vec_f32(g.c_out[1] * g.c_in),
                vec_f32(g.y_len()),
                vec_f32(g.x_len()),
            )),
            dx_add in any::<bool>(),
            want in (any::<bool>(), any::<bool>()),
        ) {
            // Exact zeros too: the ReLU's gradient there is 0 (x > 0 is the mask, as PyTorch's).
            let x: Vec<f32> = x.iter().enumerate().map(|(i, &v)| if i % 5 == 0 { 0.0 } else { v }).collect();
            let w = [w0.as_slice(), w1.as_slice()];
            let mut y = vec![f32::NAN; g.y_len()];
            let mut want_y = vec![0.0; g.y_len()];
            forward(&g, &x, w, &mut y);
            reference::forward(&g, &x, w, &mut want_y);
            assert_close(&y, &want_y, 1e-5 * g.c_in as f32);

            let start: Vec<f32> = if dx_add { old.clone() } else { vec![f32::NAN; g.x_len()] };
            let mut dx = start.clone();
            let mut dw = [vec![0.5; w0.len()], vec![-0.5; w1.len()]];
            let [d0, d1] = &mut dw;
            let grads = FrGrads {
                dx: Some(&mut dx),
                dx_add,
                dw: [want.0.then_some(d0.as_mut_slice()), want.1.then_some(d1.as_mut_slice())],
            };
            backward(&g, &x, w, &dy, grads, &mut vec![0.0; g.backward_scratch_len()]);
            let mut want_dx = if dx_add { old } else { vec![0.0; g.x_len()] };
            let mut want_dw = [vec![0.5; w0.len()], vec![-0.5; w1.len()]];
            let [r0, r1] = &mut want_dw;
            reference::backward(&g, &x, w, &dy, &mut want_dx, [r0, r1]);
            assert_close(&dx, &want_dx, 1e-5 * g.c_out[0].max(g.c_out[1]) as f32);
            let tol = 1e-5 * (g.n * g.hw()) as f32;
            for (p, wanted) in [want.0, want.1].into_iter().enumerate() {
                if wanted {
                    assert_close(&dw[p], &want_dw[p], tol);
                }
            }
        }
    }
}
