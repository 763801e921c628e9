#![deny(missing_docs)]
//! Differentiable ops: each checks its arguments (returning a typed [`Error`], never panicking on a
//! caller's bad shape), runs a kernel from the `kernels` crate for the forward, and records a
//! [`Backward`](autograd::Backward) on the tape whose vector-Jacobian product runs the matching
//! backward kernels. One file per op family; every op has a finite-difference property test beside it.
//!
//! | op | forward | vector-Jacobian product |
//! |---|---|---|
//! | [`conv2d`] | y = W * x (optionally W * relu(x)) | dx = W^T * dy (masked), dW = dy * x^T |
//! | [`depthwise_conv2d`] | one kxk filter per channel | same, per channel |
//! | [`conv2d_bn`] | BN(W * x), BN without affine, one node | BN's VJP from its output, then the conv's |
//! | [`separable_conv`], [`separable_conv_bn`], [`separable_conv_stats`] | W_pw depthwise(x) (then BN), one node; the depthwise output is not stored | made again per sample, then both convs' VJPs |
//! | [`factorized_reduce`] | concat(W0 relu(x)[::2, ::2], W1 relu(x)[1::2, 1::2]), one node | both phases' dx scattered in one pass, dW_p = dy_p x_p^T |
//! | [`linear`] | y = x W^T + b | dx = dy W, dW = dy^T x, db = sum dy |
//! | [`max_pool2d`] / [`avg_pool2d`] (`_stats`: and their planes' BN statistics) | window max / mean | to the argmax / spread evenly |
//! | [`batch_norm`] | (x - mean) / sqrt(var + eps) * gamma + beta | through the batch statistics |
//! | [`relu`], [`add`], [`add_n`], [`scale`], [`axpy`], [`scale_samples`] | elementwise | elementwise |
//! | [`weighted_sum`] | sum_k w[row, k] x_k (the mixed op) | dx_k = w dy, dw = <dy, x_k> |
//! | [`weighted_sum_bn`] | sum_k w[row, k] BN_k(x_k), BN_k none or without affine (the mixed op with its edges' BNs), one node | each BN's VJP from its output, made again in registers |
//! | [`concat_channels`], [`split_channels`], [`slice2d`], [`global_avg_pool`] | data movement | the reverse movement |
//! | [`softmax`], [`maxw`], [`cross_entropy`] | row-wise | row-wise |
//! | [`dot_const`], [`sum`] | scalar reductions (losses, probes) | broadcast |
//!
//! # Writing a new op
//!
//! An op computes its value, then records it with [`Tape::push`] together with a
//! [`Backward`](autograd::Backward) that adds the vector-Jacobian product into its inputs'
//! gradient slots. Here y = x³ (dy/dx = 3x²), proven against central differences by
//! [`autograd::gradcheck`] inside a property test, the way every op of this crate is tested; the
//! same check fails a backward that is wrong by a factor.
//!
//! ```
//! use autograd::{gradcheck, Backward, GradSlots, GradcheckOptions, Result, Tape, Tensor, Var};
//! use proptest::prelude::*;
//!
//! /// dL/dx = dL/dy * 3x² (times `factor`: 1 is right, anything else a planted bug).
//! struct CubeBack {
//!     factor: f32,
//! }
//! impl Backward for CubeBack {
//!     fn backward(&self, inputs: &[&Tensor], _y: &Tensor, dy: &Tensor, grads: &mut GradSlots) {
//!         if let Some(dx) = grads[0].as_mut() {
//!             let x = inputs[0].data();
//!             for ((d, &g), &x) in dx.data_mut().iter_mut().zip(dy.data()).zip(x) {
//!                 *d += self.factor * g * 3.0 * x * x; // accumulate: x may feed several ops
//!             }
//!         }
//!     }
//! }
//!
//! fn cube(tape: &mut Tape, x: Var, factor: f32) -> Result<Var> {
//!     let v: Vec<f32> = tape.value(x).data().iter().map(|x| x * x * x).collect();
//!     let y = Tensor::from_vec(tape.value(x).shape().clone(), v)?;
//!     Ok(tape.push("cube", y, &[x], CubeBack { factor }))
//! }
//!
//! /// Does the tape's gradient of sum(cube(x)) match finite differences at `x`?
//! fn passes(x: Vec<f32>, factor: f32) -> bool {
//!     let n = x.len();
//!     let loss = |t: &mut Tape, v: &[Var]| {
//!         let y = cube(t, v[0], factor)?;
//!         ops::sum(t, y)
//!     };
//!     let x = Tensor::from_vec([n], x).unwrap();
//!     gradcheck(loss, &[x], GradcheckOptions::default()).unwrap().passed
//! }
//!
//! proptest! {
//!     #![proptest_config(ProptestConfig::with_cases(32))]
//!     // In a test module this function would carry #[test]; here it is called below.
//!     fn cube_gradient(x in prop::collection::vec(-2.0f32..2.0, 1..10)) {
//!         prop_assert!(passes(x, 1.0));
//!     }
//! }
//! cube_gradient();
//! assert!(!passes(vec![0.5, -1.5, 1.0], 1.01), "a 1 % wrong gradient is caught");
//! ```

mod batchnorm;
mod check;
mod conv;
mod cost;
mod elementwise;
mod factorized;
mod layout;
mod linear;
mod maxw;
mod mixed;
mod pool;
mod reduce;
mod separable;
mod softmax;

pub use autograd::{Error, Result, Tape, Tensor, Var};
pub use batchnorm::{batch_norm, BatchNormOptions, RunningStats};
pub use conv::{conv2d, conv2d_bn, depthwise_conv2d, Conv2dOptions};
pub use elementwise::{add, add_n, axpy, relu, scale, scale_samples};
pub use factorized::factorized_reduce;
pub use layout::{concat_channels, global_avg_pool, slice2d, split_channels, Slice};
pub use linear::linear;
pub use maxw::maxw;
pub use mixed::{weighted_sum, weighted_sum_bn, Norm};
pub use pool::{avg_pool2d, avg_pool2d_stats, max_pool2d, max_pool2d_stats, PoolOptions};
pub use reduce::{dot_const, sum};
pub use separable::{separable_conv, separable_conv_bn, separable_conv_stats};
pub use softmax::{cross_entropy, softmax};

#[cfg(test)]
pub(crate) mod testutil;
