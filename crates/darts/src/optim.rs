//! The two optimizers of the DARTS loop and the opt-in max-gradient transform.
//!
//! Weights: SGD with momentum and weight decay after global-norm clipping. Alphas: Adam with L2
//! weight decay. Both read each gradient through `kernels::optim`'s fused pass, which also applies
//! the clip factor and, when [`GradTransform::SubtractMax`] is on, `g <- g - max(g)` per buffer.
use kernels::optim::{self as ko, Adam, Sgd};
use tensor::Tensor;

/// The opt-in gradient transform of SPEC section 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradTransform {
    None,
    SubtractMax,
}

impl GradTransform {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(GradTransform::None),
            "subtract-max" => Some(GradTransform::SubtractMax),
            _ => None,
        }
    }

    /// The shift subtracted from `scale * g`: scale * max(g) (max commutes with a positive scale).
    fn shift(self, scale: f32, g: &[f32]) -> f32 {
        match self {
            GradTransform::None => 0.0,
            GradTransform::SubtractMax => scale * ko::max_value(g),
        }
    }
}

/// Global L2 norm of several gradient buffers, summed in buffer order in f64.
pub fn global_norm(grads: &[&[f32]]) -> f32 {
    grads
        .iter()
        .map(|g| ko::sum_squares(g) as f64)
        .sum::<f64>()
        .sqrt() as f32
}

/// SGD with momentum buffers, one per parameter (PyTorch's `SGD`, zero-initialised buffers).
#[derive(Clone, Debug, PartialEq)]
pub struct SgdState {
    pub hyper: Sgd,
    pub clip: f32,
    pub momentum: Vec<Tensor>,
}

impl SgdState {
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

    /// Clips the gradients' global norm to `clip` (PyTorch's clip_grad_norm_: factor clip / (norm +
    /// 1e-6) when below 1), then one step at learning rate `lr`. Returns the pre-clip norm.
    pub fn step(
        &mut self,
        lr: f32,
        transform: GradTransform,
        params: &mut [Tensor],
        grads: &[&[f32]],
    ) -> f32 {
        let norm = global_norm(grads);
        let coef = self.clip / (norm + 1e-6);
        let scale = if coef < 1.0 { coef } else { 1.0 };
        let h = Sgd { lr, ..self.hyper };
        for ((p, g), v) in params.iter_mut().zip(grads).zip(&mut self.momentum) {
            ko::sgd_step(
                h,
                scale,
                transform.shift(scale, g),
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
    pub hyper: Adam,
    pub step: u64,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
}

impl AdamState {
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
                transform.shift(1.0, g),
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
