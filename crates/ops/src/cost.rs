//! What the ops tell a profiling tape they cost ([`autograd::Cost`]): the arithmetic, and the
//! compulsory memory traffic (every tensor an op reads or writes, once per pass; a gradient that is
//! accumulated into is read and written). The lower bound a kernel could reach, not what ours do.
use autograd::{Cost, Work};
use kernels::conv::ConvGeom;

/// A dense or depthwise convolution, as [`linear_map`].
pub(crate) fn conv(g: &ConvGeom) -> Cost {
    let macs = (g.y_len() * (g.c_in / g.groups) * g.kh * g.kw) as f64;
    linear_map(macs, g.x_len() as f64, g.w_len() as f64, g.y_len() as f64)
}

/// An op whose output is a weighted sum of its input (a conv, FactorizedReduce) with `macs`
/// multiply-adds over x, w and y values: 2 flops per multiply-add forward; the backward computes
/// both dx and dW (twice the forward's arithmetic), reads dy, x and w and reads and writes dx
/// and dW.
pub(crate) fn linear_map(macs: f64, x: f64, w: f64, y: f64) -> Cost {
    Cost {
        forward: Work::new(2.0 * macs, x + w + y),
        backward: Work::new(4.0 * macs, y + x + w + 2.0 * (x + w)),
    }
}

/// Max or average pooling over kh x kw windows: one comparison or add per window tap; the max
/// pool writes each output's argmax (one byte: a quarter of a value) and its backward scatters
/// each output gradient to it (read along with dy).
pub(crate) fn pool(g: &ConvGeom, max: bool) -> Cost {
    let (x, y) = (g.x_len() as f64, g.y_len() as f64);
    let taps = (g.kh * g.kw) as f64;
    let argmax = if max { y / 4.0 } else { 0.0 };
    Cost {
        forward: Work::new(y * taps, x + y + argmax),
        backward: if max {
            Work::new(y, y + argmax + 2.0 * x)
        } else {
            Work::new(y * taps, y + 2.0 * x)
        },
    }
}

/// A batch norm over `n` values: statistics (mean, variance) and the normalisation forward, the
/// training-mode VJP (two reductions and the combination) backward.
pub(crate) fn batch_norm(n: usize) -> Cost {
    let n = n as f64;
    Cost {
        forward: Work::new(7.0 * n, 2.0 * n),
        backward: Work::new(8.0 * n, 4.0 * n),
    }
}

/// An op followed by a fused batch norm over its `n` outputs: both parts' arithmetic; the
/// intermediate is written and read once more.
pub(crate) fn then_bn(op: Cost, n: usize) -> Cost {
    let bn = batch_norm(n);
    Cost {
        forward: Work {
            flops: op.forward.flops + bn.forward.flops,
            bytes: op.forward.bytes + bn.forward.bytes,
        },
        backward: Work {
            flops: op.backward.flops + bn.backward.flops,
            bytes: op.backward.bytes + bn.backward.bytes,
        },
    }
}
