//! The engine's compute kernels.
//!
//! Every kernel family lives in one module and comes twice with the same signature: a plain scalar
//! loop in that module's `reference` submodule (the readable definition, used by tests), and the fast
//! version at the module's top level (`wide` f32x8 SIMD, sgemm, rayon over batch x channel planes).
//! Property tests check each fast kernel against its reference.
//!
//! Conventions that hold everywhere:
//! - Kernels take slices and write into caller-given buffers; none allocates, but for the
//!   per-thread scratch (`scratch.rs`) that a sample's temporaries (im2col columns, the separable
//!   block's z, channels-last frames) live in, grown to the largest sample once. Buffers whose size
//!   is not obvious (per-sample partial sums) have a `*_len` function that says how big.
//! - Forward kernels overwrite their output. Backward kernels **accumulate** into input gradients
//!   (`dx += ...`), so gradient fan-in needs no extra buffer. Weight gradients too.
//! - Results are bit-identical for any rayon thread count: work is split into fixed chunks, and every
//!   floating-point reduction runs in an order that does not depend on the number of threads.
//! - Shapes are checked by the callers (the `ops` crate returns typed errors); kernels only
//!   `debug_assert` them and will panic on out-of-bounds slices, never read garbage.

pub mod batchnorm;
pub mod channels_last;
pub mod conv;
pub mod depthwise;
pub mod elementwise;
pub mod factorized;
pub mod gemm;
pub mod layout;
pub mod linear;
pub mod maxw;
pub mod mixed;
pub mod optim;
pub mod par;
pub mod peak;
pub mod pool;
mod scratch;
pub mod separable;
pub mod simd;
pub mod softmax;
pub mod tiled;

#[cfg(test)]
pub(crate) mod testutil;
