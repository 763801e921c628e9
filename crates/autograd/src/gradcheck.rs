//! Central-difference gradient checking for any function built on a tape.
use crate::{Result, Tape, Tensor, Var};

/// Tolerances of [`gradcheck`]. An element passes when |analytic - numeric| <= atol + rtol * |numeric|.
///
/// The defaults suit f32 functions of O(1) inputs whose loss sums up to a few hundred O(1) terms:
/// with step `eps` = 1e-2 the truncation error of a smooth function is O(eps^2) ~ 1e-4 relative, and
/// the f32 round-off of the loss (~1e-5 absolute) divided by 2 eps stays below `atol` = 1e-3. That is
/// tight enough to reject a backward that is off by 1 % wherever the gradient exceeds ~0.15.
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
    let eval = |xs: &[Tensor], grad: bool| -> Result<(Tape, Vec<Var>, Var)> {
        let mut tape = Tape::new();
        tape.set_grad_enabled(grad);
        tape.set_poison_fresh_grads(true);
        let vars: Vec<Var> = xs.iter().map(|x| tape.leaf(x.clone(), true)).collect();
        let loss = f(&mut tape, &vars)?;
        Ok((tape, vars, loss))
    };
    let (mut tape, vars, loss) = eval(inputs, true)?;
    tape.backward(loss)?;
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
            let mut at = |delta: f32| -> Result<f32> {
                xs[k].data_mut()[i] = orig + delta;
                let (t, _, l) = eval(&xs, false)?;
                t.value(l).item()
            };
            let (plus, minus) = (at(opts.eps)?, at(-opts.eps)?);
            xs[k].data_mut()[i] = orig;
            let numeric = ((plus as f64 - minus as f64) / (2.0 * opts.eps as f64)) as f32;
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
