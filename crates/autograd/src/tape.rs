use crate::deferred::{Deferred, PassThrough};
use crate::inspect::Stats;
use crate::pool::BufferPool;
use crate::profile::{Cost, Profile, Work};
use std::any::TypeId;
use std::sync::Arc;
use std::time::Instant;
use tensor::{Error, Result, Shape, Tensor};

/// A handle to a node of a [`Tape`]: its index, plus the tape generation it belongs to (a handle
/// kept across [`Tape::reset`] is caught instead of silently pointing at a new node).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var {
    index: usize,
    generation: u32,
}

impl Var {
    /// Position of the node on its tape.
    pub fn index(self) -> usize {
        self.index
    }
}

/// The gradient buffers of one node's inputs during its backward call, in input order: `None` for
/// inputs that need no gradient. A slot either holds the input's gradient so far, to be added
/// into, or is *fresh*: the first gradient the input receives. Indexing (`grads[i]`) sees every
/// slot as one to add into (a fresh one is zeroed first); [`GradSlots::out`] lends a fresh slot
/// without zeroing it, for ops that write their whole gradient (`dx = v` instead of a memset and
/// `dx += v`). It also lends scratch buffers from the tape's pool, so a backward pass that needs
/// temporary storage allocates nothing once the tape is warm.
pub struct GradSlots<'a> {
    slots: &'a mut [Option<Tensor>],
    fresh: &'a mut [bool],
    pool: &'a mut BufferPool,
    /// Per input: the backward of its producer where that may take a [`Deferred`] gradient
    /// (not a retained node, no statistics recorded), and the recipe it was handed.
    producers: &'a [Option<&'a dyn Backward>],
    deferred: &'a mut [Option<Box<dyn Deferred>>],
    /// The node's output gradient, shared (`None` when it came deferred itself).
    grad_out: Option<&'a Arc<Tensor>>,
}

/// One input's gradient buffer from [`GradSlots::out`].
pub struct GradOut<'a> {
    /// The gradient's values.
    pub data: &'a mut [f32],
    /// `true`: `data` holds the gradient so far, add into it. `false`: its contents are
    /// unspecified and the op writes every value, as `0.0 + v` (the bits of adding into zeros).
    pub add: bool,
}

impl<'a> GradOut<'a> {
    /// The buffer to add into: a fresh one zeroed first (for ops that add in several pieces).
    pub fn accumulate(self) -> &'a mut [f32] {
        if !self.add {
            crate::pool::fill(self.data, 0.0);
        }
        self.data
    }
}

impl GradSlots<'_> {
    /// Whether input `i` wants a gradient.
    pub fn wants(&self, i: usize) -> bool {
        self.slots[i].is_some()
    }

    /// Input `i`'s gradient buffer and whether to add into it or write it whole (`None` when the
    /// input wants no gradient). An op that takes a fresh slot here must write every value.
    pub fn out(&mut self, i: usize) -> Option<GradOut<'_>> {
        lend(&mut self.slots[i], &mut self.fresh[i])
    }

    /// [`GradSlots::out`] of every input at once.
    pub fn outs(&mut self) -> Vec<Option<GradOut<'_>>> {
        let slots = self.slots.iter_mut().zip(self.fresh.iter_mut());
        slots.map(|(slot, fresh)| lend(slot, fresh)).collect()
    }

    /// A scratch buffer of `len` values with unspecified contents; hand it back with
    /// [`GradSlots::recycle`] (or keep it: a dropped buffer is only a missed reuse).
    pub fn scratch(&mut self, len: usize) -> Vec<f32> {
        self.pool.take(len)
    }

    /// A scratch buffer of `len` zeros (large ones zeroed by all threads), for a kernel that adds
    /// into its output; hand it back with [`GradSlots::recycle`].
    pub fn zeros(&mut self, len: usize) -> Vec<f32> {
        self.pool.zeros(len)
    }

    /// Returns a buffer (scratch, or any other f32 buffer the pass is done with) to the pool.
    pub fn recycle(&mut self, buf: Vec<f32>) {
        self.pool.give(buf);
    }

    /// Whether input `i` may be handed a deferred gradient of type `kind` ([`GradSlots::defer`]):
    /// it wants a gradient, has none yet, and its producer's backward takes that recipe
    /// ([`Backward::takes_deferred`]; nor is it retained, nor are gradient statistics recorded).
    pub fn can_defer(&self, i: usize, kind: TypeId) -> bool {
        self.fresh[i]
            && self.slots[i].is_some()
            && self.producers[i].is_some_and(|b| b.takes_deferred(kind))
    }

    /// Hands input `i` its whole gradient as a recipe instead of values (only where
    /// [`GradSlots::can_defer`]); its slot is gone from here on.
    pub fn defer(&mut self, i: usize, grad: Box<dyn Deferred>) {
        assert!(
            self.can_defer(i, grad.as_any().type_id()),
            "input {i} cannot take this deferred gradient"
        );
        let slot = self.slots[i].take().expect("checked by can_defer");
        self.pool.give(slot.into_vec());
        self.fresh[i] = false;
        self.deferred[i] = Some(grad);
    }

    /// The node's output gradient as a shared tensor, for a [`Deferred`] gradient that reads it
    /// later (`None` when the node's own gradient came deferred).
    pub fn shared_grad_out(&self) -> Option<Arc<Tensor>> {
        self.grad_out.cloned()
    }

    /// Zeroes the fresh slots that are still fresh: they become slots to add into.
    fn zero_fresh(&mut self) {
        for (slot, fresh) in self.slots.iter_mut().zip(self.fresh.iter_mut()) {
            if let (Some(t), true) = (slot, std::mem::take(fresh)) {
                crate::pool::fill(t.data_mut(), 0.0);
            }
        }
    }
}

/// A slot as a [`GradOut`]; from here on the op owns a fresh slot's values (no longer fresh).
fn lend<'s>(slot: &'s mut Option<Tensor>, fresh: &mut bool) -> Option<GradOut<'s>> {
    let add = !std::mem::take(fresh);
    slot.as_mut().map(|t| GradOut {
        data: t.data_mut(),
        add,
    })
}

impl std::ops::Deref for GradSlots<'_> {
    type Target = [Option<Tensor>];
    /// The slots, to ask which want a gradient (a fresh slot's values are unspecified until it is
    /// taken mutably or through [`GradSlots::out`]).
    fn deref(&self) -> &Self::Target {
        self.slots
    }
}

impl std::ops::DerefMut for GradSlots<'_> {
    /// Every slot as one to add into: fresh slots are zeroed here.
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.zero_fresh();
        self.slots
    }
}

/// The vector-Jacobian product of one op. `inputs` are the op's input values, `output` its value,
/// `grad_out` = dL/doutput. Implementations add dL/dinput_i into `grads[i]` when it is `Some` (or
/// write it whole into a fresh slot from [`GradSlots::out`]).
pub trait Backward: Send + Sync {
    /// Adds each input's gradient (the VJP of `grad_out`) into `grads`.
    fn backward(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        grad_out: &Tensor,
        grads: &mut GradSlots,
    );

    /// The work of this op's forward and backward, for [`Tape::take_profile`]; by default an
    /// elementwise op's ([`Cost::elementwise`]). Ops whose work is not one pass over their tensors
    /// (convolutions, pools, reductions) say what theirs is.
    fn cost(&self, inputs: &[&Tensor], output: &Tensor) -> Cost {
        Cost::elementwise(inputs, output)
    }

    /// Whether [`Backward::backward_deferred`] takes dL/doutput as a [`Deferred`] recipe of
    /// this type (`TypeId` of the recipe's concrete type).
    fn takes_deferred(&self, _kind: TypeId) -> bool {
        false
    }

    /// [`Backward::backward`] with dL/doutput as a recipe; called only with recipes whose type
    /// [`Backward::takes_deferred`] accepts.
    fn backward_deferred(
        &self,
        _inputs: &[&Tensor],
        _output: &Tensor,
        _grad_out: &dyn Deferred,
        _grads: &mut GradSlots,
    ) {
        unreachable!("backward_deferred without takes_deferred")
    }
}

/// Profiling state: totals per op, each node's cost and shape (for its backward), the last
/// record's time.
struct Profiler {
    ops: Profile,
    costs: Vec<Cost>,
    shapes: Vec<String>,
    mark: Instant,
}

/// A node's output gradient in the backward pass: values (shared, so that deferred gradients
/// handed on may read them later), or a recipe its backward takes as such.
enum OutGrad {
    Values(Arc<Tensor>),
    Deferred(Box<dyn Deferred>),
}

pub(crate) struct Node {
    pub(crate) op: &'static str,
    pub(crate) inputs: Vec<Var>,
    backward: Option<Box<dyn Backward>>,
    pub(crate) requires_grad: bool,
    keep_grad: bool,
    pub(crate) scope: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) grad_stats: Option<Stats>,
}

/// A reverse-mode autodiff tape. See the crate docs for the idea.
pub struct Tape {
    nodes: Vec<Node>,
    values: Vec<Tensor>,
    grads: Vec<Option<Tensor>>,
    /// A node's gradient as a recipe, while it holds one (then `grads` holds none).
    deferred: Vec<Option<Box<dyn Deferred>>>,
    /// How many gradients the last backward passes handed over deferred and used so.
    deferred_used: usize,
    generation: u32,
    grad_enabled: bool,
    record_grad_stats: bool,
    poison_fresh_grads: bool,
    scopes: Vec<String>,
    pool: BufferPool,
    profiler: Option<Profiler>,
}

impl Default for Tape {
    fn default() -> Self {
        Self::new()
    }
}

impl Tape {
    /// An empty tape (gradients enabled).
    pub fn new() -> Self {
        Tape {
            nodes: Vec::new(),
            values: Vec::new(),
            grads: Vec::new(),
            deferred: Vec::new(),
            deferred_used: 0,
            generation: 0,
            grad_enabled: true,
            record_grad_stats: false,
            poison_fresh_grads: false,
            scopes: Vec::new(),
            pool: BufferPool::default(),
            profiler: None,
        }
    }

    /// Forgets every node but keeps their buffers for reuse by the next step. Old handles become invalid.
    pub fn reset(&mut self) {
        for t in self.values.drain(..) {
            self.pool.give(t.into_vec());
        }
        for t in self.grads.drain(..).flatten() {
            self.pool.give(t.into_vec());
        }
        self.deferred.clear();
        self.pool.trim();
        self.nodes.clear();
        self.scopes.clear();
        self.generation = self.generation.wrapping_add(1);
        if let Some(p) = &mut self.profiler {
            p.costs.clear();
            p.shapes.clear();
            p.mark = Instant::now();
        }
    }

    // ---- profiling ----

    /// Records, per op name, calls, forward and backward time and work ([`Tape::take_profile`]),
    /// until switched off. Off by default: then nothing is timed.
    pub fn set_profiling(&mut self, on: bool) {
        self.profiler = on.then(|| Profiler {
            ops: Profile::new(),
            costs: vec![Cost::default(); self.nodes.len()],
            shapes: vec![String::new(); self.nodes.len()],
            mark: Instant::now(),
        });
    }

    /// The totals recorded since profiling was switched on or last taken (empty when it is off).
    pub fn take_profile(&mut self) -> Profile {
        self.profiler
            .as_mut()
            .map(|p| std::mem::take(&mut p.ops))
            .unwrap_or_default()
    }

    /// Adds a recorded node's forward: the time since the previous record, its work and shape.
    fn profile_forward(&mut self, op: &'static str, cost: Cost, shape: String) {
        if let Some(p) = &mut self.profiler {
            let now = Instant::now();
            let seconds = (now - p.mark).as_secs_f64();
            let e = p.ops.entry(op).or_default();
            e.add_forward(seconds, cost.forward);
            let at = e.shapes.entry(shape.clone()).or_default();
            at.calls += 1;
            at.forward_seconds += seconds;
            p.costs.push(cost);
            p.shapes.push(shape);
            p.mark = now;
        }
    }

    /// Number of nodes recorded since the last reset.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether nothing has been recorded since the last reset.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    // ---- modes and scopes ----

    /// With gradients disabled, ops record values only: no backward closures, nothing requires grad.
    pub fn set_grad_enabled(&mut self, enabled: bool) {
        self.grad_enabled = enabled;
    }

    /// Whether ops record their backward (see `set_grad_enabled`).
    pub fn grad_enabled(&self) -> bool {
        self.grad_enabled
    }

    /// Runs `f` with gradients disabled, then restores the previous mode.
    pub fn no_grad<R>(&mut self, f: impl FnOnce(&mut Tape) -> R) -> R {
        let was = std::mem::replace(&mut self.grad_enabled, false);
        let r = f(self);
        self.grad_enabled = was;
        r
    }

    /// Keep min/max/mean/norm of every gradient as it is consumed, for [`Tape::nodes`].
    pub fn set_record_grad_stats(&mut self, on: bool) {
        self.record_grad_stats = on;
    }

    /// Fills each fresh gradient slot with NaN before an op's backward sees it (off by default),
    /// so an op that takes a fresh slot through [`GradSlots::out`] and leaves values unwritten
    /// shows NaN in the gradient. [`crate::gradcheck`] turns it on.
    pub fn set_poison_fresh_grads(&mut self, on: bool) {
        self.poison_fresh_grads = on;
    }

    /// Nodes created inside `f` get `name` appended to the current scope (joined with '.').
    pub fn scoped<R>(&mut self, name: impl Into<String>, f: impl FnOnce(&mut Tape) -> R) -> R {
        self.scopes.push(name.into());
        let r = f(self);
        self.scopes.pop();
        r
    }

    fn current_scope(&self) -> Option<String> {
        (!self.scopes.is_empty()).then(|| self.scopes.join("."))
    }

    // ---- building ----

    /// A leaf node (input or parameter). Leaves that require grad keep their gradient after backward.
    pub fn leaf(&mut self, value: Tensor, requires_grad: bool) -> Var {
        let requires_grad = requires_grad && self.grad_enabled;
        let n = value.numel() as f64;
        // A leaf's work is the copy that made it (a read and a write); it has no backward.
        let copy = Cost {
            forward: Work::new(0.0, 2.0 * n),
            backward: Work::default(),
        };
        if self.profiler.is_some() {
            self.profile_forward("leaf", copy, format!("{:?}", value.dims()));
        }
        self.push_node(
            value,
            "leaf",
            Vec::new(),
            None,
            requires_grad,
            requires_grad,
        )
    }

    /// A named parameter leaf (requires grad); the name shows in inspection and DOT output.
    pub fn param(&mut self, name: impl Into<String>, value: &Tensor) -> Var {
        self.named_leaf(name, value, true)
    }

    /// A named leaf holding a copy of `value` (in a recycled buffer), with or without gradient.
    pub fn named_leaf(
        &mut self,
        name: impl Into<String>,
        value: &Tensor,
        requires_grad: bool,
    ) -> Var {
        let mut buf = self.pool.take(value.numel());
        buf.copy_from_slice(value.data());
        let t = Tensor::from_vec(value.shape().clone(), buf).expect("same length");
        let v = self.leaf(t, requires_grad);
        self.nodes[v.index].name = Some(name.into());
        v
    }

    /// Records an op's result. `backward` is kept only if some input requires grad (and grad is
    /// enabled). This is what the `ops` crate calls for every op.
    pub fn push(
        &mut self,
        op: &'static str,
        value: Tensor,
        inputs: &[Var],
        backward: impl Backward + 'static,
    ) -> Var {
        for &v in inputs {
            self.check(v);
        }
        let requires_grad =
            self.grad_enabled && inputs.iter().any(|v| self.nodes[v.index].requires_grad);
        if self.profiler.is_some() {
            let in_values: Vec<&Tensor> = inputs.iter().map(|v| &self.values[v.index]).collect();
            let cost = backward.cost(&in_values, &value);
            let shape = match in_values.first() {
                Some(x) => format!("{:?} -> {:?}", x.dims(), value.dims()),
                None => format!("{:?}", value.dims()),
            };
            self.profile_forward(op, cost, shape);
        }
        let backward: Option<Box<dyn Backward>> =
            requires_grad.then(|| Box::new(backward) as Box<dyn Backward>);
        self.push_node(value, op, inputs.to_vec(), backward, requires_grad, false)
    }

    fn push_node(
        &mut self,
        value: Tensor,
        op: &'static str,
        inputs: Vec<Var>,
        backward: Option<Box<dyn Backward>>,
        requires_grad: bool,
        keep_grad: bool,
    ) -> Var {
        let index = self.nodes.len();
        let scope = self.current_scope();
        self.nodes.push(Node {
            op,
            inputs,
            backward,
            requires_grad,
            keep_grad,
            scope,
            name: None,
            grad_stats: None,
        });
        self.values.push(value);
        self.grads.push(None);
        self.deferred.push(None);
        Var {
            index,
            generation: self.generation,
        }
    }

    /// A tensor of `shape` with unspecified contents, recycled from earlier steps when possible. For op
    /// outputs that a kernel overwrites.
    pub fn buffer(&mut self, shape: impl Into<Shape>) -> Tensor {
        let shape = shape.into();
        let buf = self.pool.take(shape.numel());
        Tensor::from_vec(shape, buf).expect("pool returns the requested length")
    }

    /// A zero tensor of `shape`, recycled when possible.
    pub fn zeros(&mut self, shape: impl Into<Shape>) -> Tensor {
        let shape = shape.into();
        let buf = self.pool.zeros(shape.numel());
        Tensor::from_vec(shape, buf).expect("pool returns the requested length")
    }

    /// Returns a tensor's buffer to the pool (for an op's temporary that never becomes a node).
    pub fn recycle(&mut self, t: Tensor) {
        self.pool.give(t.into_vec());
    }

    /// Keep this node's gradient after backward (for inspection of intermediate gradients).
    pub fn retain_grad(&mut self, v: Var) {
        self.check(v);
        self.nodes[v.index].keep_grad = true;
    }

    /// Gives a node a display name (shown by inspection and DOT export).
    pub fn set_name(&mut self, v: Var, name: impl Into<String>) {
        self.check(v);
        self.nodes[v.index].name = Some(name.into());
    }

    // ---- reading ----

    fn check(&self, v: Var) {
        assert!(
            v.generation == self.generation && v.index < self.nodes.len(),
            "Var {} is not from this tape's current step (tape reset since it was made?)",
            v.index
        );
    }

    /// The value of a node.
    pub fn value(&self, v: Var) -> &Tensor {
        self.check(v);
        &self.values[v.index]
    }

    /// Takes a node's value out of the tape (the node keeps an empty tensor); for results a caller
    /// wants to own without a copy.
    pub fn take_value(&mut self, v: Var) -> Tensor {
        self.check(v);
        std::mem::replace(&mut self.values[v.index], Tensor::zeros([0]))
    }

    /// Whether a gradient flows to `v` (it is, or depends on, a leaf that requires one).
    pub fn requires_grad(&self, v: Var) -> bool {
        self.check(v);
        self.nodes[v.index].requires_grad
    }

    /// The gradient of the last backward with respect to `v` (leaves and retained nodes only).
    pub fn grad(&self, v: Var) -> Option<&Tensor> {
        self.check(v);
        self.grads[v.index].as_ref()
    }

    /// Moves a gradient out of the tape.
    pub fn take_grad(&mut self, v: Var) -> Option<Tensor> {
        self.check(v);
        self.grads[v.index].take()
    }

    pub(crate) fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    #[cfg(test)]
    pub(crate) fn pooled_buffers(&self) -> usize {
        self.pool.held()
    }

    pub(crate) fn raw_value(&self, i: usize) -> &Tensor {
        &self.values[i]
    }

    pub(crate) fn raw_grad(&self, i: usize) -> Option<&Tensor> {
        self.grads[i].as_ref()
    }

    // ---- backward ----

    /// Back-propagates from a one-element `loss`: dL/dloss = 1. Gradients accumulate into leaves that
    /// already hold one (call [`Tape::zero_grads`] between steps that reuse a tape without reset).
    pub fn backward(&mut self, loss: Var) -> Result<()> {
        self.check(loss);
        if self.values[loss.index].numel() != 1 {
            return Err(Error::Tape(format!(
                "backward needs a one-element loss, node {} has shape {:?}",
                loss.index,
                self.values[loss.index].dims()
            )));
        }
        let seed = Tensor::full(self.values[loss.index].shape().clone(), 1.0);
        self.backward_with(loss, seed)
    }

    /// Back-propagates a cotangent `dy` of `y`'s shape: every input x gains the vector-Jacobian
    /// product dy^T dy/dx (PyTorch's `y.backward(dy)`); [`Tape::backward`] is the case dy = 1.
    pub fn backward_with(&mut self, y: Var, dy: Tensor) -> Result<()> {
        self.check(y);
        dy.shape()
            .expect_eq(self.values[y.index].shape(), "backward_with's cotangent")?;
        if !self.nodes[y.index].requires_grad {
            return Err(Error::Tape(
                "the output does not depend on anything that requires grad".into(),
            ));
        }
        self.add_grad(y.index, dy);
        self.deferred_used = 0;
        for i in (0..=y.index).rev() {
            // A deferred gradient goes to its node's own backward, which takes it (it was only
            // made where `GradSlots::can_defer` said so), a passed-through one as the values it
            // shares; anything else reads values.
            let grad_out = match (self.grads[i].take(), self.deferred[i].take()) {
                (Some(g), _) => OutGrad::Values(Arc::new(g)),
                (None, Some(d)) => match d.as_any().downcast_ref::<PassThrough>() {
                    Some(PassThrough(g)) => {
                        self.deferred_used += 1;
                        OutGrad::Values(Arc::clone(g))
                    }
                    None => OutGrad::Deferred(d),
                },
                (None, None) => continue,
            };
            if let (true, OutGrad::Values(g)) = (self.record_grad_stats, &grad_out) {
                self.nodes[i].grad_stats = Some(Stats::of(g.data()));
            }
            if let Some(bw) = self.nodes[i].backward.take() {
                let started = self.profiler.is_some().then(Instant::now);
                let inputs = self.nodes[i].inputs.clone();
                // Each input's slot is its accumulated gradient so far, or a fresh buffer (its
                // values unspecified: NaN when poisoned, to catch an op that writes only part):
                // also where the input holds a deferred gradient, which is added to it below.
                // An input used twice gets a fresh slot the second time; added back below too.
                let mut slots: Vec<Option<Tensor>> = Vec::with_capacity(inputs.len());
                let mut fresh = vec![false; inputs.len()];
                for (v, fresh) in inputs.iter().zip(fresh.iter_mut()) {
                    let slot = self.nodes[v.index].requires_grad.then(|| {
                        self.grads[v.index].take().unwrap_or_else(|| {
                            *fresh = true;
                            let shape = self.values[v.index].shape().clone();
                            let mut buf = self.pool.take(shape.numel());
                            if self.poison_fresh_grads {
                                crate::pool::fill(&mut buf, f32::NAN);
                            }
                            Tensor::from_vec(shape, buf).expect("same length")
                        })
                    });
                    slots.push(slot);
                }
                let mut deferred: Vec<Option<Box<dyn Deferred>>> =
                    inputs.iter().map(|_| None).collect();
                {
                    let record = self.record_grad_stats;
                    let producers: Vec<Option<&dyn Backward>> = inputs
                        .iter()
                        .map(|v| {
                            let n = &self.nodes[v.index];
                            (!n.keep_grad && !record)
                                .then_some(n.backward.as_deref())
                                .flatten()
                        })
                        .collect();
                    let in_values: Vec<&Tensor> =
                        inputs.iter().map(|v| &self.values[v.index]).collect();
                    let mut grads = GradSlots {
                        slots: &mut slots,
                        fresh: &mut fresh,
                        pool: &mut self.pool,
                        producers: &producers,
                        deferred: &mut deferred,
                        grad_out: match &grad_out {
                            OutGrad::Values(g) => Some(g),
                            OutGrad::Deferred(_) => None,
                        },
                    };
                    let out = &self.values[i];
                    match &grad_out {
                        OutGrad::Values(g) => bw.backward(&in_values, out, g, &mut grads),
                        OutGrad::Deferred(d) => {
                            bw.backward_deferred(&in_values, out, d.as_ref(), &mut grads)
                        }
                    }
                    // A fresh slot the op never took holds no gradient from it: zero.
                    grads.zero_fresh();
                }
                self.nodes[i].backward = Some(bw);
                for ((v, slot), d) in inputs.iter().zip(slots).zip(deferred) {
                    if let Some(g) = slot {
                        self.add_grad(v.index, g);
                    }
                    if let Some(d) = d {
                        self.add_deferred(v.index, d);
                    }
                }
                if let (Some(p), Some(t0)) = (&mut self.profiler, started) {
                    let seconds = t0.elapsed().as_secs_f64();
                    let e = p.ops.entry(self.nodes[i].op).or_default();
                    e.backward_seconds += seconds;
                    e.backward += p.costs.get(i).map_or(Work::default(), |c| c.backward);
                    let shape = p.shapes.get(i).cloned().unwrap_or_default();
                    e.shapes.entry(shape).or_default().backward_seconds += seconds;
                }
            }
            match grad_out {
                OutGrad::Values(g) => match Arc::try_unwrap(g) {
                    Ok(g) if self.nodes[i].keep_grad => self.grads[i] = Some(g),
                    Ok(g) => self.pool.give(g.into_vec()),
                    // Deferred gradients still read it; the last to go hands it back.
                    Err(g) if self.nodes[i].keep_grad => self.grads[i] = Some((*g).clone()),
                    Err(_) => {}
                },
                OutGrad::Deferred(d) => {
                    self.deferred_used += 1;
                    self.release(d);
                }
            }
        }
        if let Some(p) = &mut self.profiler {
            p.mark = Instant::now();
        }
        Ok(())
    }

    /// Writes node `i`'s deferred gradient out as its gradient, if it holds one.
    fn write_deferred(&mut self, i: usize) {
        if let Some(d) = self.deferred[i].take() {
            debug_assert!(
                self.grads[i].is_none(),
                "a node with both kinds of gradient"
            );
            self.grads[i] = Some(self.written(i, d));
        }
    }

    /// Node `i` gains the deferred gradient `d`: kept as such where it is the first, else
    /// written out and added.
    fn add_deferred(&mut self, i: usize, d: Box<dyn Deferred>) {
        if self.grads[i].is_none() && self.deferred[i].is_none() {
            self.deferred[i] = Some(d);
            return;
        }
        let g = self.written(i, d);
        self.add_grad(i, g);
    }

    /// The values of node `i`'s deferred gradient `d`, in a buffer from the pool; `d` ends here.
    fn written(&mut self, i: usize, d: Box<dyn Deferred>) -> Tensor {
        let shape = self.values[i].shape().clone();
        let mut buf = self.pool.take(shape.numel());
        d.write(&self.values[i], &mut buf);
        self.release(d);
        Tensor::from_vec(shape, buf).expect("same length")
    }

    /// Ends a deferred gradient; the tensor it shared goes back to the pool when this was the
    /// last reader.
    fn release(&mut self, d: Box<dyn Deferred>) {
        if let Some(t) = d.release() {
            self.pool.give(t.into_vec());
        }
    }

    /// How many gradients the last backward pass handed over as recipes ([`Deferred`]) and
    /// their producers used as such, without writing them out.
    pub fn deferred_used(&self) -> usize {
        self.deferred_used
    }

    /// grads[i] += g, or grads[i] = g when it holds none (a deferred one written out first).
    fn add_grad(&mut self, i: usize, g: Tensor) {
        self.write_deferred(i);
        match &mut self.grads[i] {
            Some(acc) => {
                for (a, b) in acc.data_mut().iter_mut().zip(g.data()) {
                    *a += b;
                }
                self.pool.give(g.into_vec());
            }
            slot @ None => *slot = Some(g),
        }
    }

    /// Drops every stored gradient (returning the buffers to the pool).
    pub fn zero_grads(&mut self) {
        for g in self.grads.iter_mut() {
            if let Some(t) = g.take() {
                self.pool.give(t.into_vec());
            }
        }
    }
}
