//! Max-W mixture weights (sharpDARTS), one alpha row per edge:
//! p = softmax(a), w_k = 1 - max_j p_j + p_k, so the strongest op weighs exactly 1.
//!
//! The max is not detached. Backward, for g = dL/dw: dL/dp = g - e_argmax * sum(g), the second term
//! split evenly among tied maxima; then the softmax backward dL/da = p * (dL/dp - <dL/dp, p>).
//! Rows of exactly 8 (the DARTS primitive count) take the f32x8 path: one vector per row, forward and
//! backward. Other row lengths use the scalar definition.
use crate::simd::{self, f32x8, load, store, LANES};

/// p = softmax rows of `alpha` ([rows, cols]), w = 1 - max(p) + p per row.
pub fn forward(alpha: &[f32], cols: usize, p: &mut [f32], w: &mut [f32]) {
    if cols != LANES {
        return reference::forward(alpha, cols, p, w);
    }
    for ((a, p), w) in alpha
        .chunks(LANES)
        .zip(p.chunks_mut(LANES))
        .zip(w.chunks_mut(LANES))
    {
        crate::softmax::softmax_row(a, p);
        let pv = load(p);
        store(f32x8::ONE - f32x8::splat(simd::hmax(pv)) + pv, w);
    }
}

/// dalpha += the Max-W backward of `g` (dL/dw) given the forward's `p`.
pub fn backward(p: &[f32], g: &[f32], cols: usize, dalpha: &mut [f32]) {
    if cols != LANES {
        return reference::backward(p, g, cols, dalpha);
    }
    for ((p, g), da) in p
        .chunks(LANES)
        .zip(g.chunks(LANES))
        .zip(dalpha.chunks_mut(LANES))
    {
        let (pv, gv) = (load(p), load(g));
        let mv = f32x8::splat(simd::hmax(pv));
        let tied = pv.simd_eq(mv);
        let ties = tied.select(f32x8::ONE, f32x8::ZERO);
        let share = simd::hsum(gv) / simd::hsum(ties);
        let dp = gv - ties * f32x8::splat(share);
        let d = simd::hsum(dp * pv);
        store(load(da) + pv * (dp - f32x8::splat(d)), da);
    }
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
            (a, g, tie) in (1usize..16).prop_flat_map(|r| (vec_f32(r * 8), vec_f32(r * 8), any::<bool>()))
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
