//! The mixed op with its terms' trailing batch norms folded in: over [N, C, HW] inputs,
//! y = sum_k w_k n_k(x_k), where n_k is the identity or a per-channel affine map
//! `n(x) = a[c] x + b[c]` (a batch norm without affine parameters: a = 1 / sqrt(var + eps),
//! b = -mean a, from [`norm_coefficients`]).
//!
//! DARTS ends its pool, conv and strided skip edges in such a BN. Folded here, no normalised
//! tensor is ever written: the forward maps each x_k in registers, and the backward makes n_k(x_k)
//! again where it needs it. With dy_k = w_k g (g = dL/dy, never written either):
//! - a training-mode BN term: dx_k = A dy_k + B n_k(x_k) + K per channel, A = a,
//!   B = -a sum(dy_k n_k(x_k)) / m, K = -a sum(dy_k) / m (m = N HW);
//! - an eval-mode BN term (fixed statistics): dx_k = a dy_k;
//! - an identity term: dx_k = dy_k;
//! - every term: dL/dw_k = <g, n_k(x_k)>.
//!
//! Two passes in all: [`plane_sums`] (the three sums per plane and term, one read of g and of each
//! x_k), then [`input_grads`] (one more read of each, and each dx_k written). Each expression is
//! the one the separate ops compute (normalise, weighted sum, the BN's VJP from its output), so
//! the values have the same bits as theirs.
use crate::par;
use crate::simd::{self, f32x8, load, store, LANES};
use rayon::prelude::*;

pub use crate::batchnorm::BnShape;

/// One term of the sum: its weight, its input [N, C, HW] and what normalises it.
#[derive(Clone, Copy)]
pub struct Term<'a> {
    pub w: f32,
    pub x: &'a [f32],
    pub norm: Norm<'a>,
}

/// A term's normalisation.
#[derive(Clone, Copy)]
pub enum Norm<'a> {
    /// n(x) = x.
    Identity,
    /// `n(x) = a[c] x + b[c]`. `batch`: the statistics are the batch's own (a training-mode BN,
    /// whose gradient flows through them); else fixed (eval mode).
    Bn {
        a: &'a [f32],
        b: &'a [f32],
        batch: bool,
    },
}

/// A batch norm's (a, b) per channel from its statistics: a = 1 / sqrt(var + eps),
/// b = 0 - mean a (the expressions of [`crate::batchnorm::normalize`] without affine parameters).
pub fn norm_coefficients(mean: &[f32], var: &[f32], eps: f32, a: &mut [f32], b: &mut [f32]) {
    for (((a, b), &m), &v) in a.iter_mut().zip(b.iter_mut()).zip(mean).zip(var) {
        *a = 1.0 / (v + eps).sqrt();
        *b = 0.0 - m * *a;
    }
}

impl Term<'_> {
    /// n(x) for 8 values of channel c.
    #[inline(always)]
    fn n8(&self, c: usize, v: f32x8) -> f32x8 {
        match self.norm {
            Norm::Identity => v,
            Norm::Bn { a, b, .. } => f32x8::splat(a[c]) * v + f32x8::splat(b[c]),
        }
    }

    /// n(x) for one value of channel c.
    #[inline(always)]
    fn n1(&self, c: usize, v: f32) -> f32 {
        match self.norm {
            Norm::Identity => v,
            Norm::Bn { a, b, .. } => a[c] * v + b[c],
        }
    }
}

/// y = sum_k w_k n_k(x_k), accumulated from 0 in term order (parallel over planes).
pub fn forward(s: BnShape, terms: &[Term], y: &mut [f32]) {
    debug_assert!(terms.iter().all(|t| t.x.len() == y.len()));
    let hw = s.hw;
    let n8 = hw / LANES * LANES;
    par::chunks(y, hw, 2 * terms.len() * y.len(), |p, y| {
        let (c, at) = (p % s.c, p * hw);
        for i in (0..n8).step_by(LANES) {
            let mut acc = f32x8::ZERO;
            for t in terms {
                acc += f32x8::splat(t.w) * t.n8(c, load(&t.x[at + i..]));
            }
            store(acc, &mut y[i..]);
        }
        for (i, y) in y.iter_mut().enumerate().skip(n8) {
            let mut acc = 0.0;
            for t in terms {
                acc += t.w * t.n1(c, t.x[at + i]);
            }
            *y = acc;
        }
    });
}

/// Values per plane and term in [`plane_sums`]' output.
const SUMS: usize = 3;

/// Length of [`plane_sums`]' output for `k` terms: N * C * k * 3.
pub fn sums_len(s: BnShape, k: usize) -> usize {
    s.n * s.c * k * SUMS
}

/// Length of [`coefficients`]' output for `k` terms: k * C * 3.
pub fn coef_len(s: BnShape, k: usize) -> usize {
    k * s.c * SUMS
}

/// Per plane (n, c) and term k, `sums[(n C + c) k + k][..3]` = [sum dy_k, sum dy_k n_k(x_k),
/// sum g n_k(x_k)] over the plane, dy_k = 0 + w_k g; each in [`simd::reduce`]'s fixed order, as
/// [`simd::sum_and_dot`] would take them of stored dy_k and n_k(x_k).
pub fn plane_sums(s: BnShape, terms: &[Term], g: &[f32], sums: &mut [f32]) {
    let (hw, k) = (s.hw, terms.len());
    let sums = &mut sums[..sums_len(s, k)];
    par::chunks(sums, k * SUMS, 2 * (k + 1) * g.len(), |p, out| {
        let (c, at) = (p % s.c, p * hw);
        let g = &g[at..][..hw];
        for (t, out) in terms.iter().zip(out.chunks_exact_mut(SUMS)) {
            out.copy_from_slice(&term_sums(t, c, g, &t.x[at..][..hw]));
        }
    });
}

/// One plane's three sums of one term (see [`plane_sums`]).
fn term_sums(t: &Term, c: usize, g: &[f32], x: &[f32]) -> [f32; SUMS] {
    let n8 = g.len() / LANES * LANES;
    let wv = f32x8::splat(t.w);
    let [mut sd, mut sdy, mut sgy] = simd::reduce(n8, |i| {
        let gv = load(&g[i..]);
        let (dy, y) = (f32x8::ZERO + wv * gv, t.n8(c, load(&x[i..])));
        [dy, dy * y, gv * y]
    });
    for i in n8..g.len() {
        let (dy, y) = (0.0 + t.w * g[i], t.n1(c, x[i]));
        sd += dy;
        sdy += dy * y;
        sgy += g[i] * y;
    }
    [sd, sdy, sgy]
}

/// From [`plane_sums`]' `sums`: each term's weight gradient `dw[k]` = <g, n_k(x_k)> (the planes'
/// sums added in f64 in plane order), and per term and channel the input gradient's
/// coefficients `coef[(k C + c) 3..]` = (A, B, K) of a training-mode BN term (sums over samples in
/// f64 in sample order, as [`crate::batchnorm::OutputGrad::train`] takes them). Other terms'
/// coefficients are left as they were: [`input_grads`] does not read them.
pub fn coefficients(s: BnShape, terms: &[Term], sums: &[f32], coef: &mut [f32], dw: &mut [f32]) {
    let k = terms.len();
    let at = |n: usize, c: usize, j: usize| &sums[((n * s.c + c) * k + j) * SUMS..][..SUMS];
    let m = (s.n * s.hw) as f32;
    for (j, t) in terms.iter().enumerate() {
        dw[j] = (0..s.n)
            .flat_map(|n| (0..s.c).map(move |c| (n, c)))
            .map(|(n, c)| at(n, c, j)[2] as f64)
            .sum::<f64>() as f32;
        let Norm::Bn { a, batch: true, .. } = t.norm else {
            continue;
        };
        for c in 0..s.c {
            let (mut sd, mut sdy) = (0.0f64, 0.0f64);
            for n in 0..s.n {
                (sd, sdy) = (sd + at(n, c, j)[0] as f64, sdy + at(n, c, j)[1] as f64);
            }
            let (sd, sdy, invstd) = (sd as f32, sdy as f32, a[c]);
            coef[(j * s.c + c) * SUMS..][..SUMS].copy_from_slice(&[
                invstd,
                -invstd * sdy / m,
                -invstd * sd / m,
            ]);
        }
    }
}

/// One term's input gradient buffer: written whole (`add` false: `0.0 + v`, the bits of adding
/// into zeros) or added into.
pub struct Dx<'a> {
    pub data: &'a mut [f32],
    pub add: bool,
}

/// Terms handled per sweep of [`input_grads`] (each sweep reads g once more).
const GROUP: usize = 8;

/// dx_k for every term that has `Some` buffer in `dxs` (in term order), from g and `coef`
/// ([`coefficients`]): parallel over samples, each sample's g read from cache for every term.
pub fn input_grads(
    s: BnShape,
    terms: &[Term],
    g: &[f32],
    coef: &[f32],
    dxs: &mut [Option<Dx<'_>>],
) {
    debug_assert_eq!(terms.len(), dxs.len());
    let sample = s.c * s.hw;
    for (group, (terms, dxs)) in terms.chunks(GROUP).zip(dxs.chunks_mut(GROUP)).enumerate() {
        let first = group * GROUP;
        // Each wanted buffer cut into samples; task n takes sample n of every one.
        let mut its: [Option<(bool, std::slice::ChunksMut<f32>)>; GROUP] = Default::default();
        for (it, dx) in its.iter_mut().zip(dxs.iter_mut()) {
            *it = dx.as_mut().map(|d| (d.add, d.data.chunks_mut(sample)));
        }
        let samples: Vec<(usize, [Option<Dx>; GROUP])> = (0..s.n)
            .map(|n| {
                let outs = std::array::from_fn(|j| {
                    let (add, it) = its[j].as_mut()?;
                    let data = it.next().expect("N samples");
                    Some(Dx { data, add: *add })
                });
                (n, outs)
            })
            .collect();
        let run = |(n, outs): (usize, [Option<Dx>; GROUP])| {
            for (j, (t, out)) in terms.iter().zip(outs).enumerate() {
                let Some(Dx { data, add }) = out else {
                    continue;
                };
                let coef = &coef[(first + j) * s.c * SUMS..][..s.c * SUMS];
                for (c, dx) in data.chunks_mut(s.hw).enumerate() {
                    let at = (n * s.c + c) * s.hw;
                    let (g, x, coef) = (&g[at..][..s.hw], &t.x[at..][..s.hw], &coef[c * SUMS..]);
                    match add {
                        true => term_grad::<true>(t, c, coef, g, x, dx),
                        false => term_grad::<false>(t, c, coef, g, x, dx),
                    }
                }
            }
        };
        // Last samples first: [`plane_sums`] read them last, so they are the likeliest still in
        // cache (at 32 x 32 planes g and seven terms fill a 32 MiB L3; read in the order of
        // plane_sums, each sample would be evicted just before it is wanted). Samples are
        // independent: the order changes no value.
        samples
            .into_par_iter()
            .rev()
            .with_min_len(par::min_len(4 * terms.len() * g.len()))
            .for_each(run);
    }
}

/// One term's input gradient, made plane by plane where its producer's backward reads it
/// instead of written by [`input_grads`]: the term (its `x` the producer's output, [N, C, HW]),
/// the mixed op's output gradient `g` and the term's (A, B, K) per channel ([`coefficients`],
/// [C, 3]).
#[derive(Clone, Copy)]
pub struct TermPlanes<'a> {
    pub term: Term<'a>,
    pub g: &'a [f32],
    pub coef: &'a [f32],
    /// Channels (C).
    pub c: usize,
}

impl TermPlanes<'_> {
    /// Plane `p` (sample p / C, channel p % C) written whole into `dx` (`0.0 + v`, one plane
    /// long): the values [`input_grads`] writes there.
    pub fn plane(&self, p: usize, dx: &mut [f32]) {
        let (c, hw) = (p % self.c, dx.len());
        let (g, x) = (&self.g[p * hw..][..hw], &self.term.x[p * hw..][..hw]);
        term_grad::<false>(&self.term, c, &self.coef[c * SUMS..][..SUMS], g, x, dx)
    }
}

/// One plane of one term's input gradient (see the module doc), into `dx` (added when `ADD`).
#[inline(always)]
fn term_grad<const ADD: bool>(
    t: &Term,
    c: usize,
    coef: &[f32],
    g: &[f32],
    x: &[f32],
    dx: &mut [f32],
) {
    let n8 = dx.len() / LANES * LANES;
    let start = |dx: &[f32], i: usize| if ADD { load(&dx[i..]) } else { f32x8::ZERO };
    let wv = f32x8::splat(t.w);
    match t.norm {
        Norm::Bn { batch: true, .. } => {
            let (a, b, k) = (coef[0], coef[1], coef[2]);
            let (av, bv, kv) = (f32x8::splat(a), f32x8::splat(b), f32x8::splat(k));
            for i in (0..n8).step_by(LANES) {
                let dy = f32x8::ZERO + wv * load(&g[i..]);
                let y = t.n8(c, load(&x[i..]));
                store(start(dx, i) + av * dy + bv * y + kv, &mut dx[i..]);
            }
            for i in n8..dx.len() {
                let (dy, y) = (0.0 + t.w * g[i], t.n1(c, x[i]));
                dx[i] = if ADD { dx[i] } else { 0.0 } + (a * dy + b * y + k);
            }
        }
        Norm::Bn {
            a, batch: false, ..
        } => {
            let av = f32x8::splat(a[c]);
            for i in (0..n8).step_by(LANES) {
                let dy = f32x8::ZERO + wv * load(&g[i..]);
                store(start(dx, i) + av * dy, &mut dx[i..]);
            }
            for i in n8..dx.len() {
                let dy = 0.0 + t.w * g[i];
                dx[i] = if ADD { dx[i] } else { 0.0 } + a[c] * dy;
            }
        }
        Norm::Identity => {
            for i in (0..n8).step_by(LANES) {
                store(start(dx, i) + wv * load(&g[i..]), &mut dx[i..]);
            }
            for i in n8..dx.len() {
                dx[i] = if ADD { dx[i] } else { 0.0 } + t.w * g[i];
            }
        }
    }
}

/// Plain loops in f64 where the fast version sums: the definitions.
pub mod reference {
    use super::{BnShape, Norm, Term};

    fn n(t: &Term, c: usize, v: f32) -> f64 {
        match t.norm {
            Norm::Identity => v as f64,
            Norm::Bn { a, b, .. } => a[c] as f64 * v as f64 + b[c] as f64,
        }
    }

    pub fn forward(s: BnShape, terms: &[Term], y: &mut [f32]) {
        for (i, y) in y.iter_mut().enumerate() {
            let c = i / s.hw % s.c;
            *y = terms
                .iter()
                .map(|t| t.w as f64 * n(t, c, t.x[i]))
                .sum::<f64>() as f32;
        }
    }

    /// `dw[k]` and every dx_k (overwritten), by the module doc's formulas.
    pub fn backward(s: BnShape, terms: &[Term], g: &[f32], dw: &mut [f32], dxs: &mut [Vec<f32>]) {
        let m = (s.n * s.hw) as f64;
        let plane = |n: usize, c: usize| (n * s.c + c) * s.hw..(n * s.c + c + 1) * s.hw;
        for ((t, dw), dx) in terms.iter().zip(dw.iter_mut()).zip(dxs.iter_mut()) {
            let w = t.w as f64;
            *dw = (0..g.len())
                .map(|i| g[i] as f64 * n(t, i / s.hw % s.c, t.x[i]))
                .sum::<f64>() as f32;
            for c in 0..s.c {
                let idx = || (0..s.n).flat_map(|n| plane(n, c));
                let sd: f64 = idx().map(|i| w * g[i] as f64).sum();
                let sdy: f64 = idx().map(|i| w * g[i] as f64 * n(t, c, t.x[i])).sum();
                for i in idx() {
                    let dy = w * g[i] as f64;
                    dx[i] = match t.norm {
                        Norm::Identity => dy,
                        Norm::Bn {
                            a, batch: false, ..
                        } => a[c] as f64 * dy,
                        Norm::Bn { a, batch: true, .. } => {
                            a[c] as f64 * (dy - sd / m - n(t, c, t.x[i]) * sdy / m)
                        }
                    } as f32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::vec_f32;
    use proptest::prelude::*;

    /// Terms in one test: more than a [`GROUP`], so the gradients take two sweeps (the second
    /// with a training-mode BN term, term 10).
    const K: usize = GROUP + 3;

    /// [n, c, hw], g, K inputs, and per term (a[c], b[c]) and a weight.
    fn case() -> impl Strategy<Value = (BnShape, Vec<f32>, Vec<Vec<f32>>, Vec<f32>)> {
        (
            1usize..4,
            1usize..4,
            prop::sample::select(vec![1usize, 5, 8, 16, 37, 64]),
        )
            .prop_flat_map(|(n, c, hw)| {
                let len = n * c * hw;
                (
                    Just(BnShape { n, c, hw }),
                    vec_f32(len),
                    prop::collection::vec(vec_f32(len), K),
                    prop::collection::vec(0.2f32..1.5, K * (2 * c + 1)),
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Term k: an identity (k % 3 = 0), a training-mode BN (1) or an eval-mode BN (2), each
        /// with its own coefficients and weight; terms 3 and 7 want no gradient.
        #[test]
        fn matches_reference((s, g, xs, p) in case(), add in any::<bool>()) {
            let per = 2 * s.c + 1;
            let terms: Vec<Term> = (0..K)
                .map(|k| {
                    let q = &p[k * per..][..per];
                    let (a, b) = q[..2 * s.c].split_at(s.c);
                    let norm = match k % 3 {
                        0 => Norm::Identity,
                        m => Norm::Bn { a, b, batch: m == 1 },
                    };
                    Term { w: if k % 2 == 0 { q[2 * s.c] } else { -q[2 * s.c] }, x: &xs[k], norm }
                })
                .collect();
            let len = g.len();
            let (mut y, mut y_ref) = (vec![0.0; len], vec![0.0; len]);
            forward(s, &terms, &mut y);
            reference::forward(s, &terms, &mut y_ref);
            for (u, v) in y.iter().zip(&y_ref) {
                prop_assert!((u - v).abs() <= 1e-5 * (1.0 + v.abs()), "y {u} vs {v}");
            }
            let mut sums = vec![f32::NAN; sums_len(s, K)];
            let (mut coef, mut dw) = (vec![f32::NAN; coef_len(s, K)], vec![0.0; K]);
            plane_sums(s, &terms, &g, &mut sums);
            coefficients(s, &terms, &sums, &mut coef, &mut dw);
            let start: Vec<Vec<f32>> = (0..K).map(|k| (0..len).map(|i| (i * (k + 2)) as f32 * 0.01).collect()).collect();
            let mut bufs: Vec<Vec<f32>> = start.iter().map(|v| if add { v.clone() } else { vec![f32::NAN; len] }).collect();
            let skipped = |k: usize| k % 4 == 3;
            let mut dxs: Vec<Option<Dx>> = bufs
                .iter_mut()
                .enumerate()
                .map(|(k, d)| (!skipped(k)).then_some(Dx { data: d, add }))
                .collect();
            input_grads(s, &terms, &g, &coef, &mut dxs);
            let (mut dw_ref, mut dx_ref) = (vec![0.0; K], vec![vec![0.0; len]; K]);
            reference::backward(s, &terms, &g, &mut dw_ref, &mut dx_ref);
            for (u, v) in dw.iter().zip(&dw_ref) {
                prop_assert!((u - v).abs() <= 1e-4 * (1.0 + v.abs()), "dw {u} vs {v}");
            }
            for k in 0..K {
                if skipped(k) {
                    let untouched = bufs[k].iter().zip(&start[k]).all(|(u, v)| if add { u == v } else { u.is_nan() });
                    prop_assert!(untouched, "term {k}, without a buffer, was written");
                    continue;
                }
                for i in 0..len {
                    let want = dx_ref[k][i] + if add { start[k][i] } else { 0.0 };
                    let tol = 1e-4 * (1.0 + want.abs());
                    prop_assert!((bufs[k][i] - want).abs() <= tol, "dx{k}[{i}] {} vs {want}", bufs[k][i]);
                }
                // Made plane by plane where a producer reads it: the bits written into zeros.
                if !add {
                    let planes = TermPlanes { term: terms[k], g: &g, coef: &coef[k * s.c * SUMS..], c: s.c };
                    let mut plane = vec![f32::NAN; s.hw];
                    for p in 0..s.n * s.c {
                        planes.plane(p, &mut plane);
                        let written = &bufs[k][p * s.hw..][..s.hw];
                        prop_assert!(plane.iter().zip(written).all(|(u, v)| u.to_bits() == v.to_bits()), "term {k}, plane {p}");
                    }
                }
            }
        }
    }

    /// The folded op's values have the bits of the separate ops it replaces: normalise then
    /// weighted sum forward; axpy into zeros, the BN's output-side VJP backward.
    #[test]
    fn same_bits_as_the_separate_ops() {
        use crate::batchnorm as bn;
        use crate::elementwise as ew;
        let s = BnShape { n: 3, c: 2, hw: 37 };
        let len = s.n * s.c * s.hw;
        let val = |k: usize, i: usize| ((i * 7919 + k * 104729) % 1000) as f32 / 250.0 - 2.0;
        let (x, g): (Vec<f32>, Vec<f32>) = (
            (0..len).map(|i| val(1, i)).collect(),
            (0..len).map(|i| val(2, i)).collect(),
        );
        let (mut mean, mut var) = (vec![0.0; s.c], vec![0.0; s.c]);
        bn::batch_stats(
            s,
            &x,
            &mut vec![0.0; bn::stats_partial_len(s)],
            &mut mean,
            &mut var,
        );
        let (mut a, mut b) = (vec![0.0; s.c], vec![0.0; s.c]);
        norm_coefficients(&mean, &var, 1e-5, &mut a, &mut b);
        let w = 0.37f32;
        let terms = [Term {
            w,
            x: &x,
            norm: Norm::Bn {
                a: &a,
                b: &b,
                batch: true,
            },
        }];
        // Separately: y = normalise(x), out = w y; dy = 0 + w g; dx from y and dy.
        let mut y = vec![0.0; len];
        bn::normalize(s, &x, &mean, &var, 1e-5, None, None, &mut y);
        let mut out = vec![0.0; len];
        ew::weighted_sum(&[w], &[&y], &mut out);
        let mut dy = vec![0.0; len];
        ew::axpy_to(w, &g, &mut dy, false);
        let mut scratch = vec![0.0; bn::backward_scratch_len(s)];
        let mut dx = vec![0.0; len];
        bn::backward_train_from_output(s, &y, &var, 1e-5, &dy, &mut dx, true, &mut scratch);
        // Folded.
        let mut out2 = vec![0.0; len];
        forward(s, &terms, &mut out2);
        let mut sums = vec![0.0; sums_len(s, 1)];
        let (mut coef, mut dw) = (vec![0.0; coef_len(s, 1)], [0.0]);
        plane_sums(s, &terms, &g, &mut sums);
        coefficients(s, &terms, &sums, &mut coef, &mut dw);
        let mut dx2 = vec![f32::NAN; len];
        input_grads(
            s,
            &terms,
            &g,
            &coef,
            &mut [Some(Dx {
                data: &mut dx2,
                add: false,
            })],
        );
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&out), bits(&out2));
        assert_eq!(bits(&dx), bits(&dx2));
    }
}
