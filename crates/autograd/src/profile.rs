//! Where a pass's time goes, per op: calls, forward and backward wall time, and the work each op
//! says it does ([`Cost`]: floating-point operations and bytes moved), so a caller can set the
//! time against what the machine's compute and memory peaks allow.
use std::collections::BTreeMap;
use tensor::Tensor;

/// The work of one op call, forward or backward.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Work {
    /// Floating-point operations (a fused multiply-add counts 2).
    pub flops: f64,
    /// Bytes read plus bytes written, each tensor counted once per pass over it.
    pub bytes: f64,
}

impl Work {
    /// `flops` operations over `values` f32 values moved.
    pub fn new(flops: f64, values: f64) -> Work {
        Work {
            flops,
            bytes: 4.0 * values,
        }
    }
}

impl std::ops::AddAssign for Work {
    fn add_assign(&mut self, o: Work) {
        self.flops += o.flops;
        self.bytes += o.bytes;
    }
}

/// What one op call costs: its forward, and its backward (the vector-Jacobian product).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    /// The forward computation.
    pub forward: Work,
    /// The backward computation.
    pub backward: Work,
}

impl Cost {
    /// An elementwise op's cost, the default: forward one operation per output value, reading the
    /// inputs and writing the output; backward reading the output gradient and each input and
    /// adding into each input's gradient (read + write), one operation per input value.
    pub fn elementwise(inputs: &[&Tensor], output: &Tensor) -> Cost {
        let ins: f64 = inputs.iter().map(|t| t.numel() as f64).sum();
        let out = output.numel() as f64;
        Cost {
            forward: Work::new(out, ins + out),
            backward: Work::new(ins, out + 3.0 * ins),
        }
    }
}

/// Per op name, the totals over the calls recorded while profiling.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpProfile {
    /// Calls recorded.
    pub calls: usize,
    /// Forward seconds: for each call, the time since the previous node was recorded (the op's
    /// kernel and the little code that prepared it).
    pub forward_seconds: f64,
    /// Backward seconds: each call's vector-Jacobian product, gradient slots included.
    pub backward_seconds: f64,
    /// Forward work of the calls.
    pub forward: Work,
    /// Backward work of the calls whose backward ran.
    pub backward: Work,
    /// The same calls' time by shape, `[first input's dims] -> [output's dims]` (the output's
    /// alone for an op without inputs): which layers of a network spend an op's time.
    pub shapes: BTreeMap<String, ShapeProfile>,
}

/// An op's calls at one shape ([`OpProfile::shapes`]): how many, and their forward and backward
/// seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShapeProfile {
    /// Calls recorded.
    pub calls: usize,
    /// Forward seconds, as [`OpProfile::forward_seconds`] counts them.
    pub forward_seconds: f64,
    /// Backward seconds, as [`OpProfile::backward_seconds`] counts them.
    pub backward_seconds: f64,
}

impl OpProfile {
    /// Counts one call whose forward took `seconds` and did `work`.
    pub fn add_forward(&mut self, seconds: f64, work: Work) {
        self.calls += 1;
        self.forward_seconds += seconds;
        self.forward += work;
    }
}

/// Totals per op name (`conv2d_bn`, `leaf`, ...) since profiling was switched on or last taken.
pub type Profile = BTreeMap<&'static str, OpProfile>;
