//! Deferred gradients: an op may hand an input a recipe for its gradient instead of the values,
//! when the input's producer can use the recipe directly in its own backward.
//!
//! The case it exists for: the mixed op's gradient to a term is a per-channel affine map of the
//! mixed op's output gradient g and the term's own value (its batch norm's VJP). Written out, that
//! is a pass that reads g and the term and writes a buffer, which the producer (a separable block)
//! then reads back, all from memory at 32 x 32 planes. Deferred, the producer makes each sample's
//! gradient in cache from g and its own output. A recipe is only made where the producer takes it
//! (not for a retained node, nor while gradient statistics are recorded); the tape writes it out
//! ([`Deferred::write`]) where a second gradient for the node comes.
use std::any::Any;
use std::sync::Arc;
use tensor::Tensor;

/// A gradient not yet written, for the node it was handed to.
pub trait Deferred: Send + Sync {
    /// Writes the gradient whole into `out` (every value, as `0.0 + v`: the bits of adding into
    /// zeros), given the node's own value.
    fn write(&self, value: &Tensor, out: &mut [f32]);
    /// The recipe as [`Any`], for a producer that knows its type.
    fn as_any(&self) -> &dyn Any;
    /// Ends the recipe; the tensor it shared, when this was its last holder (for the tape's pool).
    fn release(self: Box<Self>) -> Option<Tensor>;
}

/// The consumer's output gradient itself, shared: what a sum hands each of its terms (dL/dx_i =
/// dL/dy for y = x_0 + x_1 + ...) instead of a copy apiece. The tape makes it the producer's
/// output gradient as it is, without a pass; a producer takes it only where its backward gives
/// the same bits for these values as for the written copy (`0.0 + v`, which turns -0.0 into
/// 0.0).
pub struct PassThrough(pub Arc<Tensor>);

impl Deferred for PassThrough {
    fn write(&self, _value: &Tensor, out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(self.0.data()) {
            *o = 0.0 + v;
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn release(self: Box<Self>) -> Option<Tensor> {
        Arc::try_unwrap(self.0).ok()
    }
}
