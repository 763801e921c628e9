//! Finite-difference test helpers: random tensors, kink avoidance, and the probe loss.
use autograd::{gradcheck, GradcheckOptions, Result, Tape, Tensor, Var};
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

/// Gradchecks `loss = <f(inputs), r>` for a fixed random cotangent `r` (so the whole vector-Jacobian
/// product is tested), and panics with the report if it fails. Twice: once as it is, where `f`'s
/// ops write their inputs' gradients into fresh slots (poisoned by the gradcheck), and once with a
/// term `<x_i, r_i>` per input recorded after `f`, whose backward runs first, so that `f`'s ops add
/// into gradients already there.
pub fn check<F>(f: F, inputs: &[Tensor], seed: u64)
where
    F: Fn(&mut Tape, &[Var]) -> Result<Var>,
{
    for accumulate in [false, true] {
        let probe = |tape: &mut Tape, vars: &[Var]| -> Result<Var> {
            let y = f(tape, vars)?;
            let mut rng = tensor::Rng::new(seed);
            let r = Tensor::uniform(tape.value(y).shape().clone(), -1.0, 1.0, &mut rng);
            let mut loss = crate::dot_const(tape, y, &r)?;
            if accumulate {
                for &x in vars {
                    let r = Tensor::uniform(tape.value(x).shape().clone(), -1.0, 1.0, &mut rng);
                    let term = crate::dot_const(tape, x, &r)?;
                    loss = crate::add(tape, loss, term)?;
                }
            }
            Ok(loss)
        };
        let report = gradcheck(probe, inputs, GradcheckOptions::default()).unwrap();
        assert!(report.passed, "{report} (accumulating: {accumulate})");
    }
}
