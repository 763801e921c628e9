//! Scalar reductions: the sum of a tensor, and its inner product with a constant (the probe loss of
//! the finite-difference tests; also a general weighted loss).
use autograd::{Backward, GradSlots, Result, Tape, Tensor, Var};

struct SumBack;
impl Backward for SumBack {
    /// d sum / dx_i = 1.
    fn backward(&self, _: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        if let Some(dx) = grads[0].as_mut() {
            let gv = g.data()[0];
            dx.data_mut().iter_mut().for_each(|d| *d += gv);
        }
    }
}

/// The sum of all elements, as a one-element tensor (summed in a fixed order).
pub fn sum(tape: &mut Tape, x: Var) -> Result<Var> {
    let s = kernels::simd::sum(tape.value(x).data());
    Ok(tape.push("sum", Tensor::scalar(s), &[x], SumBack))
}

struct DotConstBack(Tensor);
impl Backward for DotConstBack {
    /// d <x, r> / dx = r.
    fn backward(&self, _: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        if let Some(dx) = grads[0].as_mut() {
            kernels::elementwise::axpy(g.data()[0], self.0.data(), dx.data_mut());
        }
    }
}

/// <x, r> = sum_i x_i r_i for a constant `r` of x's shape.
pub fn dot_const(tape: &mut Tape, x: Var, r: &Tensor) -> Result<Var> {
    r.shape().expect_eq(tape.value(x).shape(), "dot_const")?;
    let s = kernels::simd::dot(tape.value(x).data(), r.data());
    Ok(tape.push(
        "dot_const",
        Tensor::scalar(s),
        &[x],
        DotConstBack(r.clone()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::tensor;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn sum_gradient(x in tensor(vec![3, 4])) {
            crate::testutil::check(|t, v| sum(t, v[0]), &[x], 1);
        }
    }

    #[test]
    fn dot_const_rejects_wrong_shape() {
        let mut t = Tape::new();
        let x = t.leaf(Tensor::zeros([2, 3]), true);
        assert!(dot_const(&mut t, x, &Tensor::zeros([3, 2])).is_err());
    }
}
