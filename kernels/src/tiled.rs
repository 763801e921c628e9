//! Padded planes and register tiles: the engine behind the depthwise-conv and pooling fast paths.
//!
//! A plane is copied once into a stack scratch, padded on every side ([`Layout`], [`fill`]); every
//! output is then a reduction over the k x k taps of its window in that copy, computed `R` rows by `V`
//! vectors of 8 columns at a time so the accumulators stay in registers ([`tiles`]). What a tap does
//! is a [`TapReduce`]: a weighted sum (convolution, average pool) or a max with its argmax. A strided
//! window reads a copy split into stride phases, so every tap still reads one contiguous run.
use crate::simd::{f32x8, load, LANES};

/// Planes whose padded copy fits in this many values (64x64 with its borders) take the tiled path.
pub const PLANE_MAX: usize = 4096;

/// The largest window side of the tiled path.
pub const MAX_K: usize = 7;

/// Where a padded copy of one plane lives in a scratch buffer: `rows` rows of `stride` phases, phase
/// r of a row holding padded columns r, r + s, r + 2s, ... (`plen` of them); tap column t is phase
/// t % s from offset t / s. It also holds every tap's offset from its window's corner, so the inner
/// loops never divide.
#[derive(Clone, Copy)]
pub struct Layout {
    rows: usize,
    plen: usize,
    stride: usize,
    /// Window side.
    k: usize,
    /// `taps[ki * k + kj]`: the index of padded (ki * d, kj * d).
    taps: [usize; MAX_K * MAX_K],
}

impl Layout {
    /// The layout of an `h x w` padded plane that a `k x k`, dilation-`d`, stride-`s` window reads to
    /// make `out` = (ho, wo) outputs in whole tiles of [`tile_shape`]`(wo)` (the extra tile rows and
    /// columns read padding and are dropped). `None` if the tiled path does not apply.
    pub fn new(
        h: usize,
        w: usize,
        k: usize,
        d: usize,
        s: usize,
        out: (usize, usize),
    ) -> Option<Self> {
        let (r, v) = tile_shape(out.1);
        let rows_out = out.0.div_ceil(r) * r;
        let cols_out = out.1.div_ceil(v * LANES) * v * LANES;
        let span = (k - 1) * d;
        let mut lay = Layout {
            rows: h.max((rows_out - 1) * s + span + 1),
            plen: w.div_ceil(s).max(cols_out + span / s),
            stride: s,
            k,
            taps: [0; MAX_K * MAX_K],
        };
        if !(1..=2).contains(&s) || k > MAX_K || lay.len() > PLANE_MAX {
            return None;
        }
        for ki in 0..k {
            for kj in 0..k {
                lay.taps[ki * k + kj] = lay.at(ki * d, kj * d);
            }
        }
        Some(lay)
    }

    fn len(&self) -> usize {
        self.rows * self.row_len()
    }

    /// Values in one padded row (all its phases).
    fn row_len(&self) -> usize {
        self.stride * self.plen
    }

    /// Index of padded (row, column t), the start of the run t, t + s, t + 2s, ...
    fn at(&self, row: usize, t: usize) -> usize {
        row * self.row_len() + (t % self.stride) * self.plen + t / self.stride
    }

    /// The taps' offsets from a window's corner, row-major.
    pub fn taps(&self) -> &[usize] {
        &self.taps[..self.k * self.k]
    }

    /// Index of the corner of output (oh, ow)'s window.
    #[inline(always)]
    pub fn corner(&self, oh: usize, ow: usize) -> usize {
        oh * self.stride * self.row_len() + ow
    }
}

/// Output tile (rows, vectors of 8 columns) for rows `wo` wide: 8 independent accumulators.
pub fn tile_shape(wo: usize) -> (usize, usize) {
    match wo.div_ceil(LANES) {
        1 => (8, 1),
        2 => (4, 2),
        _ => (2, 4),
    }
}

/// Copies `map(i, j, x[i][j])` for the `h x w` plane `x` into `buf`, padded by `pad` on every side
/// with `pad_value`, its row i spread `spread` rows apart and its column j `spread` columns apart
/// (spread > 1 builds the zero-inserted gradient of a strided window; the gaps hold `pad_value`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn fill(
    lay: &Layout,
    x: &[f32],
    w: usize,
    pad: usize,
    spread: usize,
    pad_value: f32,
    map: impl Fn(usize, usize, f32) -> f32,
    buf: &mut [f32],
) {
    let buf = &mut buf[..lay.len()];
    buf.fill(pad_value);
    for (i, row) in x.chunks(w).enumerate() {
        let r = pad + i * spread;
        if lay.stride == 1 && spread == 1 {
            let out = &mut buf[lay.at(r, pad)..][..w];
            for (j, (o, &v)) in out.iter_mut().zip(row).enumerate() {
                *o = map(i, j, v);
            }
        } else {
            // Column c lands in phase c % s at offset c / s (s is 1 or 2: no division).
            let (base, half) = (r * lay.row_len(), lay.stride == 2);
            for (j, &v) in row.iter().enumerate() {
                let c = pad + j * spread;
                let at = if half {
                    (c & 1) * lay.plen + (c >> 1)
                } else {
                    c
                };
                buf[base + at] = map(i, j, v);
            }
        }
    }
}

/// What one tap does to an accumulator: `tap(acc, t, v)` folds in the 8 values `v` of tap `t`.
pub trait TapReduce {
    type Acc: Copy;
    fn init(&self) -> Self::Acc;
    fn tap(&self, acc: Self::Acc, t: usize, v: f32x8) -> Self::Acc;
}

/// The weighted sum `sum_t w[t] * v_t` (fused multiply-adds in tap order).
pub struct Weighted<'a>(pub &'a [f32]);

impl TapReduce for Weighted<'_> {
    type Acc = f32x8;
    #[inline(always)]
    fn init(&self) -> f32x8 {
        f32x8::ZERO
    }
    #[inline(always)]
    fn tap(&self, acc: f32x8, t: usize, v: f32x8) -> f32x8 {
        f32x8::splat(self.0[t]).mul_add(v, acc)
    }
}

/// The maximum and, per lane, `ids[t]` of the first tap (in tap order) that holds it.
pub struct MaxArg<'a>(pub &'a [f32]);

impl TapReduce for MaxArg<'_> {
    type Acc = (f32x8, f32x8);
    #[inline(always)]
    fn init(&self) -> Self::Acc {
        (f32x8::splat(f32::NEG_INFINITY), f32x8::splat(self.0[0]))
    }
    #[inline(always)]
    fn tap(&self, (best, id): Self::Acc, t: usize, v: f32x8) -> Self::Acc {
        let more = v.simd_gt(best);
        (
            more.select(v, best),
            more.select(f32x8::splat(self.0[t]), id),
        )
    }
}

#[inline(always)]
fn tiles_of<Op: TapReduce, const R: usize, const V: usize>(
    lay: &Layout,
    p: &[f32],
    op: &Op,
    (ho, wo): (usize, usize),
    mut emit: impl FnMut(usize, usize, Op::Acc),
) {
    for oh0 in (0..ho).step_by(R) {
        for ow0 in (0..wo).step_by(V * LANES) {
            let mut acc = [[op.init(); V]; R];
            for (t, &off) in lay.taps().iter().enumerate() {
                for (r, acc) in acc.iter_mut().enumerate() {
                    let base = lay.corner(oh0 + r, ow0) + off;
                    let run = &p[base..base + V * LANES];
                    for (v, a) in acc.iter_mut().enumerate() {
                        *a = op.tap(*a, t, load(&run[v * LANES..]));
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate().take(ho - oh0) {
                for (v, a) in acc.iter().enumerate() {
                    if ow0 + v * LANES < wo {
                        emit(oh0 + r, ow0 + v * LANES, *a);
                    }
                }
            }
        }
    }
}

/// Reduces every output window of the padded plane `p` with `op`, in register tiles of the shape
/// [`tile_shape`] picks; `emit(oh, ow0, acc)` receives outputs ow0..ow0 + 8 of row oh (lanes at or
/// beyond `wo` are padding: the caller drops them).
pub fn tiles<Op: TapReduce>(
    lay: &Layout,
    p: &[f32],
    op: &Op,
    out: (usize, usize),
    emit: impl FnMut(usize, usize, Op::Acc),
) {
    match tile_shape(out.1) {
        (8, 1) => tiles_of::<Op, 8, 1>(lay, p, op, out, emit),
        (4, 2) => tiles_of::<Op, 4, 2>(lay, p, op, out, emit),
        _ => tiles_of::<Op, 2, 4>(lay, p, op, out, emit),
    }
}

/// Writes the 8 values of `v` from `row[ow0]` on, clipped to the row.
#[inline(always)]
pub fn put(v: f32x8, row: &mut [f32], ow0: usize) {
    let n = (row.len() - ow0).min(LANES);
    row[ow0..ow0 + n].copy_from_slice(&v.as_array()[..n]);
}
