//! Row softmax and the fused softmax cross-entropy loss.
use crate::check;
use autograd::{Backward, GradSlots, Result, Tape, Tensor, Var};
use kernels::softmax as ks;

/// (rows, cols) of a rank-2 tensor, or (1, len) of a rank-1 one.
pub(crate) fn rows_cols(tape: &Tape, x: Var, op: &'static str) -> Result<(usize, usize)> {
    let d = tape.value(x).dims();
    match *d {
        [c] => Ok((1, c)),
        [r, c] => Ok((r, c)),
        _ => Err(autograd::Error::BadShape {
            op,
            shape: d.to_vec(),
            why: "expected [rows, cols] or [cols]".into(),
        }),
    }
}

struct SoftmaxBack(usize);
impl Backward for SoftmaxBack {
    /// dx = p * (dy - <dy, p>) per row.
    fn backward(&self, _: &[&Tensor], p: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        if let Some(dx) = grads[0].as_mut() {
            ks::softmax_rows_backward(p.data(), g.data(), self.0, dx.data_mut());
        }
    }
}

/// Softmax of every row of x (`[rows, cols]` or `[cols]`).
pub fn softmax(tape: &mut Tape, x: Var) -> Result<Var> {
    let (_, cols) = rows_cols(tape, x, "softmax")?;
    let mut y = tape.buffer(tape.value(x).shape().clone());
    ks::softmax_rows(tape.value(x).data(), cols, y.data_mut());
    Ok(tape.push("softmax", y, &[x], SoftmaxBack(cols)))
}

struct CrossEntropyBack {
    probs: Vec<f32>,
    labels: Vec<u32>,
    cols: usize,
}
impl Backward for CrossEntropyBack {
    /// dlogits = (softmax(logits) - onehot(label)) / N.
    fn backward(&self, _: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        if let Some(dx) = grads[0].as_mut() {
            ks::cross_entropy_backward(
                &self.probs,
                self.cols,
                &self.labels,
                g.data()[0],
                dx.data_mut(),
            );
        }
    }
}

/// Mean cross-entropy of logits [N, K] against class labels (each < K): a one-element loss.
pub fn cross_entropy(tape: &mut Tape, logits: Var, labels: &[u32]) -> Result<Var> {
    const OP: &str = "cross_entropy";
    let [n, k] = tape.value(logits).shape().rows_cols(OP)?;
    check::arg(labels.len() == n, OP, || {
        format!("{} labels for {n} rows of logits", labels.len())
    })?;
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= k) {
        return Err(autograd::Error::BadArgument {
            op: OP,
            why: format!("label {l} at position {i} is out of range for {k} classes"),
        });
    }
    let mut probs = vec![0.0; n * k];
    let loss = ks::cross_entropy(tape.value(logits).data(), k, labels, &mut probs);
    Ok(tape.push(
        OP,
        Tensor::scalar(loss),
        &[logits],
        CrossEntropyBack {
            probs,
            labels: labels.to_vec(),
            cols: k,
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
        fn softmax_and_cross_entropy_gradients(
            (x, labels) in (1usize..5, 2usize..10).prop_flat_map(|(n, k)| (tensor(vec![n, k]), proptest::collection::vec(0u32..k as u32, n)))
        ) {
            check(|t, v| softmax(t, v[0]), std::slice::from_ref(&x), 21);
            check(|t, v| { let s = crate::scale(t, v[0], 3.0)?; cross_entropy(t, s, &labels) }, &[x], 22);
        }
    }

    #[test]
    fn out_of_range_label_is_an_error() {
        let mut t = Tape::new();
        let x = t.leaf(Tensor::zeros([2, 3]), true);
        let e = cross_entropy(&mut t, x, &[0, 3]).unwrap_err();
        assert!(e.to_string().contains("label 3 at position 1"), "{e}");
        assert!(cross_entropy(&mut t, x, &[0]).is_err());
    }

    #[test]
    fn cross_entropy_of_uniform_logits_is_ln_k() {
        let mut t = Tape::new();
        let x = t.leaf(Tensor::zeros([4, 10]), true);
        let l = cross_entropy(&mut t, x, &[0, 1, 2, 9]).unwrap();
        assert!((t.value(l).item().unwrap() - 10f32.ln()).abs() < 1e-6);
    }
}
