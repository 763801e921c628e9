//! Tape tests with two tiny hand-written ops (the real ops live in the `ops` crate).
use crate::*;

/// y = a * b elementwise.
struct Mul;
impl Backward for Mul {
    fn backward(&self, inputs: &[&Tensor], _out: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        for (k, other) in [(0, 1), (1, 0)] {
            if let Some(d) = grads[k].as_mut() {
                for ((d, g), o) in d
                    .data_mut()
                    .iter_mut()
                    .zip(g.data())
                    .zip(inputs[other].data())
                {
                    *d += g * o;
                }
            }
        }
    }
}

fn mul(t: &mut Tape, a: Var, b: Var) -> Var {
    let v: Vec<f32> = t
        .value(a)
        .data()
        .iter()
        .zip(t.value(b).data())
        .map(|(x, y)| x * y)
        .collect();
    let out = Tensor::from_vec(t.value(a).shape().clone(), v).unwrap();
    t.push("mul", out, &[a, b], Mul)
}

/// y = sum(x), scaled by `1.0 + planted_error` in the backward.
struct Sum(f32);
impl Backward for Sum {
    fn backward(&self, _inputs: &[&Tensor], _out: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        if let Some(d) = grads[0].as_mut() {
            d.data_mut()
                .iter_mut()
                .for_each(|d| *d += g.data()[0] * (1.0 + self.0));
        }
    }
}

fn sum(t: &mut Tape, x: Var, planted: f32) -> Var {
    let s = Tensor::scalar(t.value(x).data().iter().sum());
    t.push("sum", s, &[x], Sum(planted))
}

fn t(v: &[f32]) -> Tensor {
    Tensor::from_vec([v.len()], v.to_vec()).unwrap()
}

#[test]
fn backward_accumulates_fan_out_and_repeated_inputs() {
    let mut tape = Tape::new();
    let x = tape.leaf(t(&[1.0, 2.0, -3.0]), true);
    let y = mul(&mut tape, x, x); // x^2, same input twice
    let z = mul(&mut tape, y, x); // x^3
    let l = sum(&mut tape, z, 0.0);
    tape.backward(l).unwrap();
    assert_eq!(tape.grad(x).unwrap().data(), &[3.0, 12.0, 27.0]); // 3x^2
    assert!(
        tape.grad(y).is_none(),
        "intermediate gradients are freed once consumed"
    );
}

#[test]
fn no_grad_records_no_backward_and_constants_get_no_grad() {
    let mut tape = Tape::new();
    let x = tape.leaf(t(&[1.0, 2.0]), true);
    let c = tape.leaf(t(&[5.0, 6.0]), false);
    let y = tape.no_grad(|tp| mul(tp, x, x));
    assert!(!tape.requires_grad(y));
    let z = mul(&mut tape, x, c);
    let l = sum(&mut tape, z, 0.0);
    tape.backward(l).unwrap();
    assert_eq!(tape.grad(x).unwrap().data(), &[5.0, 6.0]);
    assert!(tape.grad(c).is_none());
    let l2 = sum(&mut tape, y, 0.0);
    assert!(tape.backward(l2).is_err(), "nothing to differentiate");
}

#[test]
fn backward_rejects_non_scalar_loss() {
    let mut tape = Tape::new();
    let x = tape.leaf(t(&[1.0, 2.0]), true);
    let y = mul(&mut tape, x, x);
    let err = tape.backward(y).unwrap_err();
    assert!(err.to_string().contains("one-element"), "{err}");
}

#[test]
fn reset_recycles_buffers_and_invalidates_handles() {
    let mut tape = Tape::new();
    let x = tape.leaf(t(&[1.0, 2.0]), true);
    let l = sum(&mut tape, x, 0.0);
    tape.backward(l).unwrap();
    tape.reset();
    assert!(tape.is_empty());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tape.value(x).clone()));
    assert!(r.is_err(), "stale handle must be caught");
}

#[test]
fn scopes_names_inspection_and_dot() {
    let mut tape = Tape::new();
    tape.set_record_grad_stats(true);
    let w = tape.param("cells.0.weight", &t(&[0.5, -1.0]));
    let x = tape.leaf(t(&[2.0, 3.0]), false);
    let y = tape.scoped("cells", |tp| tp.scoped("0", |tp| mul(tp, w, x)));
    let l = sum(&mut tape, y, 0.0);
    tape.backward(l).unwrap();
    let nodes = tape.nodes();
    assert_eq!(nodes[2].scope.as_deref(), Some("cells.0"));
    assert_eq!(nodes[2].op, "mul");
    assert_eq!(nodes[0].name.as_deref(), Some("cells.0.weight"));
    assert!(nodes[2].grad.is_some(), "recorded while consumed");
    assert_eq!(nodes[0].grad.unwrap().l2, (4.0f32 + 9.0).sqrt());
    let dot = tape.to_dot();
    assert!(
        dot.starts_with("digraph")
            && dot.contains("n0 -> n2")
            && dot.contains("cluster_0")
            && dot.contains("cells.0.weight")
    );
    // Leaves are ellipses, ops boxes; one scope is one cluster holding its nodes.
    assert!(
        dot.contains("n0 [shape=ellipse") && dot.contains("n2 [shape=box"),
        "{dot}"
    );
    assert!(!dot.contains("cluster_1"), "{dot}");
    assert!(tape.summary().contains("mul"));
}

#[test]
fn gradcheck_accepts_a_right_backward_and_rejects_a_planted_one() {
    let x = t(&[0.3, -0.7, 1.1, 0.9]);
    let f = |planted: f32| {
        move |tp: &mut Tape, v: &[Var]| -> Result<Var> {
            let y = mul(tp, v[0], v[0]);
            let z = mul(tp, y, v[0]);
            Ok(sum(tp, z, planted))
        }
    };
    let good = gradcheck(
        f(0.0),
        std::slice::from_ref(&x),
        GradcheckOptions::default(),
    )
    .unwrap();
    assert!(good.passed, "{good}");
    // Every element checked, and the worst named even when all pass: d(x^3)/dx = 3 x^2.
    assert_eq!(good.checked, 4);
    let w = good
        .worst
        .as_ref()
        .expect("the worst of a passing check is reported too");
    assert!(
        (w.analytic - 3.0 * x.data()[w.index].powi(2)).abs() < 1e-6,
        "{good}"
    );
    let text = good.to_string();
    assert!(
        text.starts_with("gradcheck passed: 4 elements, max abs error ")
            && text.contains("; worst: input 0 element "),
        "{text}"
    );
    let bad = gradcheck(
        f(0.01),
        std::slice::from_ref(&x),
        GradcheckOptions::default(),
    )
    .unwrap();
    assert!(!bad.passed, "a 1% wrong backward must be rejected: {bad}");
    let w = bad.worst.clone().unwrap();
    assert_eq!(
        (w.input, w.index),
        (0, 2),
        "worst element is the one with the largest gradient"
    );
    assert!(
        bad.to_string().starts_with("gradcheck FAILED: 4 elements"),
        "{bad}"
    );
}

/// Min, max, mean and L2 norm over the finite values; the others counted apart.
#[test]
fn stats_skip_and_count_non_finite_values() {
    let s = Stats::of(&[1.0, -2.0, f32::NAN, 3.0, f32::INFINITY]);
    assert_eq!((s.min, s.max, s.non_finite), (-2.0, 3.0, 2));
    assert!((s.mean - 2.0 / 3.0).abs() < 1e-7, "{s:?}");
    assert!((s.l2 - 14f32.sqrt()).abs() < 1e-6, "{s:?}");
    let e = Stats::of(&[]);
    assert_eq!((e.mean, e.l2, e.non_finite), (0.0, 0.0, 0));
}

#[test]
fn pool_does_not_grow_with_outside_buffers() {
    let mut tape = Tape::new();
    let mut held = Vec::new();
    for _ in 0..20 {
        tape.reset();
        // A fresh outside tensor every step (as a data batch is), plus pooled op outputs.
        let x = tape.leaf(t(&[1.0, 2.0, 3.0]), true);
        let y = mul(&mut tape, x, x);
        let l = sum(&mut tape, y, 0.0);
        tape.backward(l).unwrap();
        held.push(tape.pooled_buffers());
    }
    assert!(held[19] <= held[5], "pool keeps growing: {held:?}");
}

/// Profiling counts each op's calls and adds its stated work: forward for every recorded call,
/// backward only where a backward ran; leaves are the copies that made them; across a reset the
/// totals keep adding up until taken.
#[test]
fn profile_counts_calls_and_work_per_op() {
    let mut tape = Tape::new();
    tape.set_profiling(true);
    for grad in [true, false] {
        tape.reset();
        tape.set_grad_enabled(grad);
        let x = tape.leaf(t(&[1.0, 2.0, -3.0]), true);
        let y = mul(&mut tape, x, x);
        let l = sum(&mut tape, y, 0.0);
        if grad {
            tape.backward(l).unwrap();
        }
    }
    let p = tape.take_profile();
    let (leaf, m, s) = (&p["leaf"], &p["mul"], &p["sum"]);
    assert_eq!((leaf.calls, m.calls, s.calls), (2, 2, 2));
    // Leaf: 3 values copied (read + write) per call.
    assert_eq!(leaf.forward, Work::new(0.0, 2.0 * 2.0 * 3.0));
    // mul (elementwise default): forward 3 ops over 3 + 3 in, 3 out; backward once: 6 ops,
    // dy (3) + 3 x (inputs 3 + 3) values.
    assert_eq!(m.forward, Work::new(2.0 * 3.0, 2.0 * 9.0));
    assert_eq!(m.backward, Work::new(6.0, 3.0 + 3.0 * 6.0));
    assert!(m.forward_seconds >= 0.0 && m.backward_seconds > 0.0);
    // By shape: one shape each here, holding all of the op's calls and time.
    assert_eq!(leaf.shapes.keys().collect::<Vec<_>>(), ["[3]"]);
    let at = &m.shapes["[3] -> [3]"];
    assert_eq!((at.calls, m.shapes.len()), (2, 1));
    assert_eq!(
        (at.forward_seconds, at.backward_seconds),
        (m.forward_seconds, m.backward_seconds)
    );
    assert_eq!(s.shapes.keys().collect::<Vec<_>>(), ["[3] -> []"]);
    assert!(tape.take_profile().is_empty(), "taken totals start over");
    tape.set_profiling(false);
    let x = tape.leaf(t(&[1.0]), false);
    mul(&mut tape, x, x);
    assert!(
        tape.take_profile().is_empty(),
        "nothing is recorded while off"
    );
}

/// An op called at two shapes: two entries in its `shapes`, whose calls and seconds add up to the
/// op's; the backward of each call is charged to its own shape.
#[test]
fn profile_splits_an_op_by_shape() {
    let mut tape = Tape::new();
    tape.set_profiling(true);
    let a = tape.leaf(t(&[1.0, 2.0, 3.0]), true);
    let b = tape.leaf(t(&[4.0, 5.0]), true);
    let ya = mul(&mut tape, a, a);
    mul(&mut tape, b, b);
    mul(&mut tape, b, b);
    let l = sum(&mut tape, ya, 0.0);
    tape.backward(l).unwrap();
    let p = tape.take_profile();
    let m = &p["mul"];
    let (three, two) = (&m.shapes["[3] -> [3]"], &m.shapes["[2] -> [2]"]);
    assert_eq!((m.shapes.len(), three.calls, two.calls), (2, 1, 2));
    let both = three.forward_seconds + two.forward_seconds;
    assert!((both - m.forward_seconds).abs() <= 1e-9 * m.forward_seconds);
    assert!(three.backward_seconds > 0.0, "the [3] call's backward ran");
    assert_eq!(two.backward_seconds, 0.0, "no [2] call's backward ran");
    assert_eq!(three.backward_seconds, m.backward_seconds);
}

/// y = s * x, its gradient taken through [`GradSlots::out`]: written into a fresh slot, added into
/// an accumulated one. The planted bug skips the values whose upstream gradient is 0 (as a masked
/// kernel might), which is right when adding and wrong when writing.
struct ScaleOut {
    s: f32,
    planted: bool,
}
impl Backward for ScaleOut {
    fn backward(&self, _: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        if let Some(dx) = grads.out(0) {
            for (d, &gv) in dx.data.iter_mut().zip(g.data()) {
                if !(self.planted && gv == 0.0) {
                    *d = if dx.add { *d } else { 0.0 } + self.s * gv;
                }
            }
        }
    }
}

fn scale_out(t: &mut Tape, x: Var, s: f32, planted: bool) -> Var {
    let y = Tensor::from_vec(
        t.value(x).shape().clone(),
        t.value(x).data().iter().map(|v| s * v).collect(),
    )
    .unwrap();
    t.push("scale_out", y, &[x], ScaleOut { s, planted })
}

/// y = x, with a backward that gives x nothing.
struct Detached;
impl Backward for Detached {
    fn backward(&self, _: &[&Tensor], _: &Tensor, _: &Tensor, _: &mut GradSlots) {}
}

#[test]
fn fresh_slots_are_written_whole_and_accumulated_ones_added_into() {
    let mut tape = Tape::new();
    tape.set_poison_fresh_grads(true);
    let xs = [0.5, -1.0, 2.0];
    let x = tape.leaf(t(&xs), true);
    // L = sum(2x * 3x): the 3x op's backward runs first and writes x's fresh slot, the 2x op's
    // adds into it: dL/dx = 2 * 3x + 3 * 2x = 12x.
    let (a, b) = (
        scale_out(&mut tape, x, 2.0, false),
        scale_out(&mut tape, x, 3.0, false),
    );
    let p = mul(&mut tape, a, b);
    let loss = sum(&mut tape, p, 0.0);
    tape.backward(loss).unwrap();
    let want: Vec<f32> = xs.iter().map(|v| 12.0 * v).collect();
    assert_eq!(tape.grad(x).unwrap().data(), &want[..]);
}

#[test]
fn a_fresh_slot_the_op_never_takes_holds_zeros() {
    let mut tape = Tape::new();
    tape.set_poison_fresh_grads(true);
    let x = tape.leaf(t(&[1.0, 2.0]), true);
    let y = tape.push("detached", t(&[1.0, 2.0]), &[x], Detached);
    let loss = sum(&mut tape, y, 0.0);
    tape.backward(loss).unwrap();
    assert_eq!(tape.grad(x).unwrap().data(), &[0.0, 0.0]);
}

#[test]
fn gradcheck_poisons_fresh_slots_and_catches_an_op_that_writes_part_of_one() {
    let x = t(&[0.3, -0.7, 1.1]);
    let f = |planted: bool| {
        move |tp: &mut Tape, v: &[Var]| -> Result<Var> {
            // dL/dy = c, 0 at index 2: the planted op leaves dx[2] unwritten, whose right value
            // is 0 (what a new buffer would happen to hold); the poison makes it NaN.
            let c = tp.leaf(t(&[1.0, -2.0, 0.0]), false);
            let y = scale_out(tp, v[0], 1.5, planted);
            let z = mul(tp, y, c);
            Ok(sum(tp, z, 0.0))
        }
    };
    let opts = GradcheckOptions::default();
    let good = gradcheck(f(false), std::slice::from_ref(&x), opts).unwrap();
    assert!(good.passed, "{good}");
    let bad = gradcheck(f(true), std::slice::from_ref(&x), opts).unwrap();
    assert!(
        !bad.passed,
        "an unwritten gradient value must be caught: {bad}"
    );
    let worst = bad.worst.unwrap();
    assert_eq!(worst.index, 2);
    assert!(worst.analytic.is_nan(), "the poison: {}", worst.analytic);
}

/// Records which of its inputs want a gradient.
struct Wants(std::sync::Arc<std::sync::Mutex<Vec<bool>>>);
impl Backward for Wants {
    fn backward(&self, inputs: &[&Tensor], _: &Tensor, _: &Tensor, grads: &mut GradSlots) {
        *self.0.lock().unwrap() = (0..inputs.len()).map(|i| grads.wants(i)).collect();
    }
}

#[test]
fn wants_tells_which_inputs_need_a_gradient() {
    let mut tape = Tape::new();
    let (x, c) = (tape.leaf(t(&[1.0]), true), tape.leaf(t(&[2.0]), false));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let y = tape.push("wants", t(&[1.0]), &[x, c], Wants(seen.clone()));
    let loss = sum(&mut tape, y, 0.0);
    tape.backward(loss).unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![true, false]);
}

#[test]
fn backward_with_seeds_a_cotangent_of_the_outputs_shape() {
    let mut tape = Tape::new();
    let x = tape.leaf(t(&[1.0, 2.0, -3.0]), true);
    let y = mul(&mut tape, x, x);
    assert!(
        tape.backward_with(y, t(&[1.0, 2.0])).is_err(),
        "a cotangent of another shape is an error"
    );
    tape.backward_with(y, t(&[0.5, -1.0, 2.0])).unwrap();
    // dx = r * 2x.
    assert_eq!(tape.grad(x).unwrap().data(), &[1.0, -4.0, -12.0]);
    let c = tape.leaf(t(&[1.0]), false);
    assert!(
        tape.backward_with(c, t(&[1.0])).is_err(),
        "nothing to differentiate"
    );
}

/// y = x^2 elementwise, its backward scaled by `1.0 + planted_error`.
struct Square(f32);
impl Backward for Square {
    fn backward(&self, inputs: &[&Tensor], _out: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        if let Some(d) = grads[0].as_mut() {
            for ((d, g), x) in d.data_mut().iter_mut().zip(g.data()).zip(inputs[0].data()) {
                *d += g * 2.0 * x * (1.0 + self.0);
            }
        }
    }
}

fn square(t: &mut Tape, x: Var, planted: f32) -> Var {
    let y = t.value(x).data().iter().map(|v| v * v).collect();
    let y = Tensor::from_vec(t.value(x).shape().clone(), y).unwrap();
    t.push("square", y, &[x], Square(planted))
}

/// 1000 outputs near 900: their sum <y, r> as one f32 loss rounds by more than a step of 1e-2
/// changes it, so a gradcheck of that loss fails a right backward; the vector-Jacobian check,
/// which sums the outputs' differences in f64, passes it and still rejects one 1 % off.
#[test]
fn gradcheck_vjp_is_free_of_the_loss_rounding_and_rejects_a_planted_error() {
    let mut rng = tensor::Rng::new(5);
    let x = Tensor::uniform([1000], 20.0, 40.0, &mut rng);
    let r = Tensor::uniform([1000], -1.0, 1.0, &mut rng);
    let opts = GradcheckOptions::default();
    let vjp = |planted: f32| {
        let f = move |tp: &mut Tape, v: &[Var]| -> Result<Var> { Ok(square(tp, v[0], planted)) };
        gradcheck_vjp(f, std::slice::from_ref(&x), &r, opts).unwrap()
    };
    let good = vjp(0.0);
    assert!(good.passed, "{good}");
    let bad = vjp(0.01);
    assert!(!bad.passed, "a 1% wrong backward must be rejected: {bad}");
    let as_loss = |tp: &mut Tape, v: &[Var]| -> Result<Var> {
        let y = square(tp, v[0], 0.0);
        let c = tp.leaf(r.clone(), false);
        let p = mul(tp, y, c);
        Ok(sum(tp, p, 0.0))
    };
    let rounded = gradcheck(as_loss, std::slice::from_ref(&x), opts).unwrap();
    assert!(
        !rounded.passed && rounded.max_abs_err > 10.0 * good.max_abs_err,
        "the one-f32 loss was expected to round visibly: {rounded} vs {good}"
    );
}

#[test]
fn one_scope_is_one_dot_cluster() {
    let mut tape = Tape::new();
    let x = tape.leaf(t(&[2.0, 3.0]), true);
    let y = tape.scoped("cell", |tp| {
        let a = mul(tp, x, x);
        mul(tp, a, x)
    });
    sum(&mut tape, y, 0.0);
    let dot = tape.to_dot();
    assert_eq!(dot.matches("subgraph cluster_").count(), 1, "{dot}");
}
