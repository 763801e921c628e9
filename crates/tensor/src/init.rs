//! Parameter initialisation with PyTorch's default distributions.
use crate::{Error, Result, Rng, Shape, Tensor};

/// (fan_in, fan_out) of a weight shaped [out, in, k...] (linear: [out, in]; conv: OIHW).
pub fn fan_in_out(shape: &Shape) -> Result<(usize, usize)> {
    let d = shape.dims();
    if d.len() < 2 {
        return Err(Error::BadShape {
            op: "fan_in_out",
            shape: d.to_vec(),
            why: "needs rank >= 2".into(),
        });
    }
    let receptive: usize = d[2..].iter().product();
    Ok((d[1] * receptive, d[0] * receptive))
}

/// PyTorch's default `Conv2d`/`Linear` weight init, `kaiming_uniform_(a = sqrt(5))`:
/// U(-b, b) with b = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + a^2)), i.e. b = 1 / sqrt(fan_in).
pub fn kaiming_uniform(shape: impl Into<Shape>, rng: &mut Rng) -> Result<Tensor> {
    let shape = shape.into();
    let (fan_in, _) = fan_in_out(&shape)?;
    let gain = (2.0f32 / (1.0 + 5.0)).sqrt();
    let bound = gain * (3.0 / fan_in as f32).sqrt();
    Ok(Tensor::uniform(shape, -bound, bound, rng))
}

/// PyTorch's default bias init for a layer with `fan_in` inputs: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
pub fn uniform_bias(len: usize, fan_in: usize, rng: &mut Rng) -> Tensor {
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    Tensor::uniform([len], -bound, bound, rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaiming_bound_is_one_over_sqrt_fan_in() {
        let mut rng = Rng::new(0);
        let w = kaiming_uniform([16, 8, 3, 3], &mut rng).unwrap();
        let bound = 1.0 / (72.0f32).sqrt();
        let max = w.data().iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            max <= bound && max > 0.95 * bound,
            "max {max} bound {bound}"
        );
        assert!(kaiming_uniform([3], &mut rng).is_err());
    }
}
