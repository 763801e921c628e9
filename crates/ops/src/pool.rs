//! Max and average pooling (kxk windows, stride, zero padding; average excludes padding).
use crate::check;
use autograd::{Backward, GradSlots, Result, Tape, Tensor, Var};
use kernels::conv::{out_len, ConvGeom};
use kernels::pool as kp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// Pooling window: `kernel` x `kernel`, moved by `stride`, over an input zero-padded by `padding`
/// (padding never wins a max and is not counted in an average).
pub struct PoolOptions {
    /// Window side.
    pub kernel: usize,
    /// Step between windows, both axes.
    pub stride: usize,
    /// Padding on every side (at most half the window).
    pub padding: usize,
}

fn geometry(tape: &Tape, x: Var, o: PoolOptions, kind: Kind) -> Result<ConvGeom> {
    let op = kind.name();
    let [n, c, h, w] = check::nchw(tape, x, op)?;
    check::arg(o.kernel > 0 && o.stride > 0, op, || {
        "kernel and stride must be positive".into()
    })?;
    check::arg(
        matches!(kind, Kind::Avg) || o.kernel * o.kernel <= kp::MAX_TAPS,
        op,
        || {
            format!(
                "a {0}x{0} window has more than {1} taps (a max pool's argmax is one byte)",
                o.kernel,
                kp::MAX_TAPS
            )
        },
    )?;
    check::arg(o.padding <= o.kernel / 2, op, || {
        format!("padding {} exceeds half the kernel {}", o.padding, o.kernel)
    })?;
    let fits = out_len(h, o.kernel, o.stride, o.padding, 1).is_some()
        && out_len(w, o.kernel, o.stride, o.padding, 1).is_some();
    check::arg(fits, op, || {
        format!("a {0}x{0} window does not fit a {h}x{w} input", o.kernel)
    })?;
    Ok(ConvGeom {
        n,
        c_in: c,
        h,
        w,
        c_out: c,
        kh: o.kernel,
        kw: o.kernel,
        stride: o.stride,
        pad: o.padding,
        dilation: 1,
        groups: 1,
        pre_relu: false,
    })
}

struct MaxBack(ConvGeom, Vec<u8>);
impl Backward for MaxBack {
    /// dx[argmax] += dy.
    fn backward(&self, _: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        if let Some(dx) = grads[0].as_mut() {
            kp::max_backward(&self.0, g.data(), &self.1, dx.data_mut());
        }
    }

    fn cost(&self, _: &[&Tensor], _: &Tensor) -> autograd::Cost {
        crate::cost::pool(&self.0, true)
    }
}

/// Max over each window; the gradient goes to the first maximum of the window.
pub fn max_pool2d(tape: &mut Tape, x: Var, o: PoolOptions) -> Result<Var> {
    Ok(pool(tape, x, o, Kind::Max, false)?.0)
}

/// [`max_pool2d`], and each output plane's BN statistics ([N, C, 2]) taken while the plane is in
/// cache, for a training-mode BN folded into the op that reads it ([`crate::Norm::BnPlanes`]).
pub fn max_pool2d_stats(tape: &mut Tape, x: Var, o: PoolOptions) -> Result<(Var, Vec<f32>)> {
    let (y, planes) = pool(tape, x, o, Kind::Max, true)?;
    Ok((y, planes.expect("asked for")))
}

struct AvgBack(ConvGeom);
impl Backward for AvgBack {
    /// dx += dy / count over each window.
    fn backward(&self, _: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        if let Some(dx) = grads[0].as_mut() {
            kp::avg_backward(&self.0, g.data(), dx.data_mut());
        }
    }

    fn cost(&self, _: &[&Tensor], _: &Tensor) -> autograd::Cost {
        crate::cost::pool(&self.0, false)
    }
}

/// Mean over the in-bounds part of each window (`count_include_pad=False`).
pub fn avg_pool2d(tape: &mut Tape, x: Var, o: PoolOptions) -> Result<Var> {
    Ok(pool(tape, x, o, Kind::Avg, false)?.0)
}

/// [`avg_pool2d`], and each output plane's BN statistics as [`max_pool2d_stats`] takes them.
pub fn avg_pool2d_stats(tape: &mut Tape, x: Var, o: PoolOptions) -> Result<(Var, Vec<f32>)> {
    let (y, planes) = pool(tape, x, o, Kind::Avg, true)?;
    Ok((y, planes.expect("asked for")))
}

/// Which pool.
#[derive(Clone, Copy)]
enum Kind {
    Max,
    Avg,
}

impl Kind {
    /// The op's name on the tape and in its errors.
    fn name(self) -> &'static str {
        match self {
            Kind::Max => "max_pool2d",
            Kind::Avg => "avg_pool2d",
        }
    }
}

/// Either pool's node, with its output planes' BN statistics if `stats`.
fn pool(
    tape: &mut Tape,
    x: Var,
    o: PoolOptions,
    kind: Kind,
    stats: bool,
) -> Result<(Var, Option<Vec<f32>>)> {
    let (op, g) = (kind.name(), geometry(tape, x, o, kind)?);
    let (ho, wo) = g.out_hw();
    let mut y = tape.buffer([g.n, g.c_in, ho, wo]);
    let mut planes = stats.then(|| vec![0.0; 2 * g.n * g.c_in]);
    let (xv, out) = (tape.value(x).data(), planes.as_deref_mut());
    let y = match kind {
        Kind::Max => {
            let mut argmax = vec![0u8; y.numel()];
            kp::max_forward(&g, xv, y.data_mut(), &mut argmax, out);
            tape.push(op, y, &[x], MaxBack(g, argmax))
        }
        Kind::Avg => {
            kp::avg_forward(&g, xv, y.data_mut(), out);
            tape.push(op, y, &[x], AvgBack(g))
        }
    };
    Ok((y, planes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check, distinct, tensor};
    use proptest::prelude::*;

    fn case() -> impl Strategy<Value = (Tensor, PoolOptions)> {
        (
            1usize..3,
            1usize..3,
            3usize..8,
            3usize..8,
            prop_oneof![Just(3usize), 1usize..6],
            1usize..3,
            0usize..3,
        )
            .prop_flat_map(|(n, c, h, w, k, s, p)| {
                (
                    tensor(vec![n, c, h, w]),
                    Just(PoolOptions {
                        kernel: k,
                        stride: s,
                        padding: p.min(k / 2),
                    }),
                )
            })
            .prop_filter("fits", |(x, o)| {
                o.kernel <= x.dims()[2] + 2 * o.padding && o.kernel <= x.dims()[3] + 2 * o.padding
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn max_pool_gradient((x, o) in case()) {
            // Distinct values 0.05 apart: no window max changes within the FD step.
            check(|t, v| max_pool2d(t, v[0], o), &[distinct(x, 0.05)], 9);
        }

        #[test]
        fn avg_pool_gradient((x, o) in case()) {
            check(|t, v| avg_pool2d(t, v[0], o), &[x], 10);
        }
    }

    /// Ties go to the first maximum in row-major window order, as PyTorch's max pool does (padding
    /// never wins). On an all-equal 4x4 plane, 3x3 windows with padding 1: the window of output
    /// (oy, ox) starts at (max(oy-1, 0), max(ox-1, 0)), so dx[r][c] = count[r] * count[c] with
    /// count = [2, 1, 1, 0] (rows 0 and 1 both start at row 0; no window starts at row 3).
    #[test]
    fn ties_go_to_the_first_maximum_in_row_major_order() {
        let mut t = Tape::new();
        let x = t.leaf(Tensor::full([1, 1, 4, 4], 0.5), true);
        let o = PoolOptions {
            kernel: 3,
            stride: 1,
            padding: 1,
        };
        let y = max_pool2d(&mut t, x, o).unwrap();
        let loss = crate::sum(&mut t, y).unwrap();
        t.backward(loss).unwrap();
        let count = [2.0, 1.0, 1.0, 0.0];
        let want: Vec<f32> = (0..16).map(|i| count[i / 4] * count[i % 4]).collect();
        assert_eq!(t.grad(x).unwrap().data(), &want[..]);
        // Stride 2, no padding: each window's first element.
        let mut t = Tape::new();
        let x = t.leaf(Tensor::full([1, 1, 4, 4], -1.0), true);
        let y = max_pool2d(
            &mut t,
            x,
            PoolOptions {
                kernel: 2,
                stride: 2,
                padding: 0,
            },
        )
        .unwrap();
        let loss = crate::sum(&mut t, y).unwrap();
        t.backward(loss).unwrap();
        let want: Vec<f32> = (0..16)
            .map(|i| {
                if (i / 4) % 2 == 0 && (i % 4) % 2 == 0 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        assert_eq!(t.grad(x).unwrap().data(), &want[..]);
    }

    #[test]
    fn window_larger_than_input_is_an_error() {
        let mut t = Tape::new();
        let x = t.leaf(Tensor::zeros([1, 1, 2, 2]), true);
        assert!(max_pool2d(
            &mut t,
            x,
            PoolOptions {
                kernel: 5,
                stride: 1,
                padding: 0
            }
        )
        .is_err());
        assert!(avg_pool2d(
            &mut t,
            x,
            PoolOptions {
                kernel: 3,
                stride: 1,
                padding: 2
            }
        )
        .is_err());
    }

    /// A max pool's argmax is one byte: a 17 x 17 window (289 taps) is refused with a message,
    /// 16 x 16 taken; an average pool has no such limit.
    #[test]
    fn max_pool_window_beyond_256_taps_is_an_error() {
        let mut t = Tape::new();
        let x = t.leaf(Tensor::zeros([1, 1, 17, 17]), true);
        let o = |kernel| PoolOptions {
            kernel,
            stride: 1,
            padding: 0,
        };
        let err = max_pool2d(&mut t, x, o(17)).unwrap_err().to_string();
        assert!(err.contains("more than 256 taps"), "{err}");
        assert!(max_pool2d(&mut t, x, o(16)).is_ok());
        assert!(avg_pool2d(&mut t, x, o(17)).is_ok());
    }
}
