//! Finite-difference test helpers: random tensors, kink avoidance, and the probe loss.
use autograd::{gradcheck_vjp, GradcheckOptions, Result, Tape, Tensor, Var};
use proptest::prelude::*;

/// A tensor of `dims` with values in [-1, 1].
pub fn tensor(dims: Vec<usize>) -> impl Strategy<Value = Tensor> {
    let n: usize = dims.iter().product();
    proptest::collection::vec(-1.0f32..1.0, n)
        .prop_map(move |v| Tensor::from_vec(dims.clone(), v).unwrap())
}

/// Moves values at least `margin` away from 0 (so a ReLU kink is never within the FD step).
pub fn away_from_zero(t: Tensor, margin: f32) -> Tensor {
    let v = t
        .data()
        .iter()
        .map(|&x| if x >= 0.0 { x + margin } else { x - margin })
        .collect();
    Tensor::from_vec(t.shape().clone(), v).unwrap()
}

/// Per channel of an NCHW tensor: its variance (biased, as batch norm's) and largest |value|.
pub fn channel_var_and_max(t: &Tensor) -> Vec<(f64, f64)> {
    let [n, c, h, w] = t.dims()[..] else {
        panic!("channel_var_and_max takes NCHW, got {:?}", t.dims())
    };
    (0..c)
        .map(|ci| {
            let v: Vec<f64> = (0..n)
                .flat_map(|ni| t.data()[(ni * c + ci) * h * w..][..h * w].iter())
                .map(|&v| f64::from(v))
                .collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
            (var, v.iter().fold(0.0f64, |m, x| m.max(x.abs())))
        })
        .collect()
}

/// The smallest per-channel standard deviation. Training-mode batch norm's derivatives grow like
/// 1 / std^k, so a central difference with step h is only accurate while h / std is small: tests of
/// training-mode BN skip inputs whose channels are nearly constant (h = 1e-2 against a std of about
/// 0.07 gave a 1 % finite-difference error, in 1 case of about 250).
pub fn min_channel_std(t: &Tensor) -> f32 {
    let min_var = channel_var_and_max(t)
        .iter()
        .fold(f64::INFINITY, |m, &(v, _)| m.min(v));
    min_var.sqrt() as f32
}

/// Distinct values spaced `gap` apart in a random order (seeded by `t`), so every window max is unique
/// by more than the FD step.
pub fn distinct(t: Tensor, gap: f32) -> Tensor {
    let mut idx: Vec<usize> = (0..t.numel()).collect();
    idx.sort_by(|&a, &b| t.data()[a].total_cmp(&t.data()[b]));
    let mut v = vec![0.0; t.numel()];
    for (rank, &i) in idx.iter().enumerate() {
        v[i] = (rank as f32 - t.numel() as f32 / 2.0) * gap;
    }
    Tensor::from_vec(t.shape().clone(), v).unwrap()
}

/// Gradchecks f's vector-Jacobian product for a fixed random cotangent `r` (so the whole product is
/// tested; [`gradcheck_vjp`] sums <y, r>'s differences in f64, free of a loss's f32 rounding), with
/// f's ops writing their inputs' gradients into fresh slots (poisoned by the gradcheck). Then, with
/// a term `<x_i, r_i>` per input recorded after `f`, whose backward runs first, checks that f's ops
/// add into gradients already there: each input's gradient must be r_i plus the one just checked.
/// Panics with what failed.
pub fn check<F>(f: F, inputs: &[Tensor], seed: u64)
where
    F: Fn(&mut Tape, &[Var]) -> Result<Var>,
{
    let mut rng = tensor::Rng::new(seed);
    let leaves = |tape: &mut Tape| -> Vec<Var> {
        tape.set_poison_fresh_grads(true);
        inputs.iter().map(|x| tape.leaf(x.clone(), true)).collect()
    };
    let mut fresh = Tape::new();
    let vars = leaves(&mut fresh);
    let y = f(&mut fresh, &vars).unwrap();
    let r = Tensor::uniform(fresh.value(y).shape().clone(), -1.0, 1.0, &mut rng);
    let report = gradcheck_vjp(&f, inputs, &r, GradcheckOptions::default()).unwrap();
    assert!(report.passed, "{report} (fresh gradient slots)");
    fresh.backward_with(y, r.clone()).unwrap();

    let mut acc = Tape::new();
    let acc_vars = leaves(&mut acc);
    let y = f(&mut acc, &acc_vars).unwrap();
    let mut loss = crate::dot_const(&mut acc, y, &r).unwrap();
    let mut terms = Vec::new();
    for &x in &acc_vars {
        let r = Tensor::uniform(acc.value(x).shape().clone(), -1.0, 1.0, &mut rng);
        let term = crate::dot_const(&mut acc, x, &r).unwrap();
        loss = crate::add(&mut acc, loss, term).unwrap();
        terms.push(r);
    }
    acc.backward(loss).unwrap();
    for (k, ((&v, &a), r)) in vars.iter().zip(&acc_vars).zip(&terms).enumerate() {
        let (g, a) = (fresh.grad(v).unwrap().data(), acc.grad(a).unwrap().data());
        for (i, ((&g, &a), &r)) in g.iter().zip(a).zip(r.data()).enumerate() {
            let want = r + g;
            assert!(
                (a - want).abs() <= 1e-3 + 3e-3 * want.abs(),
                "accumulating gradient slots: input {k} element {i} is {a}, want {r} already \
                 there + {g} = {want}"
            );
        }
    }
}
