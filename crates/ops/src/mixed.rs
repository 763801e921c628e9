//! The mixed op's weighted sum: out = sum_k w[row, k] * x_k, with the weights themselves on the tape.
use crate::check;
use autograd::{Backward, Error, GradSlots, Result, Tape, Tensor, Var};
use kernels::elementwise as ke;

struct WeightedSumBack {
    row_offset: usize,
    columns: Vec<usize>,
}
impl Backward for WeightedSumBack {
    /// dx_k = w[row, k] * dy; dw[row, k] = <dy, x_k>. Inputs: [weights, x_0, x_1, ...].
    fn backward(&self, inputs: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        let dots = grads.wants(0).then(|| {
            let xs: Vec<&[f32]> = inputs[1..].iter().map(|t| t.data()).collect();
            let mut partial = grads.scratch(ke::weighted_sum_dots_len(g.numel(), xs.len()));
            let mut dots = vec![0.0; xs.len()];
            ke::weighted_sum_dots(g.data(), &xs, &mut partial, &mut dots);
            grads.recycle(partial);
            dots
        });
        let w = inputs[0].data();
        let mut outs = grads.outs().into_iter();
        if let (Some(dw), Some(dots)) = (outs.next().flatten(), dots) {
            let dw = dw.accumulate();
            for (&k, d) in self.columns.iter().zip(dots) {
                dw[self.row_offset + k] += d;
            }
        }
        // Each x_k's gradient is written whole into a fresh slot, added into an accumulated one.
        for (&k, dx) in self.columns.iter().zip(outs) {
            if let Some(dx) = dx {
                ke::axpy_to(w[self.row_offset + k], g.data(), dx.data, dx.add);
            }
        }
    }

    /// K terms: forward K multiply-adds per output value; backward K dots and K axpys.
    fn cost(&self, _: &[&Tensor], y: &Tensor) -> autograd::Cost {
        let (k, n) = (self.columns.len() as f64, y.numel() as f64);
        autograd::Cost {
            forward: autograd::Work::new(2.0 * k * n, (k + 1.0) * n),
            backward: autograd::Work::new(4.0 * k * n, n + 3.0 * k * n),
        }
    }
}

/// sum over `terms` (k, x_k) of `weights[row, k] * x_k`. `weights` is `[rows, K]` (or `[K]` with row 0);
/// all x_k share one shape. Terms may leave columns out: DARTS's `none` op contributes exactly zero,
/// so it is simply not passed (its weight then gets zero gradient, as it would from 0 * w).
pub fn weighted_sum(
    tape: &mut Tape,
    weights: Var,
    row: usize,
    terms: &[(usize, Var)],
) -> Result<Var> {
    const OP: &str = "weighted_sum";
    let (rows, cols) = crate::softmax::rows_cols(tape, weights, OP)?;
    check::arg(row < rows, OP, || {
        format!("row {row} out of range for {rows} rows of weights")
    })?;
    check::arg(!terms.is_empty(), OP, || "needs at least one term".into())?;
    for &(k, x) in terms {
        check::arg(k < cols, OP, || {
            format!("column {k} out of range for {cols} weights per row")
        })?;
        check::same_shape(tape, terms[0].1, x, OP)?;
    }
    if terms
        .iter()
        .enumerate()
        .any(|(i, (k, _))| terms[..i].iter().any(|(k2, _)| k2 == k))
    {
        return Err(Error::BadArgument {
            op: OP,
            why: "a column appears twice".into(),
        });
    }
    let w = tape.value(weights).data();
    let ws: Vec<f32> = terms.iter().map(|&(k, _)| w[row * cols + k]).collect();
    let mut y = tape.buffer(tape.value(terms[0].1).shape().clone());
    let parts: Vec<&[f32]> = terms.iter().map(|&(_, x)| tape.value(x).data()).collect();
    ke::weighted_sum(&ws, &parts, y.data_mut());
    let inputs: Vec<Var> = std::iter::once(weights)
        .chain(terms.iter().map(|&(_, x)| x))
        .collect();
    Ok(tape.push(
        OP,
        y,
        &inputs,
        WeightedSumBack {
            row_offset: row * cols,
            columns: terms.iter().map(|&(k, _)| k).collect(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check, tensor};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn weighted_sum_gradient((w, a, b, c) in (1usize..3, 1usize..4).prop_flat_map(|(n, h)|
            (tensor(vec![3, 8]), tensor(vec![n, 2, h, h]), tensor(vec![n, 2, h, h]), tensor(vec![n, 2, h, h])))) {
            // Row 1, columns 1, 4 and 7 (column 0, `none`, left out).
            check(|t, v| weighted_sum(t, v[0], 1, &[(1, v[1]), (4, v[2]), (7, v[3])]), &[w, a, b, c], 25);
        }
    }

    #[test]
    fn composes_with_maxw_and_checks_arguments() {
        let mut t = Tape::new();
        let alpha = t.leaf(Tensor::zeros([2, 8]), true);
        let x = t.leaf(Tensor::full([1, 1, 2, 2], 1.0), true);
        let w = crate::maxw(&mut t, alpha).unwrap();
        let y = weighted_sum(&mut t, w, 1, &[(3, x)]).unwrap();
        assert_eq!(t.value(y).data(), &[1.0; 4]); // all alphas equal: every Max-W weight is 1
                                                  // Unequal alphas: row 1 = [0, 1, 0, ...]. p = softmax, Max-W w_k = 1 - max(p) + p_k, so
                                                  // w_1 = 1 and every other w_k = 1 - (e - 1) / (e + 7); y = w_1 * a + w_5 * b.
        let mut t = Tape::new();
        let mut rows = vec![0.0f32; 16];
        rows[8 + 1] = 1.0;
        let alpha = t.leaf(Tensor::from_vec([2, 8], rows).unwrap(), true);
        let a = t.leaf(
            Tensor::from_vec([1, 1, 1, 2], vec![2.0, -1.0]).unwrap(),
            true,
        );
        let b = t.leaf(
            Tensor::from_vec([1, 1, 1, 2], vec![0.5, 3.0]).unwrap(),
            true,
        );
        let w = crate::maxw(&mut t, alpha).unwrap();
        let y = weighted_sum(&mut t, w, 1, &[(1, a), (5, b)]).unwrap();
        let e = std::f64::consts::E;
        let w5 = 1.0 - (e - 1.0) / (e + 7.0);
        let want = [2.0 + w5 * 0.5, -1.0 + w5 * 3.0];
        for (got, want) in t.value(y).data().iter().zip(want) {
            assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert!(weighted_sum(&mut t, w, 2, &[(3, x)]).is_err());
        assert!(weighted_sum(&mut t, w, 0, &[(8, x)]).is_err());
        assert!(weighted_sum(&mut t, w, 0, &[(1, x), (1, x)]).is_err());
    }
}
