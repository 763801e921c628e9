use crate::{Error, Result, Rng, Shape};

/// A contiguous, row-major f32 tensor. `data.len() == shape.numel()` always holds.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    shape: Shape,
    data: Vec<f32>,
}

impl Tensor {
    /// Wraps `data` as a tensor of `shape`; errors if the length does not match.
    pub fn from_vec(shape: impl Into<Shape>, data: Vec<f32>) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != data.len() {
            return Err(Error::LenMismatch {
                what: "Tensor::from_vec",
                expected: shape.numel(),
                got: data.len(),
            });
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: impl Into<Shape>) -> Self {
        Self::full(shape, 0.0)
    }

    /// A tensor with every entry `value`.
    pub fn full(shape: impl Into<Shape>, value: f32) -> Self {
        let shape = shape.into();
        let data = vec![value; shape.numel()];
        Tensor { shape, data }
    }

    /// A 0-dimensional tensor holding `value`.
    pub fn scalar(value: f32) -> Self {
        Tensor {
            shape: Shape::new(&[]),
            data: vec![value],
        }
    }

    /// Samples of N(0, std^2) from `rng`.
    pub fn randn(shape: impl Into<Shape>, std: f32, rng: &mut Rng) -> Self {
        let shape = shape.into();
        let data = (0..shape.numel()).map(|_| rng.normal() * std).collect();
        Tensor { shape, data }
    }

    /// Samples of U(lo, hi) from `rng`.
    pub fn uniform(shape: impl Into<Shape>, lo: f32, hi: f32, rng: &mut Rng) -> Self {
        let shape = shape.into();
        let data = (0..shape.numel()).map(|_| rng.uniform(lo, hi)).collect();
        Tensor { shape, data }
    }

    /// Its shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// Its dimensions, outermost first.
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    /// Number of entries.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The entries, row-major (NCHW for images).
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The entries, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// The entries, taking ownership.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// The raw little-endian bytes of the data (for file formats), without copying.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.data)
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        match self.data.as_slice() {
            &[v] => Ok(v),
            _ => Err(Error::BadShape {
                op: "Tensor::item",
                shape: self.dims().to_vec(),
                why: "needs exactly one element".into(),
            }),
        }
    }

    /// The same data under another shape with the same number of elements.
    pub fn reshape(self, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != self.data.len() {
            return Err(Error::ShapeMismatch {
                op: "reshape",
                expected: self.dims().to_vec(),
                got: shape.dims().to_vec(),
            });
        }
        Ok(Tensor {
            shape,
            data: self.data,
        })
    }

    /// Largest absolute elementwise difference to `other` (infinite if the shapes differ).
    pub fn max_abs_diff(&self, other: &Tensor) -> f32 {
        if self.shape != other.shape {
            return f32::INFINITY;
        }
        self.data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 8;
        write!(
            f,
            "Tensor{:?} {:?}",
            self.shape,
            &self.data[..self.data.len().min(SHOWN)]
        )?;
        if self.data.len() > SHOWN {
            write!(f, "..")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_vec_checks_length() {
        assert!(Tensor::from_vec([2, 3], vec![0.0; 6]).is_ok());
        let err = Tensor::from_vec([2, 3], vec![0.0; 5]).unwrap_err();
        assert!(err.to_string().contains("needs 6"), "{err}");
    }

    #[test]
    fn reshape_keeps_data_and_checks_size() {
        let t = Tensor::from_vec([2, 3], (0..6).map(|i| i as f32).collect()).unwrap();
        let r = t.clone().reshape([3, 2]).unwrap();
        assert_eq!(r.data(), t.data());
        assert!(t.reshape([4, 2]).is_err());
    }

    #[test]
    fn bytes_are_little_endian_f32() {
        let t = Tensor::from_vec([1], vec![1.0]).unwrap();
        assert_eq!(t.as_bytes(), &1.0f32.to_le_bytes());
    }
}
