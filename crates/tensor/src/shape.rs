use crate::{Error, Result};
use std::fmt;

/// The dimensions of a tensor, outermost first (NCHW for images, OIHW for conv weights).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(Vec<usize>);

impl Shape {
    /// A shape with these dimensions, outermost first.
    pub fn new(dims: &[usize]) -> Self {
        Shape(dims.to_vec())
    }

    /// The dimensions, outermost first.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// Number of elements (1 for a scalar of rank 0).
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }

    /// The four dimensions of an NCHW shape, or an error naming `op` if the rank is not 4.
    pub fn nchw(&self, op: &'static str) -> Result<[usize; 4]> {
        match self.0.as_slice() {
            &[n, c, h, w] => Ok([n, c, h, w]),
            _ => Err(Error::BadShape {
                op,
                shape: self.0.clone(),
                why: "expected rank 4 (NCHW)".into(),
            }),
        }
    }

    /// The two dimensions of a matrix shape, or an error naming `op` if the rank is not 2.
    pub fn rows_cols(&self, op: &'static str) -> Result<[usize; 2]> {
        match self.0.as_slice() {
            &[r, c] => Ok([r, c]),
            _ => Err(Error::BadShape {
                op,
                shape: self.0.clone(),
                why: "expected rank 2 (rows, cols)".into(),
            }),
        }
    }

    /// Errors unless `self == other`.
    pub fn expect_eq(&self, other: &Shape, op: &'static str) -> Result<()> {
        if self == other {
            Ok(())
        } else {
            Err(Error::ShapeMismatch {
                op,
                expected: other.0.clone(),
                got: self.0.clone(),
            })
        }
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Self {
        Shape::new(d)
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(d: [usize; N]) -> Self {
        Shape::new(&d)
    }
}

impl From<Vec<usize>> for Shape {
    fn from(d: Vec<usize>) -> Self {
        Shape(d)
    }
}

impl From<&Shape> for Shape {
    fn from(s: &Shape) -> Self {
        s.clone()
    }
}
