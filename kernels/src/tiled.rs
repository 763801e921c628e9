//! Padded planes and register tiles: the engine behind the depthwise-conv and pooling fast paths.
//!
//! A plane is copied once into a stack scratch, padded on every side ([`Layout`],
//! [`Padded::frame`], [`Framed::fill`]); every output is then a reduction over the k x k taps of its window in that
//! copy, computed `R` rows by `V` vectors of 8 columns at a time so the accumulators stay in
//! registers ([`tiles`]). What a tap does is a [`TapReduce`]: a weighted sum (convolution, average
//! pool) or a max with its argmax. A strided window reads a copy split into stride phases, so every
//! tap still reads one contiguous run.
use crate::simd::{f32x8, hsum, load, store, LANES, WIDE_REGS};

/// Planes whose padded copy fits in this many values take the tiled path: 32x32 planes with the
/// widest DARTS border (5x5 filters at dilation 2) need 40x40; each kernel call zeroes one such stack
/// buffer per chunk of planes, so it stays small.
pub const PLANE_MAX: usize = 2048;

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
    /// Window dilation.
    dilation: usize,
    /// `taps[ki * k + kj]`: the index of padded (ki * d, kj * d).
    taps: [usize; MAX_K * MAX_K],
    /// The outputs (ho, wo) it was made for: every window of every tile of them lies inside.
    out: (usize, usize),
    /// The register tile (rows, vectors of 8 columns) the outputs are computed in ([`tile_for`]).
    tile: (usize, usize),
}

/// What a layout's tile loop computes; the register tile that runs fastest depends on it
/// ([`tile_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// A depthwise conv's forward (and its weight gradient, which reads the same copy).
    Conv,
    /// A depthwise conv's input gradient (a correlation of dy, masked by the fused ReLU).
    ConvGrad,
    /// The average pool, forward and backward.
    AvgPool,
    /// The max pool's forward (a max and its argmax: two accumulators a vector).
    MaxPool,
}

impl Layout {
    /// The layout of an `h x w` padded plane that a `k x k`, dilation-`d`, stride-`s` window reads to
    /// make `out` = (ho, wo) outputs in whole tiles of [`tile_for`]`(what, k, d, wo)` (the extra
    /// tile rows and columns read padding and are dropped). `None` if the tiled path does not apply.
    pub fn new(
        h: usize,
        w: usize,
        (k, d, s): (usize, usize, usize),
        out: (usize, usize),
        what: Use,
    ) -> Option<Self> {
        Self::with_tile(h, w, (k, d, s), out, tile_for(what, k, d, out.1))
    }

    /// [`Layout::new`] for tiles of `tile` = (rows, vectors).
    fn with_tile(
        h: usize,
        w: usize,
        (k, d, s): (usize, usize, usize),
        out: (usize, usize),
        tile: (usize, usize),
    ) -> Option<Self> {
        if k == 0 || out.0 == 0 || out.1 == 0 {
            return None;
        }
        let (r, v) = tile;
        let rows_out = out.0.div_ceil(r) * r;
        let cols_out = out.1.div_ceil(v * LANES) * v * LANES;
        let span = (k - 1) * d;
        let mut lay = Layout {
            rows: h.max((rows_out - 1) * s + span + 1),
            plen: w.div_ceil(s).max(cols_out + span / s),
            stride: s,
            k,
            dilation: d,
            taps: [0; MAX_K * MAX_K],
            out,
            tile,
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

    /// The 8 values of the padded plane `p` from `corner(oh, ow) + off` on.
    ///
    /// # Safety
    /// `p.len() >= self.len()`, `off` is one of [`Layout::taps`], oh is below the tile-rounded ho and
    /// ow + 8 at most the tile-rounded wo of the outputs the layout was made for: `new` sized `rows`
    /// and `plen` so that every such window lies inside `len()` values. (The callers check `p` once
    /// per plane instead of twice per load.)
    #[inline(always)]
    unsafe fn load(&self, p: &[f32], oh: usize, ow: usize, off: usize) -> f32x8 {
        self.load_at(p, self.corner(oh, ow) + off)
    }

    /// The 8 values of the padded plane `p` from index `i` on.
    ///
    /// # Safety
    /// `p.len() >= self.len()` and `i` is `corner(oh, ow) + off` for a window as in [`Layout::load`].
    #[inline(always)]
    unsafe fn load_at(&self, p: &[f32], i: usize) -> f32x8 {
        debug_assert!(i + LANES <= self.len() && self.len() <= p.len());
        crate::simd::load_at(p, i)
    }

    /// The outputs (ho, wo) the layout was made for.
    pub fn out(&self) -> (usize, usize) {
        self.out
    }

    /// What the layout was made from (its tap offsets follow from these; the tile only decides
    /// the sizes).
    fn key(&self) -> [usize; 7] {
        let (ho, wo) = self.out;
        [
            self.rows,
            self.plen,
            self.stride,
            self.k,
            self.dilation,
            ho,
            wo,
        ]
    }
}

/// The register tile (rows, vectors of 8 columns) for outputs `wo` wide of a `k x k` window at
/// dilation `d`: 8 independent accumulators, shaped to the row; where the target has 32 vector
/// registers ([`WIDE_REGS`]) and rows are wider than 16, what ran fastest for each use of a
/// 3 x 3 window. On this project's AVX-512 Zen 4, one thread, in L3, ns a 32 x 32 plane against
/// the 2 x 4 tile: the conv's forward 4 x 4 0.68x (dilation 2: 4 x 2 0.96x), its input gradient
/// 4 x 2 0.78 - 0.84x, the average pool 8 x 2 0.82 - 0.90x; 5 x 5 windows and the max pool (whose
/// accumulators are pairs) ran fastest in the 2 x 4 tile.
pub fn tile_for(what: Use, k: usize, d: usize, wo: usize) -> (usize, usize) {
    let eight = match wo.div_ceil(LANES) {
        1 => (8, 1),
        2 => (4, 2),
        _ => (2, 4),
    };
    if !WIDE_REGS || wo <= 2 * LANES || k != 3 {
        return eight;
    }
    match (what, d) {
        (Use::Conv, 1) => (4, 4),
        (Use::Conv, _) | (Use::ConvGrad, _) => (4, 2),
        (Use::AvgPool, _) => (8, 2),
        (Use::MaxPool, _) => eight,
    }
}

/// A scratch for one padded plane at a time (PLANE_MAX values, on the stack). [`Padded::frame`]
/// readies it for a run of planes of one shape ([`Framed`]), whose fills then write only each
/// plane's own values: it remembers the frame it was last readied for (layout, plane size,
/// padding, spread, pad value), and the positions a fill never writes (the border, the
/// zero-insertion gaps) are set to the pad value only when the frame changes. (Clearing the whole
/// copy for every plane was about 2.5 % of a search step; checking the frame for every plane, a
/// third of an 8 x 8 plane's fill.)
pub struct Padded {
    buf: [f32; PLANE_MAX],
    /// The frame of the last fill; `None` while every value is 0.0 (as made).
    frame: Option<Frame>,
}

/// What decides which positions of a [`Padded`] a fill writes, and the value of the others.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Frame {
    lay: [usize; 7],
    len: usize,
    w: usize,
    pad: usize,
    spread: usize,
    pad_bits: u32,
}

impl Default for Padded {
    fn default() -> Self {
        Padded {
            buf: [0.0; PLANE_MAX],
            frame: None,
        }
    }
}

impl Padded {
    /// Readies the scratch for planes of `len` values in rows `w` long, padded by `pad` on every
    /// side with `pad_value`, row i spread `spread` rows apart and column j `spread` columns apart
    /// (spread > 1 builds the zero-inserted gradient of a strided window; the gaps hold
    /// `pad_value`), laid out by `lay`.
    pub fn frame<'a>(
        &'a mut self,
        lay: &'a Layout,
        len: usize,
        w: usize,
        pad: usize,
        spread: usize,
        pad_value: f32,
    ) -> Framed<'a> {
        debug_assert!(
            spread == 1 || lay.stride == 1,
            "zero insertion needs a stride-1 layout"
        );
        let frame = Frame {
            lay: lay.key(),
            len,
            w,
            pad,
            spread,
            pad_bits: pad_value.to_bits(),
        };
        let clear = match self.frame {
            Some(last) => last != frame,
            None => pad_value.to_bits() != 0,
        };
        if clear {
            self.buf[..lay.len()].fill(pad_value);
        }
        self.frame = Some(frame);
        Framed {
            buf: &mut self.buf,
            lay,
            len,
            w,
            pad,
            spread,
        }
    }
}

/// A [`Padded`] readied for one frame by [`Padded::frame`]: each [`Framed::fill`] copies a plane in.
pub struct Framed<'a> {
    buf: &'a mut [f32; PLANE_MAX],
    lay: &'a Layout,
    len: usize,
    w: usize,
    pad: usize,
    spread: usize,
}

impl Framed<'_> {
    /// Copies `map(v)` of every value v of the plane `x` in, where the frame places it, and
    /// returns the padded plane.
    #[inline(always)]
    pub fn fill(&mut self, x: &[f32], map: impl Fn(f32) -> f32) -> &[f32] {
        assert_eq!(x.len(), self.len, "a plane of another frame");
        let Framed {
            lay,
            w,
            pad,
            spread,
            ..
        } = *self;
        let buf = &mut self.buf[..lay.len()];
        for (i, row) in x.chunks(w).enumerate() {
            let r = pad + i * spread;
            if lay.stride == 1 && spread == 1 {
                let out = &mut buf[lay.at(r, pad)..][..w];
                for (o, &v) in out.iter_mut().zip(row) {
                    *o = map(v);
                }
            } else if spread == 1 {
                // Stride 2: column c = pad + j lands in phase c % 2 at offset c / 2, so columns j
                // and j + 1 go to the two phases side by side.
                let (ph0, ph1) = buf[r * lay.row_len()..][..2 * lay.plen].split_at_mut(lay.plen);
                let (first, second) = if pad.is_multiple_of(2) {
                    (&mut ph0[pad / 2..], &mut ph1[pad / 2..])
                } else {
                    (&mut ph1[pad / 2..], &mut ph0[pad / 2 + 1..])
                };
                let pairs = row.chunks_exact(2);
                if let [last] = pairs.remainder() {
                    first[w / 2] = map(*last);
                }
                for ((a, b), pair) in first.iter_mut().zip(second).zip(pairs) {
                    *a = map(pair[0]);
                    *b = map(pair[1]);
                }
            } else {
                // Zero insertion (a stride-1 layout): column j lands at pad + j * spread.
                let out = &mut buf[lay.at(r, pad)..];
                for (j, &v) in row.iter().enumerate() {
                    out[j * spread] = map(v);
                }
            }
        }
        &self.buf[..]
    }
}

/// What one tap does to an accumulator: `fold(acc, tap(t), v)` folds in the 8 values `v` of tap
/// `t`; `tap(t)` is tap t's constant (a weight, an id) as a vector.
pub trait TapReduce {
    type Acc: Copy;
    type Tap: Copy;
    fn init(&self) -> Self::Acc;
    fn tap(&self, t: usize) -> Self::Tap;
    fn fold(acc: Self::Acc, tap: Self::Tap, v: f32x8) -> Self::Acc;
}

/// The weighted sum `sum_t w[t] * v_t` (fused multiply-adds in tap order).
pub struct Weighted<'a>(pub &'a [f32]);

impl TapReduce for Weighted<'_> {
    type Acc = f32x8;
    type Tap = f32x8;
    #[inline(always)]
    fn init(&self) -> f32x8 {
        f32x8::ZERO
    }
    #[inline(always)]
    fn tap(&self, t: usize) -> f32x8 {
        f32x8::splat(self.0[t])
    }
    #[inline(always)]
    fn fold(acc: f32x8, w: f32x8, v: f32x8) -> f32x8 {
        w.mul_add(v, acc)
    }
}

/// The maximum and, per lane, `ids[t]` of the first tap (in tap order) that holds it.
pub struct MaxArg<'a>(pub &'a [f32]);

impl TapReduce for MaxArg<'_> {
    type Acc = (f32x8, f32x8);
    type Tap = f32x8;
    #[inline(always)]
    fn init(&self) -> Self::Acc {
        (f32x8::splat(f32::NEG_INFINITY), f32x8::splat(self.0[0]))
    }
    #[inline(always)]
    fn tap(&self, t: usize) -> f32x8 {
        f32x8::splat(self.0[t])
    }
    #[inline(always)]
    fn fold((best, id): Self::Acc, tap_id: f32x8, v: f32x8) -> Self::Acc {
        let more = v.simd_gt(best);
        (more.select(v, best), more.select(tap_id, id))
    }
}

/// Hands a tile's accumulators to `emit(oh, ow0, acc)`, those of outputs inside (ho, wo) only.
/// With `WHOLE`, a tile that lies inside takes a branch that emits every accumulator without a
/// test: the unrolled [`rows_of`] needs it, else the compiler moves the multiply-adds of each
/// accumulator behind that accumulator's test, where they run as one dependent chain after another
/// (at half speed; [`tiles_of`]'s loop keeps them in place).
#[inline(always)]
fn emit_tile<A: Copy, const R: usize, const V: usize, const WHOLE: bool>(
    (ho, wo): (usize, usize),
    (oh0, ow0): (usize, usize),
    acc: &[[A; V]; R],
    emit: &mut impl FnMut(usize, usize, A),
) {
    // Constant indices only, so that the accumulators stay in registers through the emits instead
    // of going through the stack.
    #[allow(clippy::needless_range_loop)]
    if WHOLE && oh0 + R <= ho && ow0 + V * LANES <= wo {
        for r in 0..R {
            for v in 0..V {
                emit(oh0 + r, ow0 + v * LANES, acc[r][v]);
            }
        }
    } else {
        for r in 0..R {
            for v in 0..V {
                if oh0 + r < ho && ow0 + v * LANES < wo {
                    emit(oh0 + r, ow0 + v * LANES, acc[r][v]);
                }
            }
        }
    }
}

/// The tile loop for any window side: one tap at a time over the whole tile.
#[inline(always)]
fn tiles_of<Op: TapReduce, const R: usize, const V: usize>(
    lay: &Layout,
    p: &[f32],
    op: &Op,
    mut emit: impl FnMut(usize, usize, Op::Acc),
) {
    let (ho, wo) = lay.out;
    assert!(p.len() >= lay.len(), "padded plane shorter than its layout");
    for oh0 in (0..ho).step_by(R) {
        for ow0 in (0..wo).step_by(V * LANES) {
            let mut acc = [[op.init(); V]; R];
            for (t, &off) in lay.taps().iter().enumerate() {
                let tap = op.tap(t);
                for (r, acc) in acc.iter_mut().enumerate() {
                    for (v, a) in acc.iter_mut().enumerate() {
                        // SAFETY: p is long enough (asserted), off is a tap, and oh0 + r and
                        // ow0 + (v + 1) * 8 stay within the tiles covering the layout's outputs.
                        let x = unsafe { lay.load(p, oh0 + r, ow0 + v * LANES, off) };
                        *a = Op::fold(*a, tap, x);
                    }
                }
            }
            emit_tile::<_, R, V, false>((ho, wo), (oh0, ow0), &acc, &mut emit);
        }
    }
}

/// The tile loop for a `K x K` window at stride 1 and dilation `D`: it walks the padded rows a
/// tile reads, loads each row's K x V vectors once and folds them into every tile row that reads
/// that padded row (tile row r reads padded row q = r + ki * D through filter row ki). At dilation
/// 1 with 2 tile rows, a 3 x 3 window loads 4 rows of vectors instead of 6. Every output still
/// takes its taps in tap order (ki, then kj): the bits of [`tiles_of`]. (All of it constants, so
/// that the loops unroll and the joins resolve at compile time.)
#[inline(always)]
fn rows_of<Op: TapReduce, const K: usize, const R: usize, const V: usize, const D: usize>(
    lay: &Layout,
    p: &[f32],
    op: &Op,
    emit: impl FnMut(usize, usize, Op::Acc),
) {
    // A 3 x 3 window's taps are made once and stay in registers; 25 do not fit beside a tile's
    // accumulators and loads, so a 5 x 5 window's are made at each use (a broadcast from memory,
    // a load like any other: 5 x 5 tiles ran 10 - 25 % faster that way, 3 x 3 ones slower).
    if K <= 3 {
        let made: [[Op::Tap; K]; K] =
            std::array::from_fn(|ki| std::array::from_fn(|kj| op.tap(ki * K + kj)));
        rows_with::<Op, K, R, V, D>(lay, p, op, |ki, kj| made[ki][kj], emit)
    } else {
        rows_with::<Op, K, R, V, D>(lay, p, op, |ki, kj| op.tap(ki * K + kj), emit)
    }
}

/// [`rows_of`]'s loop, with tap (ki, kj)'s constant from `tap`.
#[inline(always)]
fn rows_with<Op: TapReduce, const K: usize, const R: usize, const V: usize, const D: usize>(
    lay: &Layout,
    p: &[f32],
    op: &Op,
    tap: impl Fn(usize, usize) -> Op::Tap,
    mut emit: impl FnMut(usize, usize, Op::Acc),
) {
    let (ho, wo) = lay.out;
    let row_len = lay.row_len();
    assert!(
        (lay.k, lay.stride, lay.dilation) == (K, 1, D) && p.len() >= lay.len(),
        "padded plane shorter than its layout"
    );
    for oh0 in (0..ho).step_by(R) {
        for ow0 in (0..wo).step_by(V * LANES) {
            let mut acc = [[op.init(); V]; R];
            let corner = lay.corner(oh0, ow0);
            for q in 0..R + (K - 1) * D {
                // The filter row by which tile row r reads padded row q, if it does.
                let join = |r: usize| {
                    let e = q.wrapping_sub(r);
                    (e % D == 0 && e / D < K).then_some(e / D)
                };
                if (0..R).all(|r| join(r).is_none()) {
                    continue;
                }
                // SAFETY: p is long enough (asserted); padded row q of this tile is row
                // oh0 + r + ki * D for a tile row r below the tile-rounded ho, and column
                // kj * D + ow0 + (v + 1) * 8 is within the tile-rounded wo's windows: such windows
                // lie inside the layout (`Layout::new`).
                let at = corner + q * row_len;
                let xs: [[f32x8; V]; K] = std::array::from_fn(|kj| {
                    std::array::from_fn(|v| unsafe { lay.load_at(p, at + kj * D + v * LANES) })
                });
                #[allow(clippy::needless_range_loop)]
                for r in 0..R {
                    if let Some(ki) = join(r) {
                        for kj in 0..K {
                            for v in 0..V {
                                acc[r][v] = Op::fold(acc[r][v], tap(ki, kj), xs[kj][v]);
                            }
                        }
                    }
                }
            }
            emit_tile::<_, R, V, true>((ho, wo), (oh0, ow0), &acc, &mut emit);
        }
    }
}

/// Reduces every output window of the padded plane `p` with `op`, in the layout's register tiles
/// ([`tile_for`]), for the outputs the layout was made for; `emit(oh, ow0, acc)` receives
/// outputs ow0..ow0 + 8 of row oh (lanes at or beyond wo are padding: the caller drops them).
/// At stride 1, 3 x 3 and 5 x 5 windows take `rows_of` (but for 5 x 5 at dilation 2 on rows 8
/// wide, which ran slower that way: more registers than there are); the rest `tiles_of`. Where the
/// target has 16 vector registers ([`WIDE_REGS`]), only 3 x 3 windows take `rows_of`: a 5 x 5
/// window's rows (5 V vectors beside 8 accumulators) spill there (on an AVX2 Zen 3, in cache, one
/// thread: 5 x 5 windows 1.1 - 1.4x faster by `tiles_of`; 3 x 3 windows 0.7 - 0.9x). On either,
/// 3 x 3 at dilation 2 in the 8 x 1 tile (rows 8 wide) takes `tiles_of`: its 12 padded rows each
/// meet at most 3 of the 8 tile rows (Zen 3: 1.2 - 1.4x faster; AVX-512 Zen 4, 8 x 8 planes:
/// forward 1.58x, input gradient 1.43x).
pub fn tiles<Op: TapReduce>(
    lay: &Layout,
    p: &[f32],
    op: &Op,
    emit: impl FnMut(usize, usize, Op::Acc),
) {
    let shape = lay.tile;
    let by_rows = (lay.k, lay.dilation, shape) != (3, 2, (8, 1)) && (WIDE_REGS || lay.k == 3);
    match (lay.k, lay.stride, lay.dilation, shape) {
        (3, 1, 1, (8, 1)) if by_rows => rows_of::<Op, 3, 8, 1, 1>(lay, p, op, emit),
        (3, 1, 1, (4, 2)) if by_rows => rows_of::<Op, 3, 4, 2, 1>(lay, p, op, emit),
        (3, 1, 1, (2, 4)) if by_rows => rows_of::<Op, 3, 2, 4, 1>(lay, p, op, emit),
        (3, 1, 1, (4, 4)) if by_rows => rows_of::<Op, 3, 4, 4, 1>(lay, p, op, emit),
        (3, 1, 1, (8, 2)) if by_rows => rows_of::<Op, 3, 8, 2, 1>(lay, p, op, emit),
        (3, 1, 2, (8, 1)) if by_rows => rows_of::<Op, 3, 8, 1, 2>(lay, p, op, emit),
        (3, 1, 2, (4, 2)) if by_rows => rows_of::<Op, 3, 4, 2, 2>(lay, p, op, emit),
        (3, 1, 2, (2, 4)) if by_rows => rows_of::<Op, 3, 2, 4, 2>(lay, p, op, emit),
        (5, 1, 1, (2, 4)) if by_rows => rows_of::<Op, 5, 2, 4, 1>(lay, p, op, emit),
        (5, 1, 1, (4, 2)) if by_rows => rows_of::<Op, 5, 4, 2, 1>(lay, p, op, emit),
        (5, 1, 1, (8, 1)) if by_rows => rows_of::<Op, 5, 8, 1, 1>(lay, p, op, emit),
        (5, 1, 2, (2, 4)) if by_rows => rows_of::<Op, 5, 2, 4, 2>(lay, p, op, emit),
        (5, 1, 2, (4, 2)) if by_rows => rows_of::<Op, 5, 4, 2, 2>(lay, p, op, emit),
        (_, _, _, (8, 1)) => tiles_of::<Op, 8, 1>(lay, p, op, emit),
        (_, _, _, (4, 2)) => tiles_of::<Op, 4, 2>(lay, p, op, emit),
        (_, _, _, (4, 4)) => tiles_of::<Op, 4, 4>(lay, p, op, emit),
        (_, _, _, (8, 2)) => tiles_of::<Op, 8, 2>(lay, p, op, emit),
        _ => tiles_of::<Op, 2, 4>(lay, p, op, emit),
    }
}

/// Writes the 8 values of `v` from `row[ow0]` on, clipped to the row.
#[inline(always)]
pub fn put(v: f32x8, row: &mut [f32], ow0: usize) {
    let n = (row.len() - ow0).min(LANES);
    if n == LANES {
        store(v, &mut row[ow0..]);
    } else {
        row[ow0..ow0 + n].copy_from_slice(&v.as_array()[..n]);
    }
}

/// dx += v over 8 values (`ADD`), or fewer at a row's end; with a `mask`, v only where mask > 0
/// (the fused input ReLU's backward; dx + 0.0 elsewhere, at a row's end as in a whole vector).
/// Without `ADD`, dx = 0.0 + v where it would add v (0.0 where the mask is off): the bits of adding
/// into zeros, without reading dx. A const parameter, not a flag
/// or a function pointer, so that it inlines into the tile loop.
#[inline(always)]
pub fn put_grad<const ADD: bool>(v: f32x8, dx: &mut [f32], mask: Option<&[f32]>) {
    if dx.len() == LANES {
        let v = match mask {
            Some(x) => load(x).simd_gt(f32x8::ZERO).select(v, f32x8::ZERO),
            None => v,
        };
        let base = if ADD { load(dx) } else { f32x8::ZERO };
        store(base + v, dx);
    } else {
        for (j, (d, &a)) in dx.iter_mut().zip(v.as_array()).enumerate() {
            let on = mask.is_none_or(|x| x[j] > 0.0);
            match (ADD, on) {
                (true, true) => *d += a,
                (true, false) => *d += 0.0,
                (false, true) => *d = 0.0 + a,
                (false, false) => *d = 0.0,
            }
        }
    }
}

/// `dw[t] += sum over outputs (oh, ow) of dy[oh][ow] * P[window (oh, ow) + tap t]`, for
/// every tap t at once (the weight gradient of a correlation). Padded row r meets output row oh
/// through filter row ki when r = oh * s + ki * d, so the pass slides down the padded rows: each
/// 8-column vector of row r is loaded once per filter column and meets the dy vectors of every
/// output row it serves, k x k register accumulators (2 / k loads per multiply-add instead of one).
/// Columns past the last whole vector: one scalar sum per tap. Each tap's sum runs over (oh, ow) in
/// row-major order, whatever the layout.
pub fn tap_dots(lay: &Layout, p: &[f32], dy: &[f32], dw: &mut [f32]) {
    match lay.k {
        1 => tap_dots_of::<1, 1>(lay, p, dy, dw),
        2 => tap_dots_of::<2, 2>(lay, p, dy, dw),
        3 => tap_dots_of::<3, 3>(lay, p, dy, dw),
        4 => tap_dots_of::<4, 4>(lay, p, dy, dw),
        5 => tap_dots_of::<5, 3>(lay, p, dy, dw),
        6 => tap_dots_of::<6, 3>(lay, p, dy, dw),
        _ => tap_dots_of::<7, 3>(lay, p, dy, dw),
    }
}

/// [`tap_dots`] for a k x k window, `G` filter rows per slide down the plane (G x K accumulators,
/// K loaded vectors and one dy vector stay in registers).
#[inline(always)]
fn tap_dots_of<const K: usize, const G: usize>(
    lay: &Layout,
    p: &[f32],
    dy: &[f32],
    dw: &mut [f32],
) {
    let (ho, wo) = lay.out;
    let (s, d, row_len) = (lay.stride, lay.dilation, lay.row_len());
    assert!(lay.k == K && p.len() >= lay.len() && dy.len() == ho * wo && dw.len() == K * K);
    // Where filter column kj starts inside a padded row (its stride phase and offset).
    let col: [usize; K] = std::array::from_fn(|kj| lay.taps[kj]);
    let (n8, rows) = (wo / LANES * LANES, (ho - 1) * s + (K - 1) * d + 1);
    let mut tail = [[0.0f32; K]; K];
    if n8 < wo {
        for (oh, dyr) in dy.chunks_exact(wo).enumerate() {
            for (ki, tail) in tail.iter_mut().enumerate() {
                let row = lay.corner(oh, 0) + lay.taps[ki * K];
                for ow in n8..wo {
                    for (a, &c) in tail.iter_mut().zip(&col) {
                        *a += dyr[ow] * p[row + c + ow];
                    }
                }
            }
        }
    }
    for ki0 in (0..K).step_by(G) {
        let mut acc = [[f32x8::ZERO; K]; G];
        for r in 0..rows {
            // The output row that padded row r meets through filter row ki0 + g, if any.
            let (mut meets, mut oh) = ([false; G], [0usize; G]);
            for g in 0..G {
                let ki = ki0 + g;
                if let Some(q) = r.checked_sub(ki * d) {
                    // The stride is 1 or 2 (`Layout::new`): a mask and a shift, no division.
                    let o = q >> (s - 1);
                    (meets[g], oh[g]) = (ki < K && q & (s - 1) == 0 && o < ho, o);
                }
            }
            if !meets.contains(&true) {
                continue;
            }
            // The dy rows this padded row meets, sliced once per row, not per vector (row 0
            // stands in, unread, for a filter row it does not meet).
            let dyr: [&[f32]; G] =
                std::array::from_fn(|g| &dy[if meets[g] { oh[g] * wo } else { 0 }..][..wo]);
            // Vector v of the K filter columns' runs in padded row r.
            let load_row = |v: usize| -> [f32x8; K] {
                let at = r * row_len + v * LANES;
                // SAFETY: p is long enough (asserted); r = oh * s + ki * d for an output row
                // oh < ho, and (v + 1) * 8 <= wo: such windows lie inside the layout (`new`).
                std::array::from_fn(|kj| unsafe { lay.load_at(p, at + col[kj]) })
            };
            if meets.iter().all(|&m| m) {
                // Rows away from the plane's edges meet every filter row of the group: no tests.
                for v in 0..n8 / LANES {
                    let pv = load_row(v);
                    for g in 0..G {
                        let dv = load(&dyr[g][v * LANES..]);
                        for kj in 0..K {
                            acc[g][kj] = dv.mul_add(pv[kj], acc[g][kj]);
                        }
                    }
                }
            } else {
                for v in 0..n8 / LANES {
                    let pv = load_row(v);
                    for g in 0..G {
                        if meets[g] {
                            let dv = load(&dyr[g][v * LANES..]);
                            for kj in 0..K {
                                acc[g][kj] = dv.mul_add(pv[kj], acc[g][kj]);
                            }
                        }
                    }
                }
            }
        }
        for (ki, acc) in (ki0..K).zip(&acc) {
            for (kj, &a) in acc.iter().enumerate() {
                dw[ki * K + kj] += hsum(a) + tail[ki][kj];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every output of a tile loop, as bits: (row, column, sum or max, argmax id).
    fn collect<A>(
        run: impl FnOnce(&mut dyn FnMut(usize, usize, A)),
        bits: impl Fn(A) -> [u32; 2 * LANES],
    ) -> Vec<(usize, usize, [u32; 2 * LANES])> {
        let mut out = Vec::new();
        run(&mut |oh, ow0, acc| out.push((oh, ow0, bits(acc))));
        out
    }

    /// [`rows_of`] against [`tiles_of`] for one window and dilation, in every tile shape
    /// [`tile_for`] picks, weighted and max: the same bits in the same order.
    fn rows_equal_taps<const K: usize, const D: usize>(
        ho: usize,
        wo: usize,
        plane: &[f32],
        w: &[f32],
    ) {
        let (h, wd) = (ho + (K - 1) * D, wo + (K - 1) * D);
        let ids: Vec<f32> = (0..K * K).map(|t| t as f32).collect();
        let sum = |a: f32x8| {
            let mut b = [0; 2 * LANES];
            for (o, v) in b.iter_mut().zip(a.as_array()) {
                *o = v.to_bits();
            }
            b
        };
        let max = |(m, id): (f32x8, f32x8)| {
            let mut b = sum(m);
            for (o, v) in b[LANES..].iter_mut().zip(id.as_array()) {
                *o = v.to_bits();
            }
            b
        };
        let x = &plane[..h * wd];
        macro_rules! both {
            ($r:literal, $v:literal) => {{
                let lay = Layout::with_tile(h, wd, (K, D, 1), (ho, wo), ($r, $v)).unwrap();
                let mut buf = Padded::default();
                let p = buf
                    .frame(&lay, x.len(), wd, 0, 1, 0.0)
                    .fill(x, |v| v)
                    .to_vec();
                let op = Weighted(w);
                let rows = collect(|e| rows_of::<_, K, $r, $v, D>(&lay, &p, &op, e), sum);
                let taps = collect(|e| tiles_of::<_, $r, $v>(&lay, &p, &op, e), sum);
                assert_eq!(rows, taps, "k {K} d {D} tile {}x{} out {ho}x{wo}", $r, $v);
                let op = MaxArg(&ids);
                let rows = collect(|e| rows_of::<_, K, $r, $v, D>(&lay, &p, &op, e), max);
                let taps = collect(|e| tiles_of::<_, $r, $v>(&lay, &p, &op, e), max);
                assert_eq!(rows, taps, "k {K} d {D} tile {}x{} out {ho}x{wo}", $r, $v);
            }};
        }
        both!(8, 1);
        both!(4, 2);
        both!(2, 4);
        both!(4, 4);
        both!(8, 2);
    }

    proptest! {
        #[test]
        fn rows_of_gives_the_bits_of_tiles_of(
            ho in 1usize..12,
            wo in prop_oneof![Just(8usize), Just(16), Just(32), 1usize..34],
            plane in crate::testutil::vec_f32(20 * 41),
            w in crate::testutil::vec_f32(25),
        ) {
            // Repeated values, so that max ties (the first tap in tap order wins) happen.
            let plane: Vec<f32> = plane.iter().map(|v| (v * 4.0).round() / 4.0).collect();
            rows_equal_taps::<3, 1>(ho, wo, &plane, &w);
            rows_equal_taps::<3, 2>(ho, wo, &plane, &w);
            rows_equal_taps::<5, 1>(ho, wo, &plane, &w);
            rows_equal_taps::<5, 2>(ho, wo, &plane, &w);
        }
    }

    /// The tiles the measurements chose (a wrong pick keeps the bits and loses only speed, so
    /// only this test sees it): 8 accumulators shaped to the row, and with 32 registers, rows
    /// wider than 16 and 3 x 3 windows, each use's own.
    #[test]
    fn tile_for_picks_the_measured_tiles() {
        for wo in [1, 8, 9, 16] {
            let eight = if wo <= 8 { (8, 1) } else { (4, 2) };
            for what in [Use::Conv, Use::ConvGrad, Use::AvgPool, Use::MaxPool] {
                assert_eq!(tile_for(what, 3, 1, wo), eight);
            }
        }
        let wide = |t| if WIDE_REGS { t } else { (2, 4) };
        for wo in [17, 32, 40] {
            assert_eq!(tile_for(Use::Conv, 3, 1, wo), wide((4, 4)));
            assert_eq!(tile_for(Use::Conv, 3, 2, wo), wide((4, 2)));
            assert_eq!(tile_for(Use::ConvGrad, 3, 1, wo), wide((4, 2)));
            assert_eq!(tile_for(Use::ConvGrad, 3, 2, wo), wide((4, 2)));
            assert_eq!(tile_for(Use::AvgPool, 3, 1, wo), wide((8, 2)));
            assert_eq!(tile_for(Use::MaxPool, 3, 1, wo), (2, 4));
            for what in [Use::Conv, Use::ConvGrad, Use::AvgPool] {
                assert_eq!(tile_for(what, 5, 1, wo), (2, 4));
            }
        }
    }

    /// A [`Padded`] filled in one frame and then another holds what a fresh one filled in the
    /// second frame holds: a new pad value, a new spread (gaps) and a new layout each clear it.
    #[test]
    fn a_reused_padded_copy_equals_a_fresh_one() {
        let x: Vec<f32> = (0..16).map(|i| i as f32 - 7.5).collect();
        let y: Vec<f32> = (0..16).map(|i| 0.25 * i as f32 + 1.0).collect();
        let big = Layout::new(10, 10, (3, 1, 1), (8, 8), Use::Conv).unwrap();
        let small = Layout::new(6, 6, (3, 1, 1), (4, 4), Use::Conv).unwrap();
        type Fill<'a> = (&'a Layout, &'a [f32], usize, f32);
        let frames: [Fill; 5] = [
            (&big, &x, 1, f32::NEG_INFINITY),
            (&big, &y, 2, 0.0),
            (&big, &x, 1, 0.0),
            (&small, &y, 1, 0.0),
            (&small, &x, 1, f32::NEG_INFINITY),
        ];
        let mut reused = Padded::default();
        for (lay, plane, spread, pad_value) in frames {
            let got = reused
                .frame(lay, 16, 4, 1, spread, pad_value)
                .fill(plane, |v| v)
                .to_vec();
            let mut fresh = Padded::default();
            let mut framed = fresh.frame(lay, 16, 4, 1, spread, pad_value);
            let want = framed.fill(plane, |v| v);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(want), "spread {spread}, pad {pad_value}");
            // Corner (0, 0) is border; (pad, pad) holds the plane's first value.
            assert_eq!(want[0].to_bits(), pad_value.to_bits());
            assert_eq!(want[lay.at(1, 1)], plane[0]);
        }
    }
}
