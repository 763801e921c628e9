//! Fully connected layer.
use crate::check;
use autograd::{Backward, GradSlots, Result, Tape, Tensor, Var};
use kernels::linear as kl;

struct LinearBack(usize, usize, usize);
impl Backward for LinearBack {
    /// dx = dy W, dW = dy^T x, db = sum over rows of dy.
    fn backward(&self, inputs: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        let (n, di, dout) = (self.0, self.1, self.2);
        let [dx, dw, db @ ..] = &mut grads[..] else {
            return;
        };
        let db = db
            .first_mut()
            .and_then(|s| s.as_mut())
            .map(|t| t.data_mut());
        kl::backward(
            n,
            di,
            dout,
            inputs[0].data(),
            inputs[1].data(),
            g.data(),
            dx.as_mut().map(|t| t.data_mut()),
            dw.as_mut().map(|t| t.data_mut()),
            db,
        );
    }

    /// An [n, di] x [di, dout] product forward, two of them backward (dx and dW).
    fn cost(&self, inputs: &[&Tensor], y: &Tensor) -> autograd::Cost {
        let (n, di, dout) = (self.0 as f64, self.1 as f64, self.2 as f64);
        let (x, w) = (inputs[0].numel() as f64, inputs[1].numel() as f64);
        let y = y.numel() as f64;
        autograd::Cost {
            forward: autograd::Work::new(2.0 * n * di * dout, x + w + y),
            backward: autograd::Work::new(4.0 * n * di * dout, y + x + w + 2.0 * (x + w)),
        }
    }
}

/// y `[N, out]` = x `[N, in]` W^T + b, with W `[out, in]` and optional b `[out]`.
pub fn linear(tape: &mut Tape, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
    const OP: &str = "linear";
    let [n, di] = tape.value(x).shape().rows_cols(OP)?;
    let [dout, wi] = tape.value(w).shape().rows_cols(OP)?;
    check::arg(wi == di, OP, || {
        format!("weight expects {wi} inputs, x has {di}")
    })?;
    if let Some(b) = b {
        check::shape_is(tape, b, &[dout], OP)?;
    }
    let mut y = tape.buffer([n, dout]);
    kl::forward(
        n,
        di,
        dout,
        tape.value(x).data(),
        tape.value(w).data(),
        b.map(|b| tape.value(b).data()),
        y.data_mut(),
    );
    let inputs: Vec<Var> = [Some(x), Some(w), b].into_iter().flatten().collect();
    Ok(tape.push(OP, y, &inputs, LinearBack(n, di, dout)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check, tensor};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn linear_gradient((x, w, b) in (1usize..4, 1usize..6, 1usize..6).prop_flat_map(|(n, i, o)| (tensor(vec![n, i]), tensor(vec![o, i]), tensor(vec![o])))) {
            check(|t, v| linear(t, v[0], v[1], Some(v[2])), &[x.clone(), w.clone(), b], 14);
            check(|t, v| linear(t, v[0], v[1], None), &[x, w], 15);
        }
    }

    #[test]
    fn mismatched_weight_is_an_error() {
        let mut t = Tape::new();
        let x = t.leaf(Tensor::zeros([2, 3]), true);
        let w = t.leaf(Tensor::zeros([4, 5]), true);
        assert!(linear(&mut t, x, w, None).is_err());
    }
}
