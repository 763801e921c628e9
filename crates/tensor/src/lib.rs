#![deny(missing_docs)]
//! f32 tensors in NCHW layout, their shapes, the engine's typed errors and a deterministic RNG.
//!
//! A [`Tensor`] is a shape plus one contiguous `Vec<f32>`; there are no strides or views. Everything
//! that can go wrong with caller-supplied shapes returns an [`Error`] instead of panicking.

mod error;
mod init;
mod rng;
mod shape;
#[allow(clippy::module_inception)]
mod tensor;

pub use error::{Error, Result};
pub use init::{fan_in_out, kaiming_uniform, uniform_bias};
pub use rng::Rng;
pub use shape::Shape;
pub use tensor::Tensor;
