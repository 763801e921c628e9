#![deny(missing_docs)]
//! Reverse-mode automatic differentiation on a tape.
//!
//! The whole idea in one paragraph: a [`Tape`] is a flat list of nodes in the order they were computed.
//! Node `i` holds its value, the handles ([`Var`], plain indices) of its inputs and a boxed
//! [`Backward`] that knows the op's vector-Jacobian product. `backward(loss)` seeds dL/dloss = 1 and
//! walks the list from the end: each node hands its output gradient to its op, which *adds* the
//! input gradients into the inputs' gradient buffers. A node's gradient is freed (returned to the
//! tape's buffer pool) as soon as it has been consumed, except for leaves (parameters) and nodes the
//! caller asked to retain.
//!
//! Inspection is part of the design: every node has an op name, a shape and an optional scope
//! (`cells.0._ops.3`); [`Tape::nodes`] lists them with value and gradient statistics and
//! [`Tape::to_dot`] draws the graph. [`gradcheck`] compares a function's tape gradients with central
//! finite differences; [`gradcheck_vjp`] does so for an output of any shape and a cotangent.

mod deferred;
mod gradcheck;
mod inspect;
mod pool;
mod profile;
mod tape;

pub use deferred::{Deferred, PassThrough};
pub use gradcheck::{gradcheck, gradcheck_vjp, GradcheckOptions, GradcheckReport, Mismatch};
pub use inspect::{NodeInfo, Stats};
pub use profile::{Cost, OpProfile, Profile, ShapeProfile, Work};
pub use tape::{Backward, GradOut, GradSlots, Tape, Var};
pub use tensor::{Error, Result, Shape, Tensor};

#[cfg(test)]
mod tests;
