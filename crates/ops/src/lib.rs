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
//! | [`linear`] | y = x W^T + b | dx = dy W, dW = dy^T x, db = sum dy |
//! | [`max_pool2d`] / [`avg_pool2d`] | window max / mean | to the argmax / spread evenly |
//! | [`pool2d_bn`] | BN(pool(x)), BN without affine, one node | BN's VJP from its output, then the pool's |
//! | [`batch_norm`] | (x - mean) / sqrt(var + eps) * gamma + beta | through the batch statistics |
//! | [`relu`], [`add`], [`add_n`], [`scale`], [`axpy`], [`scale_samples`] | elementwise | elementwise |
//! | [`weighted_sum`] | sum_k w[row, k] x_k (the mixed op) | dx_k = w dy, dw = <dy, x_k> |
//! | [`concat_channels`], [`split_channels`], [`slice2d`], [`global_avg_pool`] | data movement | the reverse movement |
//! | [`softmax`], [`maxw`], [`cross_entropy`] | row-wise | row-wise |
//! | [`dot_const`], [`sum`] | scalar reductions (losses, probes) | broadcast |

mod batchnorm;
mod check;
mod conv;
mod elementwise;
mod layout;
mod linear;
mod maxw;
mod mixed;
mod pool;
mod reduce;
mod softmax;

pub use autograd::{Error, Result, Tape, Tensor, Var};
pub use batchnorm::{batch_norm, BatchNormOptions, RunningStats};
pub use conv::{conv2d, conv2d_bn, depthwise_conv2d, Conv2dOptions};
pub use elementwise::{add, add_n, axpy, relu, scale, scale_samples};
pub use layout::{concat_channels, global_avg_pool, slice2d, split_channels, Slice};
pub use linear::linear;
pub use maxw::maxw;
pub use mixed::weighted_sum;
pub use pool::{avg_pool2d, max_pool2d, pool2d_bn, PoolKind, PoolOptions};
pub use reduce::{dot_const, sum};
pub use softmax::{cross_entropy, softmax};

#[cfg(test)]
pub(crate) mod testutil;
