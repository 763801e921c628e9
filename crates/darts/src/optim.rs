//! The two optimizers of the DARTS loop and the opt-in max-gradient transform.
//!
//! Weights: SGD with momentum and weight decay after global-norm clipping. Alphas: Adam with L2
//! weight decay. Both read each gradient through `kernels::optim`'s fused pass, which also applies
//! the clip factor and, when [`GradTransform::SubtractMax`] is on, `g <- g - max(g)` per buffer.
use crate::checkpoint::{Checkpoint, TensorFile};
use crate::Result;
use kernels::optim::{self as ko, Adam, Sgd};
use tensor::Tensor;

/// The opt-in gradient transform of SPEC section 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum GradTransform {
    /// The gradients as they are.
    None,
    /// g <- g - max(g) per buffer.
    SubtractMax,
}

impl GradTransform {
    /// The shift subtracted from `scale * g` given max(g): scale * max(g) (max commutes with a
    /// positive scale).
    fn shift(self, scale: f32, max: impl FnOnce() -> f32) -> f32 {
        match self {
            GradTransform::None => 0.0,
            GradTransform::SubtractMax => scale * max(),
        }
    }
}

/// Global L2 norm of several gradient buffers, summed in buffer order in f64.
pub fn global_norm(grads: &[&[f32]]) -> f32 {
    norm_of(grads.iter().map(|g| ko::sum_squares_and_max(g).0))
}

/// The L2 norm from per-buffer sums of squares, summed in buffer order in f64.
fn norm_of(sums: impl Iterator<Item = f32>) -> f32 {
    sums.map(|s| s as f64).sum::<f64>().sqrt() as f32
}

/// SGD with momentum buffers, one per parameter (PyTorch's `SGD`, zero-initialised buffers).
#[derive(Clone, Debug, PartialEq)]
pub struct SgdState {
    /// Learning rate (set per step), momentum and weight decay.
    pub hyper: Sgd,
    /// Global gradient-norm limit.
    pub clip: f32,
    /// One momentum buffer per parameter.
    pub momentum: Vec<Tensor>,
}

impl SgdState {
    /// Zero momentum buffers shaped like `params`.
    pub fn new(params: &[Tensor], momentum: f32, weight_decay: f32, clip: f32) -> Self {
        SgdState {
            hyper: Sgd {
                lr: 0.0,
                momentum,
                weight_decay,
            },
            clip,
            momentum: params
                .iter()
                .map(|p| Tensor::zeros(p.shape().clone()))
                .collect(),
        }
    }

    /// Adds the momentum buffers to a checkpoint as `optimizer.momentum.{name}` (`names`: the
    /// parameters', in buffer order).
    pub fn save(&self, names: &[String], c: &mut Checkpoint) {
        for (n, v) in names.iter().zip(&self.momentum) {
            c.tensor(format!("optimizer.momentum.{n}"), v);
        }
    }

    /// Reads the buffers [`SgdState::save`] wrote; each must have its parameter's shape.
    pub fn load(&mut self, names: &[String], f: &mut TensorFile) -> Result<()> {
        for (n, v) in names.iter().zip(self.momentum.iter_mut()) {
            *v = f.take(&format!("optimizer.momentum.{n}"), v.dims())?;
        }
        Ok(())
    }

    /// Clips the gradients' global norm to `clip` (PyTorch's clip_grad_norm_: factor clip / (norm +
    /// 1e-6) when below 1), then one step at learning rate `lr`. Returns the pre-clip norm.
    pub fn step(
        &mut self,
        lr: f32,
        transform: GradTransform,
        params: &mut [Tensor],
        grads: &[&[f32]],
    ) -> f32 {
        // One read pass per buffer gives both the clip norm and the max-gradient shift; then one
        // update pass.
        let stats: Vec<(f32, f32)> = grads.iter().map(|g| ko::sum_squares_and_max(g)).collect();
        let norm = norm_of(stats.iter().map(|s| s.0));
        let coef = self.clip / (norm + 1e-6);
        let scale = if coef < 1.0 { coef } else { 1.0 };
        let h = Sgd { lr, ..self.hyper };
        for (((p, g), v), (_, max)) in params
            .iter_mut()
            .zip(grads)
            .zip(&mut self.momentum)
            .zip(stats)
        {
            ko::sgd_step(
                h,
                scale,
                transform.shift(scale, || max),
                p.data_mut(),
                g,
                v.data_mut(),
            );
        }
        norm
    }
}

/// Adam moments for the alphas.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamState {
    /// Learning rate, betas, eps and L2 weight decay.
    pub hyper: Adam,
    /// Steps taken (for the bias correction).
    pub step: u64,
    /// First moments, one per parameter.
    pub m: Vec<Tensor>,
    /// Second moments, one per parameter.
    pub v: Vec<Tensor>,
}

impl AdamState {
    /// Zero moments shaped like `params`.
    pub fn new(params: &[Tensor], hyper: Adam) -> Self {
        let zeros = || {
            params
                .iter()
                .map(|p| Tensor::zeros(p.shape().clone()))
                .collect()
        };
        AdamState {
            hyper,
            step: 0,
            m: zeros(),
            v: zeros(),
        }
    }

    /// Adds the moments to a checkpoint (`optimizer.adam_m.{name}`, `optimizer.adam_v.{name}`)
    /// and the step count (metadata `adam_step`); `names`: the parameters', in moment order.
    pub fn save(&self, names: &[&str], c: &mut Checkpoint) {
        for ((n, m), v) in names.iter().zip(&self.m).zip(&self.v) {
            c.tensor(format!("optimizer.adam_m.{n}"), m);
            c.tensor(format!("optimizer.adam_v.{n}"), v);
        }
        c.meta("adam_step", &self.step);
    }

    /// Reads what [`AdamState::save`] wrote; each moment must have its parameter's shape.
    pub fn load(&mut self, names: &[&str], f: &mut TensorFile) -> Result<()> {
        for ((n, m), v) in names.iter().zip(&mut self.m).zip(&mut self.v) {
            *m = f.take(&format!("optimizer.adam_m.{n}"), m.dims())?;
            *v = f.take(&format!("optimizer.adam_v.{n}"), v.dims())?;
        }
        self.step = f.meta("adam_step")?;
        Ok(())
    }

    /// One Adam step on every buffer (gradient transform first, then L2 decay).
    pub fn step(&mut self, transform: GradTransform, params: &mut [Tensor], grads: &[&[f32]]) {
        self.step += 1;
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            ko::adam_step(
                self.hyper,
                self.step,
                1.0,
                transform.shift(1.0, || ko::max_value(g)),
                p.data_mut(),
                g,
                m.data_mut(),
                v.data_mut(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_scales_to_the_clip_norm() {
        let mut p = vec![Tensor::zeros([4])];
        let g = [3.0f32, 4.0, 0.0, 0.0]; // norm 5
        let mut s = SgdState::new(&p, 0.0, 0.0, 1.0);
        let norm = s.step(1.0, GradTransform::None, &mut p, &[&g]);
        assert_eq!(norm, 5.0);
        let got: Vec<f32> = p[0].data().to_vec();
        assert!(
            (got[0] + 0.6).abs() < 1e-5 && (got[1] + 0.8).abs() < 1e-5,
            "{got:?}"
        );
        // PyTorch's factor is clip / (norm + 1e-6): visible when both are tiny. A norm of 1e-6
        // clipped to 1e-6 is halved, not kept.
        let mut p = vec![Tensor::zeros([1])];
        let mut s = SgdState::new(&p, 0.0, 0.0, 1e-6);
        s.step(1.0, GradTransform::None, &mut p, &[&[1e-6]]);
        assert!((p[0].data()[0] + 0.5e-6).abs() < 1e-12, "{:?}", p[0].data());
    }

    /// Deterministic test values: buffer `k`, element `i`, step `t` (11 elements: both the
    /// 8-lane SIMD body and the scalar tail of the kernels run).
    fn value(k: usize, i: usize, t: usize) -> f32 {
        (((k * 31 + i * 7 + t * 13) % 17) as f32 - 8.0) / 8.0
    }

    /// Two SGD steps on two buffers against PyTorch's update written out in f64: global-norm
    /// clipping (one factor for all buffers), then d = g + wd w, v = mu v + d, w -= lr v.
    #[test]
    fn sgd_matches_pytorch_with_momentum_decay_and_global_clipping() {
        let (lr, mu, wd, clip) = (0.1f64, 0.9f64, 0.05f64, 2.0f64);
        let sizes = [11usize, 3];
        let mut p: Vec<Tensor> = (0..2)
            .map(|k| {
                Tensor::from_vec([sizes[k]], (0..sizes[k]).map(|i| value(k, i, 9)).collect())
                    .unwrap()
            })
            .collect();
        let mut w: Vec<Vec<f64>> = p
            .iter()
            .map(|t| t.data().iter().map(|&x| x as f64).collect())
            .collect();
        let mut v: Vec<Vec<f64>> = w.iter().map(|b| vec![0.0; b.len()]).collect();
        let mut s = SgdState::new(&p, mu as f32, wd as f32, clip as f32);
        for t in 0..2 {
            let g: Vec<Vec<f32>> = (0..2)
                .map(|k| (0..sizes[k]).map(|i| value(k, i, t)).collect())
                .collect();
            let norm = g
                .iter()
                .flatten()
                .map(|&x| (x as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            let scale = (clip / (norm + 1e-6)).min(1.0);
            assert!(scale < 1.0, "the clip is active");
            for k in 0..2 {
                for i in 0..w[k].len() {
                    let d = g[k][i] as f64 * scale + wd * w[k][i];
                    v[k][i] = mu * v[k][i] + d;
                    w[k][i] -= lr * v[k][i];
                }
            }
            let refs: Vec<&[f32]> = g.iter().map(|b| b.as_slice()).collect();
            s.step(lr as f32, GradTransform::None, &mut p, &refs);
        }
        for k in 0..2 {
            for (got, want) in p[k].data().iter().zip(&w[k]) {
                assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
            }
        }
    }

    /// Three Adam steps with L2 weight decay (added to the gradient, as PyTorch's `Adam`, not
    /// decoupled as AdamW) and the DARTS betas (0.5, 0.999), against the update written out in f64.
    #[test]
    fn adam_matches_pytorch_with_l2_decay_and_darts_betas() {
        let (lr, b1, b2, eps, wd) = (0.01f64, 0.5f64, 0.999f64, 1e-8f64, 0.1f64);
        let hyper = Adam {
            lr: lr as f32,
            beta1: b1 as f32,
            beta2: b2 as f32,
            eps: eps as f32,
            weight_decay: wd as f32,
        };
        let n = 11;
        let mut p = vec![Tensor::from_vec([n], (0..n).map(|i| value(0, i, 9)).collect()).unwrap()];
        let mut w: Vec<f64> = p[0].data().iter().map(|&x| x as f64).collect();
        let (mut m, mut v) = (vec![0.0f64; n], vec![0.0f64; n]);
        let mut s = AdamState::new(&p, hyper);
        for t in 1..=3 {
            let g: Vec<f32> = (0..n).map(|i| value(1, i, t)).collect();
            for i in 0..n {
                let g = g[i] as f64 + wd * w[i];
                m[i] = b1 * m[i] + (1.0 - b1) * g;
                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                let (mh, vh) = (
                    m[i] / (1.0 - b1.powi(t as i32)),
                    v[i] / (1.0 - b2.powi(t as i32)),
                );
                w[i] -= lr * mh / (vh.sqrt() + eps);
            }
            s.step(GradTransform::None, &mut p, &[g.as_slice()]);
        }
        for (got, want) in p[0].data().iter().zip(&w) {
            assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn subtract_max_shifts_every_gradient_by_the_max() {
        let mut p = vec![Tensor::zeros([3])];
        let g = [1.0f32, 3.0, -2.0];
        let mut s = SgdState::new(&p, 0.0, 0.0, 100.0);
        s.step(1.0, GradTransform::SubtractMax, &mut p, &[&g]);
        assert_eq!(p[0].data(), &[2.0, 0.0, 5.0]); // w -= g - max(g)
    }
}
