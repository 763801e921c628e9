//! Max-W mixture weights (sharpDARTS), one alpha row per edge:
//! p = softmax(a), w_k = 1 - max_j p_j + p_k, so the strongest op weighs exactly 1.
//!
//! The max is not detached. Backward, for g = dL/dw: dL/dp = g - e_argmax * sum(g), the second term
//! split evenly among tied maxima; then the softmax backward dL/da = p * (dL/dp - <dL/dp, p>).
//! Rows of exactly 8 (the DARTS primitive count) take the f32x8 path: one vector per row, forward and
//! backward, and on large buffers eight rows at a time transposed (so the row max and sums are
//! vertical ops, in the same order: the same bits), split over threads in fixed chunks. Other row
//! lengths use the scalar definition.
use crate::simd::{self, f32x8, load, store, LANES};

/// Rows per parallel chunk (a multiple of 8, so the 8-row blocks never depend on the thread count).
const CHUNK_ROWS: usize = 4096;

/// Sequential vertical fold c[0] op c[1] op ... (the same order as the per-row horizontal fold).
#[inline(always)]
fn fold(c: &[f32x8; 8], op: impl Fn(f32x8, f32x8) -> f32x8) -> f32x8 {
    c[1..].iter().fold(c[0], |a, &b| op(a, b))
}

/// Eight rows of eight at once, transposed so each lane holds one row: every row reduction is a
/// vertical op. Gives the same bits as [`forward_row`].
#[inline(always)]
fn forward_block(a: &[f32], p: &mut [f32], w: &mut [f32]) {
    let c = f32x8::transpose(std::array::from_fn(|r| load(&a[r * LANES..])));
    let m = fold(&c, f32x8::max);
    let e: [f32x8; 8] = std::array::from_fn(|k| simd::exp_neg(c[k] - m));
    let inv = f32x8::ONE / fold(&e, |a, b| a + b);
    let pc: [f32x8; 8] = std::array::from_fn(|k| e[k] * inv);
    let pm = fold(&pc, f32x8::max);
    let wc: [f32x8; 8] = std::array::from_fn(|k| f32x8::ONE - pm + pc[k]);
    for (r, (pr, wr)) in f32x8::transpose(pc)
        .iter()
        .zip(f32x8::transpose(wc))
        .enumerate()
    {
        store(*pr, &mut p[r * LANES..]);
        store(wr, &mut w[r * LANES..]);
    }
}

/// One row of eight: one f32x8, horizontal reductions.
#[inline(always)]
fn forward_row(a: &[f32], p: &mut [f32], w: &mut [f32]) {
    crate::softmax::softmax_row(&a[..LANES], &mut p[..LANES]);
    let pv = load(p);
    store(f32x8::ONE - f32x8::splat(simd::hmax(pv)) + pv, w);
}

/// p = softmax rows of `alpha` ([rows, cols]), w = 1 - max(p) + p per row.
pub fn forward(alpha: &[f32], cols: usize, p: &mut [f32], w: &mut [f32]) {
    if cols != LANES {
        return reference::forward(alpha, cols, p, w);
    }
    let chunk = CHUNK_ROWS * LANES;
    crate::par::chunks2(p, chunk, w, chunk, 12 * alpha.len(), |ci, p, w| {
        let a = &alpha[ci * chunk..][..p.len()];
        let blocks = p.len() / (LANES * LANES) * LANES * LANES;
        for i in (0..blocks).step_by(LANES * LANES) {
            forward_block(&a[i..], &mut p[i..], &mut w[i..]);
        }
        for i in (blocks..p.len()).step_by(LANES) {
            forward_row(&a[i..], &mut p[i..], &mut w[i..]);
        }
    });
}

/// Backward of eight rows at once, transposed as in [`forward_block`]; same bits as [`backward_row`].
#[inline(always)]
fn backward_block(p: &[f32], g: &[f32], da: &mut [f32]) {
    let pc = f32x8::transpose(std::array::from_fn(|r| load(&p[r * LANES..])));
    let gc = f32x8::transpose(std::array::from_fn(|r| load(&g[r * LANES..])));
    let m = fold(&pc, f32x8::max);
    let ties: [f32x8; 8] =
        std::array::from_fn(|k| pc[k].simd_eq(m).select(f32x8::ONE, f32x8::ZERO));
    let share = fold(&gc, |a, b| a + b) / fold(&ties, |a, b| a + b);
    let dp: [f32x8; 8] = std::array::from_fn(|k| gc[k] - ties[k] * share);
    let prod: [f32x8; 8] = std::array::from_fn(|k| dp[k] * pc[k]);
    let d = fold(&prod, |a, b| a + b);
    let out = f32x8::transpose(std::array::from_fn(|k| pc[k] * (dp[k] - d)));
    for (r, o) in out.iter().enumerate() {
        store(load(&da[r * LANES..]) + *o, &mut da[r * LANES..]);
    }
}

#[inline(always)]
fn backward_row(p: &[f32], g: &[f32], da: &mut [f32]) {
    let (pv, gv) = (load(p), load(g));
    let mv = f32x8::splat(simd::hmax(pv));
    let ties = pv.simd_eq(mv).select(f32x8::ONE, f32x8::ZERO);
    let share = simd::hsum(gv) / simd::hsum(ties);
    let dp = gv - ties * f32x8::splat(share);
    let d = simd::hsum(dp * pv);
    store(load(da) + pv * (dp - f32x8::splat(d)), da);
}

/// dalpha += the Max-W backward of `g` (dL/dw) given the forward's `p`.
pub fn backward(p: &[f32], g: &[f32], cols: usize, dalpha: &mut [f32]) {
    if cols != LANES {
        return reference::backward(p, g, cols, dalpha);
    }
    let chunk = CHUNK_ROWS * LANES;
    crate::par::chunks(dalpha, chunk, 16 * p.len(), |ci, da| {
        let (p, g) = (&p[ci * chunk..][..da.len()], &g[ci * chunk..][..da.len()]);
        let blocks = da.len() / (LANES * LANES) * LANES * LANES;
        for i in (0..blocks).step_by(LANES * LANES) {
            backward_block(&p[i..], &g[i..], &mut da[i..]);
        }
        for i in (blocks..da.len()).step_by(LANES) {
            backward_row(&p[i..], &g[i..], &mut da[i..]);
        }
    });
}

pub mod reference {
    pub fn forward(alpha: &[f32], cols: usize, p: &mut [f32], w: &mut [f32]) {
        crate::softmax::softmax_rows(alpha, cols, p);
        for (pr, wr) in p.chunks(cols).zip(w.chunks_mut(cols)) {
            let m = pr.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            for (wv, pv) in wr.iter_mut().zip(pr) {
                *wv = 1.0 - m + pv;
            }
        }
    }

    pub fn backward(p: &[f32], g: &[f32], cols: usize, dalpha: &mut [f32]) {
        for ((pr, gr), dr) in p
            .chunks(cols)
            .zip(g.chunks(cols))
            .zip(dalpha.chunks_mut(cols))
        {
            let m = pr.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let ties = pr.iter().filter(|&&v| v == m).count() as f32;
            let share = gr.iter().sum::<f32>() / ties;
            let dp: Vec<f32> = pr
                .iter()
                .zip(gr)
                .map(|(&pv, &gv)| if pv == m { gv - share } else { gv })
                .collect();
            let d: f32 = dp.iter().zip(pr).map(|(a, b)| a * b).sum();
            for k in 0..cols {
                dr[k] += pr[k] * (dp[k] - d);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, vec_f32};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn simd_matches_reference(
            (a, g, tie) in prop_oneof![1usize..40, Just(CHUNK_ROWS + 13)].prop_flat_map(|r| (vec_f32(r * 8), vec_f32(r * 8), any::<bool>()))
        ) {
            // Rounded alphas make tied maxima common.
            let a: Vec<f32> = if tie { a.iter().map(|v| v.round()).collect() } else { a };
            let (mut p, mut w, mut pr, mut wr) = (vec![0.0; a.len()], vec![0.0; a.len()], vec![0.0; a.len()], vec![0.0; a.len()]);
            forward(&a, 8, &mut p, &mut w);
            reference::forward(&a, 8, &mut pr, &mut wr);
            assert_close(&p, &pr, 1e-6);
            assert_close(&w, &wr, 1e-6);
            for row in w.chunks(8) {
                prop_assert_eq!(row.iter().fold(f32::MIN, |m, &v| m.max(v)), 1.0);
            }
            // Same p for both backwards, so tie detection agrees.
            let (mut da, mut dar) = (g.clone(), g.clone());
            backward(&p, &g, 8, &mut da);
            reference::backward(&p, &g, 8, &mut dar);
            assert_close(&da, &dar, 1e-5);
        }
    }

    /// The transposed 8-row blocks and the one-row path give identical bits (ties included).
    #[test]
    fn blocks_and_rows_agree_bitwise() {
        let a: Vec<f32> = (0..64)
            .map(|i| ((i * 37) % 11) as f32 * 0.3 - 1.0)
            .collect();
        let g: Vec<f32> = (0..64).map(|i| ((i * 13) % 7) as f32 * 0.2 - 0.5).collect();
        let (mut pb, mut wb, mut pr, mut wr) =
            (vec![0.0; 64], vec![0.0; 64], vec![0.0; 64], vec![0.0; 64]);
        forward_block(&a, &mut pb, &mut wb);
        for i in (0..64).step_by(8) {
            forward_row(&a[i..], &mut pr[i..], &mut wr[i..]);
        }
        assert_eq!((&pb, &wb), (&pr, &wr));
        let (mut db, mut dr) = (vec![0.5; 64], vec![0.5; 64]);
        backward_block(&pb, &g, &mut db);
        for i in (0..64).step_by(8) {
            backward_row(&pb[i..], &g[i..], &mut dr[i..]);
        }
        assert_eq!(db, dr);
    }

    #[test]
    fn ties_split_the_max_term_evenly() {
        // Two tied maxima: d/dp = g - sum(g)/2 on each.
        let p = [0.4, 0.4, 0.2];
        let g = [1.0, 0.0, 0.0];
        let mut da = [0.0; 3];
        reference::backward(&p, &g, 3, &mut da);
        let dp = [0.5f32, -0.5, 0.0];
        let d: f32 = dp.iter().zip(&p).map(|(a, b)| a * b).sum();
        let want: Vec<f32> = (0..3).map(|k| p[k] * (dp[k] - d)).collect();
        assert_close(&da, &want, 1e-7);
    }
}
