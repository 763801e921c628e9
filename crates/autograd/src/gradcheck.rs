//! Central-difference gradient checking for any function built on a tape.
use crate::{Result, Tape, Tensor, Var};

/// Tolerances of [`gradcheck`]. An element passes when |analytic - numeric| <= atol + rtol * |numeric|.
///
/// The defaults suit f32 functions of O(1) inputs: with step `eps` = 1e-2 the truncation error of a
/// smooth function is O(eps^2) ~ 1e-4 relative, and the f32 round-off of the outputs that a step
/// changes, divided by 2 eps, stays well below `atol` = 1e-3. That is tight enough to reject a
/// backward that is off by 1 % wherever the gradient exceeds ~0.15. A one-element loss that sums
/// many terms rounds them all into one f32 (a loss of 80 has ulps of 8e-6: 4e-4 once divided by
/// 2 eps); [`gradcheck_vjp`] takes the function's output before such a sum and forms the sum in
/// f64 from the differences of its elements, which keeps that round-off out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradcheckOptions {
    /// Finite-difference step: d ~ (f(x + eps) - f(x - eps)) / (2 eps).
    pub eps: f32,
    /// Absolute tolerance.
    pub atol: f32,
    /// Relative tolerance: an entry passes when |analytic - numeric| <= atol + rtol * |numeric|.
    pub rtol: f32,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            eps: 1e-2,
            atol: 1e-3,
            rtol: 3e-3,
        }
    }
}

/// The worst element found.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// Which input tensor, and which element of it.
    pub input: usize,
    /// Flat index of the input entry.
    pub index: usize,
    /// The tape's gradient at that entry.
    pub analytic: f32,
    /// The central difference at that entry.
    pub numeric: f32,
}

/// What [`gradcheck`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct GradcheckReport {
    /// Whether every checked entry was within tolerance.
    pub passed: bool,
    /// Elements compared.
    pub checked: usize,
    /// Largest |analytic - numeric|.
    pub max_abs_err: f32,
    /// The element with the largest error relative to its tolerance (None if nothing was checked).
    pub worst: Option<Mismatch>,
}

impl std::fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "gradcheck {}: {} elements, max abs error {:.3e}",
            if self.passed { "passed" } else { "FAILED" },
            self.checked,
            self.max_abs_err
        )?;
        if let Some(w) = &self.worst {
            write!(
                f,
                "; worst: input {} element {}: analytic {:.6e} vs numeric {:.6e}",
                w.input, w.index, w.analytic, w.numeric
            )?;
        }
        Ok(())
    }
}

/// Checks the tape gradients of `f` (which must return a one-element loss) with respect to every
/// `inputs` tensor against central differences (f(x + eps) - f(x - eps)) / 2 eps, element by element.
/// `f` receives a fresh tape and the inputs as leaves requiring grad, and must be deterministic.
pub fn gradcheck<F>(f: F, inputs: &[Tensor], opts: GradcheckOptions) -> Result<GradcheckReport>
where
    F: Fn(&mut Tape, &[Var]) -> Result<Var>,
{
    check(f, inputs, None, opts)
}

/// Checks the vector-Jacobian product of `f`'s output y (of any shape) with the cotangent `r` (y's
/// shape): the tape's dx = r^T dy/dx ([`Tape::backward_with`]) against, element by element,
/// sum_j r_j (y_j(x + eps) - y_j(x - eps)) / 2 eps, summed in f64. Outputs a step leaves unchanged
/// cancel exactly, so only the round-off of those it changes enters the difference. The same
/// test as [`gradcheck`] of the loss <y, r>, without that loss's f32 rounding.
pub fn gradcheck_vjp<F>(
    f: F,
    inputs: &[Tensor],
    r: &Tensor,
    opts: GradcheckOptions,
) -> Result<GradcheckReport>
where
    F: Fn(&mut Tape, &[Var]) -> Result<Var>,
{
    check(f, inputs, Some(r), opts)
}

/// [`gradcheck`] (`r` None: the output is a loss, its cotangent 1) and [`gradcheck_vjp`].
fn check<F>(
    f: F,
    inputs: &[Tensor],
    r: Option<&Tensor>,
    opts: GradcheckOptions,
) -> Result<GradcheckReport>
where
    F: Fn(&mut Tape, &[Var]) -> Result<Var>,
{
    let eval = |xs: &[Tensor], grad: bool| -> Result<(Tape, Vec<Var>, Var)> {
        let mut tape = Tape::new();
        tape.set_grad_enabled(grad);
        tape.set_poison_fresh_grads(true);
        let vars: Vec<Var> = xs.iter().map(|x| tape.leaf(x.clone(), true)).collect();
        let y = f(&mut tape, &vars)?;
        Ok((tape, vars, y))
    };
    let (mut tape, vars, y) = eval(inputs, true)?;
    match r {
        Some(r) => tape.backward_with(y, r.clone())?,
        None => tape.backward(y)?,
    }
    let analytic: Vec<Tensor> = vars
        .iter()
        .zip(inputs)
        .map(|(&v, x)| {
            tape.grad(v)
                .cloned()
                .unwrap_or_else(|| Tensor::zeros(x.shape().clone()))
        })
        .collect();

    let mut report = GradcheckReport {
        passed: true,
        checked: 0,
        max_abs_err: 0.0,
        worst: None,
    };
    let mut worst_ratio = -1.0f32;
    let mut xs = inputs.to_vec();
    for (k, a) in analytic.iter().enumerate() {
        for i in 0..xs[k].numel() {
            let orig = xs[k].data()[i];
            let mut at = |delta: f32| -> Result<Tensor> {
                xs[k].data_mut()[i] = orig + delta;
                let (mut t, _, y) = eval(&xs, false)?;
                Ok(t.take_value(y))
            };
            let (plus, minus) = (at(opts.eps)?, at(-opts.eps)?);
            xs[k].data_mut()[i] = orig;
            let (plus, minus) = (plus.data(), minus.data());
            let diff: f64 = match r {
                Some(r) => plus
                    .iter()
                    .zip(minus)
                    .zip(r.data())
                    .map(|((&p, &m), &r)| (p as f64 - m as f64) * r as f64)
                    .sum(),
                None => plus[0] as f64 - minus[0] as f64,
            };
            let numeric = (diff / (2.0 * opts.eps as f64)) as f32;
            let analytic = a.data()[i];
            let err = (analytic - numeric).abs();
            let tol = opts.atol + opts.rtol * numeric.abs();
            report.checked += 1;
            report.max_abs_err = report.max_abs_err.max(err);
            let ratio = if err.is_nan() {
                f32::INFINITY
            } else {
                err / tol
            };
            if ratio > 1.0 {
                report.passed = false;
            }
            if ratio > worst_ratio {
                worst_ratio = ratio;
                report.worst = Some(Mismatch {
                    input: k,
                    index: i,
                    analytic,
                    numeric,
                });
            }
        }
    }
    Ok(report)
}
