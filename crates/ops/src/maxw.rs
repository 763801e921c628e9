//! Max-W mixture weights (sharpDARTS): w = 1 - max(softmax(a)) + softmax(a) per row, max not detached.
use crate::softmax::rows_cols;
use autograd::{Backward, GradSlots, Result, Tape, Tensor, Var};
use kernels::maxw as km;

struct MaxwBack(Vec<f32>, usize);
impl Backward for MaxwBack {
    /// dp = g - e_argmax * sum(g) (split evenly over tied maxima), then da = p * (dp - <dp, p>).
    fn backward(&self, _: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        if let Some(da) = grads[0].as_mut() {
            km::backward(&self.0, g.data(), self.1, da.data_mut());
        }
    }
}

/// Max-W weights of every row of alpha (`[rows, cols]` or `[cols]`); the strongest entry of a row gets
/// exactly 1.
pub fn maxw(tape: &mut Tape, alpha: Var) -> Result<Var> {
    let (_, cols) = rows_cols(tape, alpha, "maxw")?;
    let mut w = tape.buffer(tape.value(alpha).shape().clone());
    let mut p = vec![0.0; w.numel()];
    km::forward(tape.value(alpha).data(), cols, &mut p, w.data_mut());
    Ok(tape.push("maxw", w, &[alpha], MaxwBack(p, cols)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check, distinct, tensor};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn maxw_gradient(a in (1usize..5, prop_oneof![Just(8usize), 2usize..12]).prop_flat_map(|(r, c)| tensor(vec![r, c]))) {
            // Distinct alphas 0.2 apart keep each row's argmax fixed within the FD step.
            check(|t, v| maxw(t, v[0]), &[distinct(a, 0.2)], 23);
        }
    }

    /// At a tie the central difference averages the two one-sided derivatives, which is exactly the
    /// even split of the max term among tied entries.
    #[test]
    fn tied_maxima_match_central_differences() {
        for cols in [3usize, 8] {
            let mut a: Vec<f32> = (0..cols).map(|i| -0.3 * i as f32).collect();
            a[cols - 1] = 0.0; // entries 0 and cols-1 tie for the max
            let x = Tensor::from_vec([1, cols], a).unwrap();
            check(|t, v| maxw(t, v[0]), &[x], 24);
        }
    }

    #[test]
    fn strongest_weight_is_one() {
        let mut t = Tape::new();
        let a = t.leaf(
            Tensor::from_vec([2, 8], (0..16).map(|i| (i as f32 * 0.37).sin()).collect()).unwrap(),
            true,
        );
        let w = maxw(&mut t, a).unwrap();
        for row in t.value(w).data().chunks(8) {
            assert_eq!(row.iter().fold(f32::MIN, |m, &v| m.max(v)), 1.0);
        }
    }
}
