//! Row softmax and the fused log-softmax + cross-entropy loss, over rows of `cols` values.
//!
//! softmax(x)_k = exp(x_k - max x) / sum_j exp(x_j - max x). The fast kernels use
//! [`simd::exp_neg`] (a polynomial within a few ulp of libm's) on 8-wide blocks and libm on the tail.
use crate::simd::{self, f32x8, load, store, LANES};

/// One row: out = softmax(x). SIMD body + scalar tail; shared by [`softmax_rows`] and Max-W.
pub(crate) fn softmax_row(x: &[f32], out: &mut [f32]) {
    let n8 = x.len() / LANES * LANES;
    let mut mv = f32x8::splat(f32::NEG_INFINITY);
    for i in (0..n8).step_by(LANES) {
        mv = mv.max(load(&x[i..]));
    }
    let m = x[n8..].iter().fold(simd::hmax(mv), |a, &b| a.max(b));
    let mut acc = f32x8::ZERO;
    for i in (0..n8).step_by(LANES) {
        let e = simd::exp_neg(load(&x[i..]) - f32x8::splat(m));
        acc += e;
        store(e, &mut out[i..]);
    }
    let mut s = simd::hsum(acc);
    for i in n8..x.len() {
        out[i] = (x[i] - m).exp();
        s += out[i];
    }
    let inv = 1.0 / s;
    for v in out.iter_mut() {
        *v *= inv;
    }
}

/// y = softmax of each row of x ([rows, cols]).
pub fn softmax_rows(x: &[f32], cols: usize, y: &mut [f32]) {
    for (xr, yr) in x.chunks(cols).zip(y.chunks_mut(cols)) {
        softmax_row(xr, yr);
    }
}

/// dx += softmax backward: dx_k += p_k * (dp_k - <dp, p>) per row.
pub fn softmax_rows_backward(p: &[f32], dp: &[f32], cols: usize, dx: &mut [f32]) {
    for ((pr, dpr), dxr) in p.chunks(cols).zip(dp.chunks(cols)).zip(dx.chunks_mut(cols)) {
        let d = simd::dot(dpr, pr);
        for k in 0..cols {
            dxr[k] += pr[k] * (dpr[k] - d);
        }
    }
}

/// Mean cross-entropy of `logits` ([rows, cols]) against `labels` (each < cols); writes the softmax
/// probabilities into `probs` for the backward. Row losses are summed in f64, in row order.
pub fn cross_entropy(logits: &[f32], cols: usize, labels: &[u32], probs: &mut [f32]) -> f32 {
    let rows = labels.len();
    let mut total = 0.0f64;
    for (r, (xr, pr)) in logits.chunks(cols).zip(probs.chunks_mut(cols)).enumerate() {
        softmax_row(xr, pr);
        // -log p_y computed as logsumexp - x_y for accuracy when p_y underflows.
        let m = xr.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let lse = m + xr.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
        total += (lse - xr[labels[r] as usize]) as f64;
    }
    (total / rows as f64) as f32
}

/// dlogits += g / rows * (p - onehot(label)).
pub fn cross_entropy_backward(
    probs: &[f32],
    cols: usize,
    labels: &[u32],
    g: f32,
    dlogits: &mut [f32],
) {
    let s = g / labels.len() as f32;
    for (r, (pr, dr)) in probs.chunks(cols).zip(dlogits.chunks_mut(cols)).enumerate() {
        for k in 0..cols {
            let onehot = if k == labels[r] as usize { 1.0 } else { 0.0 };
            dr[k] += s * (pr[k] - onehot);
        }
    }
}

pub mod reference {
    /// softmax in f64.
    pub fn softmax_rows(x: &[f32], cols: usize, y: &mut [f32]) {
        for (xr, yr) in x.chunks(cols).zip(y.chunks_mut(cols)) {
            let m = xr.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
            let s: f64 = xr.iter().map(|&v| (v as f64 - m).exp()).sum();
            for (o, &v) in yr.iter_mut().zip(xr) {
                *o = ((v as f64 - m).exp() / s) as f32;
            }
        }
    }

    pub fn cross_entropy(logits: &[f32], cols: usize, labels: &[u32], probs: &mut [f32]) -> f32 {
        softmax_rows(logits, cols, probs);
        let loss: f64 = labels
            .iter()
            .enumerate()
            .map(|(r, &l)| -(probs[r * cols + l as usize] as f64).ln())
            .sum();
        (loss / labels.len() as f64) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, vec_f32};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn simd_matches_reference(
            (cols, x, labels) in (1usize..6, 1usize..30).prop_flat_map(|(r, c)|
                (Just(c), vec_f32(r * c), proptest::collection::vec(0u32..c as u32, r)))
        ) {
            let x: Vec<f32> = x.iter().map(|v| v * 4.0).collect();
            let (mut y, mut yr) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            softmax_rows(&x, cols, &mut y);
            reference::softmax_rows(&x, cols, &mut yr);
            assert_close(&y, &yr, 1e-6);
            let l = cross_entropy(&x, cols, &labels, &mut y);
            let lr = reference::cross_entropy(&x, cols, &labels, &mut yr);
            assert_close(&[l], &[lr], 1e-5);
        }
    }
}
