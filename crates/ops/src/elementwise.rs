//! Elementwise ops: relu, add, add_n, scale, axpy.
use crate::check;
use autograd::{Backward, GradSlots, PassThrough, Result, Tape, Tensor, Var};
use kernels::elementwise as k;
use std::any::TypeId;
use std::sync::Arc;

struct ReluBack;
impl Backward for ReluBack {
    /// dx = dy * [x > 0].
    fn backward(&self, inputs: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        if let Some(dx) = grads[0].as_mut() {
            k::relu_backward(inputs[0].data(), g.data(), dx.data_mut());
        }
    }
}

/// max(x, 0).
pub fn relu(tape: &mut Tape, x: Var) -> Result<Var> {
    let mut y = tape.buffer(tape.value(x).shape().clone());
    k::relu(tape.value(x).data(), y.data_mut());
    Ok(tape.push("relu", y, &[x], ReluBack))
}

/// Passes `scale_k * dy` to input k: dy itself, shared, where the scale is 1 and the input's
/// producer takes it so ([`PassThrough`]), else written.
struct LinearComboBack(Vec<f32>);
impl Backward for LinearComboBack {
    fn backward(&self, _: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        if let Some(shared) = grads.shared_grad_out() {
            for (i, &s) in self.0.iter().enumerate() {
                if s == 1.0 && grads.can_defer(i, TypeId::of::<PassThrough>()) {
                    grads.defer(i, Box::new(PassThrough(Arc::clone(&shared))));
                }
            }
        }
        for (dx, &s) in grads.outs().into_iter().zip(&self.0) {
            if let Some(dx) = dx {
                k::axpy_to(s, g.data(), dx.data, dx.add);
            }
        }
    }
}

/// a + b (same shapes).
pub fn add(tape: &mut Tape, a: Var, b: Var) -> Result<Var> {
    check::same_shape(tape, a, b, "add")?;
    let mut y = tape.buffer(tape.value(a).shape().clone());
    k::add(tape.value(a).data(), tape.value(b).data(), y.data_mut());
    Ok(tape.push("add", y, &[a, b], LinearComboBack(vec![1.0, 1.0])))
}

/// x_0 + x_1 + ... (same shapes, at least one), summed in order.
pub fn add_n(tape: &mut Tape, xs: &[Var]) -> Result<Var> {
    check::arg(!xs.is_empty(), "add_n", || {
        "needs at least one input".into()
    })?;
    for &x in &xs[1..] {
        check::same_shape(tape, xs[0], x, "add_n")?;
    }
    let mut y = tape.buffer(tape.value(xs[0]).shape().clone());
    let ones = vec![1.0; xs.len()];
    let parts: Vec<&[f32]> = xs.iter().map(|&x| tape.value(x).data()).collect();
    k::weighted_sum(&ones, &parts, y.data_mut());
    Ok(tape.push("add_n", y, xs, LinearComboBack(ones)))
}

/// s * x for a constant s.
pub fn scale(tape: &mut Tape, x: Var, s: f32) -> Result<Var> {
    let mut y = tape.buffer(tape.value(x).shape().clone());
    k::scale(s, tape.value(x).data(), y.data_mut());
    Ok(tape.push("scale", y, &[x], LinearComboBack(vec![s])))
}

/// a * x + y for a constant a (same shapes).
pub fn axpy(tape: &mut Tape, a: f32, x: Var, y: Var) -> Result<Var> {
    check::same_shape(tape, x, y, "axpy")?;
    let mut out = tape.buffer(tape.value(y).shape().clone());
    out.data_mut().copy_from_slice(tape.value(y).data());
    k::axpy(a, tape.value(x).data(), out.data_mut());
    Ok(tape.push("axpy", out, &[x, y], LinearComboBack(vec![a, 1.0])))
}

struct ScaleSamplesBack(Vec<f32>);
impl Backward for ScaleSamplesBack {
    /// dx[n] = f[n] * dy[n].
    fn backward(&self, _: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        if let Some(dx) = grads[0].as_mut() {
            let per = g.numel() / self.0.len();
            for ((d, gy), &f) in dx
                .data_mut()
                .chunks_mut(per)
                .zip(g.data().chunks(per))
                .zip(&self.0)
            {
                k::axpy(f, gy, d);
            }
        }
    }
}

/// `y[n] = factors[n] * x[n]` for each sample n of x `[N, ...]` (drop-path's mask / keep probability).
pub fn scale_samples(tape: &mut Tape, x: Var, factors: &[f32]) -> Result<Var> {
    let n = tape.value(x).dims().first().copied().unwrap_or(0);
    check::arg(factors.len() == n && n > 0, "scale_samples", || {
        format!("{} factors for {n} samples", factors.len())
    })?;
    let mut y = tape.buffer(tape.value(x).shape().clone());
    let per = y.numel() / n;
    for ((out, xs), &f) in y
        .data_mut()
        .chunks_mut(per)
        .zip(tape.value(x).data().chunks(per))
        .zip(factors)
    {
        k::scale(f, xs, out);
    }
    Ok(tape.push("scale_samples", y, &[x], ScaleSamplesBack(factors.to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{away_from_zero, check, tensor};
    use proptest::prelude::*;

    fn dims() -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(1usize..5, 1..4)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn relu_gradient(x in dims().prop_flat_map(tensor)) {
            check(|t, v| relu(t, v[0]), &[away_from_zero(x, 0.05)], 2);
        }

        #[test]
        fn add_scale_axpy_add_n_gradients((a, b, c) in dims().prop_flat_map(|d| (tensor(d.clone()), tensor(d.clone()), tensor(d))), s in -2.0f32..2.0) {
            check(|t, v| add(t, v[0], v[1]), &[a.clone(), b.clone()], 3);
            check(|t, v| scale(t, v[0], s), std::slice::from_ref(&a), 4);
            check(|t, v| axpy(t, s, v[0], v[1]), &[a.clone(), b.clone()], 5);
            check(add_n, &[a, b, c], 6);
        }

        /// Drop-path: each sample scaled by 0 (dropped) or 1/keep (kept); the gradient must carry
        /// the same mask.
        #[test]
        fn scale_samples_gradient_carries_the_drop_mask(
            x in (1usize..5, 1usize..4, 1usize..4).prop_flat_map(|(n, c, h)| tensor(vec![n, c, h, 2])),
            keep in 0.3f32..0.9,
            mask in proptest::collection::vec(any::<bool>(), 4),
        ) {
            let n = x.dims()[0];
            let factors: Vec<f32> = mask[..n].iter().map(|&k| if k { 1.0 / keep } else { 0.0 }).collect();
            check(|t, v| scale_samples(t, v[0], &factors), &[x], 7);
        }
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let mut t = Tape::new();
        let a = t.leaf(Tensor::zeros([2, 3]), true);
        let b = t.leaf(Tensor::zeros([3, 2]), true);
        assert!(add(&mut t, a, b).is_err());
        assert!(add_n(&mut t, &[]).is_err());
    }
}
