//! The depthwise conv's weight gradient (and the forward that the fused separable backward makes
//! again beside it) for one sample of small planes with many channels, in channels-last layout:
//! the 8 x 8 planes of DARTS's last cells.
//!
//! A sample's C planes are copied once into a padded frame of (channel block, row, column, 8
//! channels) (the channels rounded up to `cp`, a multiple of 8, with zeros): one f32x8 holds 8
//! channels of one pixel, so each multiply-add of a window serves 8 channels, rows have no ends,
//! and a tap's weight gradient is one vector accumulator per 8 channels. Plane by plane
//! ([`crate::tiled`]) an 8 x 8 plane is one vector a row, and its weight gradient pays k k
//! horizontal sums for 64 products a tap. The copies in and out are 8 x 8 transposes. On 16 x 16
//! planes the copies cost what the windows gain: they stay with the plane tiles.
//!
//! Bits: the forward folds the taps as the plane path does (from zero, `w.mul_add(x, acc)` in tap
//! order) and writes through the same [`put`]: the same bits. The weight gradient sums each tap's
//! products over the pixels in row-major order (the plane path sums 8 columns apart first): equal
//! to rounding, and the same for any thread count.
//!
//! Shapes: planes [C, H, W] (or `ys` values apart), frames [cp / 8, H + 2 pad, W + 2 pad, 8],
//! outputs and dy [cp / 8, Ho Wo, 8], packed taps and their gradients [cp / 8, k k, 8].
use crate::conv::ConvGeom;
use crate::scratch;
use crate::simd::{f32x8, load, store, LANES, WIDE_REGS};
use crate::tiled::put;
use std::cell::RefCell;

/// Planes up to this many pixels take the channels-last path (when they have at least 8 channels
/// and a stride-1, 3 x 3 or 5 x 5 window). One thread, [64, C, 8, 8] against the plane tiles:
/// weight gradient 0.50 - 0.77x the time, with the forward beside it 0.72 - 0.85x; [64, 32, 16, 16]
/// 0.77 - 1.02x and 0.99 - 1.18x.
pub const PLANE_PIXELS_MAX: usize = 64;

/// One sample's depthwise conv in channels-last layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hwc {
    /// Channels, and the channel count rounded up to a multiple of 8.
    c: usize,
    cp: usize,
    h: usize,
    w: usize,
    k: usize,
    dilation: usize,
    pad: usize,
    relu: bool,
}

impl Hwc {
    /// The channels-last geometry of `g`, or `None` where the plane path stays: strides other
    /// than 1, windows other than 3 x 3 and 5 x 5, padding beyond the window's reach, fewer than 8
    /// channels or planes over [`PLANE_PIXELS_MAX`] pixels.
    pub fn new(g: &ConvGeom) -> Option<Hwc> {
        let (ho, wo) = g.out_hw();
        let fits = g.stride == 1
            && g.kh == g.kw
            && matches!(g.kh, 3 | 5)
            && g.pad <= (g.kh - 1) * g.dilation
            && g.c_in >= LANES
            && g.h * g.w <= PLANE_PIXELS_MAX
            && ho > 0
            && wo > 0;
        fits.then_some(Hwc {
            c: g.c_in,
            cp: g.c_in.next_multiple_of(LANES),
            h: g.h,
            w: g.w,
            k: g.kh,
            dilation: g.dilation,
            pad: g.pad,
            relu: g.pre_relu,
        })
    }

    /// The same conv on `c` of its channels (the weight gradient's channel groups).
    pub fn channels(self, c: usize) -> Hwc {
        Hwc {
            c,
            cp: c.next_multiple_of(LANES),
            ..self
        }
    }

    fn out_hw(&self) -> (usize, usize) {
        let span = (self.k - 1) * self.dilation;
        (self.h + 2 * self.pad - span, self.w + 2 * self.pad - span)
    }

    /// Values of the frame of x, and of the largest channels-last set of planes.
    fn frame_len(&self) -> usize {
        (self.h + 2 * self.pad) * (self.w + 2 * self.pad) * self.cp
    }

    /// y (its C planes `ys` apart) = the depthwise conv of x [C, H, W] with w [C, k k], and/or
    /// `grad`'s dw [C, k k] += the weight gradient from dy (planes `ys` apart).
    pub fn forward_weight_grad(
        &self,
        x: &[f32],
        w: &[f32],
        ys: usize,
        y: Option<&mut [f32]>,
        grad: Option<(&[f32], &mut [f32])>,
    ) {
        let (ho, wo) = self.out_hw();
        let (k2, cp, f) = (self.k * self.k, self.cp, self.frame_len());
        scratch::with(&FRAMES, 2 * f + k2 * cp, |s| {
            let (frame, rest) = s.split_at_mut(f);
            let (out, taps) = rest.split_at_mut(f);
            let (hw, plane, wp) = ((self.h, self.w), self.h * self.w, self.w + 2 * self.pad);
            pack(x, plane, self.c, hw, self.pad, cp, self.relu, frame);
            if let Some(y) = y {
                pack_taps(w, self.c, k2, cp, taps);
                correlate(self.k, frame, wp, cp, self.dilation, (ho, wo), taps, out);
                unpack(out, cp, self.c, ho * wo, |c, p0, v| {
                    put(v, &mut y[c * ys..][..ho * wo], p0)
                });
            }
            if let Some((dy, dw)) = grad {
                pack(dy, ys, self.c, (ho, wo), 0, cp, false, out);
                tap_grads(self.k, frame, wp, cp, self.dilation, (ho, wo), out, taps);
                for (c, dw) in dw.chunks_exact_mut(k2).take(self.c).enumerate() {
                    for (t, d) in dw.iter_mut().enumerate() {
                        *d += taps[((c / LANES) * k2 + t) * LANES + c % LANES];
                    }
                }
            }
        });
    }
}

thread_local! {
    /// Each thread's frames (see `scratch.rs`).
    static FRAMES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// dst = the `c` planes of src ([h, w] each, `ps` values apart) as [c / 8, h + 2q, w + 2q, 8]
/// (blocks of 8 channels, each block's frame pixel by pixel), through the ReLU with `relu`,
/// padded with zeros by q pixels on every side and by cp - c channels.
#[allow(clippy::too_many_arguments)]
fn pack(
    src: &[f32],
    ps: usize,
    c: usize,
    (h, w): (usize, usize),
    q: usize,
    cp: usize,
    relu: bool,
    dst: &mut [f32],
) {
    let read = |v: f32x8| if relu { v.max(f32x8::ZERO) } else { v };
    let (wp, whole) = (w + 2 * q, w / LANES * LANES);
    let row_len = wp * LANES;
    let block = (h + 2 * q) * row_len;
    for (g, dst) in dst[..cp / LANES * block]
        .chunks_exact_mut(block)
        .enumerate()
    {
        let g = g * LANES;
        let (top, rest) = dst.split_at_mut(q * row_len);
        let (rows, bottom) = rest.split_at_mut(h * row_len);
        top.fill(0.0);
        bottom.fill(0.0);
        for (ih, row) in rows.chunks_exact_mut(row_len).enumerate() {
            let (left, rest) = row.split_at_mut(q * LANES);
            let (row, right) = rest.split_at_mut(w * LANES);
            left.fill(0.0);
            right.fill(0.0);
            let at = ih * w;
            for iw in (0..whole).step_by(LANES) {
                let mut v = [f32x8::ZERO; LANES];
                for (l, v) in v.iter_mut().enumerate().take(c - g) {
                    *v = read(load(&src[(g + l) * ps + at + iw..]));
                }
                for (m, &t) in f32x8::transpose(v).iter().enumerate() {
                    store(t, &mut row[(iw + m) * LANES..]);
                }
            }
            for iw in whole..w {
                for (l, d) in row[iw * LANES..][..LANES].iter_mut().enumerate() {
                    *d = match g + l < c {
                        true if relu => src[(g + l) * ps + at + iw].max(0.0),
                        true => src[(g + l) * ps + at + iw],
                        false => 0.0,
                    };
                }
            }
        }
    }
}

/// Calls `emit(ch, p0, v)` for every channel ch < c and every 8 pixels from p0 of `src`'s `hw`
/// pixels ([cp / 8, hw, 8]): v holds channel ch of pixels p0..p0 + 8 (past hw: zeros, not to be
/// used).
fn unpack(src: &[f32], cp: usize, c: usize, hw: usize, mut emit: impl FnMut(usize, usize, f32x8)) {
    for (g, src) in src[..cp * hw].chunks_exact(hw * LANES).enumerate() {
        let g = g * LANES;
        for p0 in (0..hw).step_by(LANES) {
            let mut v = [f32x8::ZERO; LANES];
            for (m, v) in v.iter_mut().enumerate().take(hw - p0) {
                *v = load(&src[(p0 + m) * LANES..]);
            }
            for (l, &t) in f32x8::transpose(v).iter().enumerate().take(c - g) {
                emit(g + l, p0, t);
            }
        }
    }
}

/// taps [cp / 8, k k, 8] = w [c, k k] (tap t of channel ch at ((ch / 8) k k + t) 8 + ch % 8),
/// zeros past c.
fn pack_taps(w: &[f32], c: usize, k2: usize, cp: usize, taps: &mut [f32]) {
    for (g, block) in taps[..k2 * cp].chunks_exact_mut(k2 * LANES).enumerate() {
        for (t, tap) in block.chunks_exact_mut(LANES).enumerate() {
            for (l, v) in tap.iter_mut().enumerate() {
                let ch = g * LANES + l;
                *v = if ch < c { w[ch * k2 + t] } else { 0.0 };
            }
        }
    }
}

/// The blocks of a frame ([cp / 8, rows, wp, 8]), one for each 8 channels.
fn blocks(frame: &[f32], wp: usize, cp: usize, rows: usize) -> std::slice::ChunksExact<'_, f32> {
    let block = rows * wp * LANES;
    frame[..cp / LANES * block].chunks_exact(block)
}

/// One block of 8 channels of a frame, `wp` pixels a row: pixel (r, col) at (r wp + col) 8.
struct Block<'a> {
    frame: &'a [f32],
    wp: usize,
}

impl Block<'_> {
    /// The K rows a window at output row oh reads (dilation D), from their first pixel.
    #[inline(always)]
    fn rows<const K: usize, const D: usize>(&self, oh: usize) -> [&[f32]; K] {
        std::array::from_fn(|i| &self.frame[(oh + i * D) * self.wp * LANES..])
    }
}

/// out [cp / 8, ho wo, 8] = each window of the frame ([cp / 8, hp, wp, 8]) weighted by `taps`
/// ([`pack_taps`]): out[oh, ow] = the sum over taps (i, j), in order, of frame[oh + i d, ow + j d]
/// taps[i k + j].
#[allow(clippy::too_many_arguments)]
fn correlate(
    k: usize,
    frame: &[f32],
    wp: usize,
    cp: usize,
    d: usize,
    out_hw: (usize, usize),
    taps: &[f32],
    out: &mut [f32],
) {
    // 3 x 3: four outputs a tile (9 taps, 4 sums and 6 loaded pixels in registers); 5 x 5: two.
    match (k, d, WIDE_REGS) {
        (3, 1, true) => correlate_of::<3, 1, 4>(frame, wp, cp, out_hw, taps, out),
        (3, _, true) => correlate_of::<3, 2, 4>(frame, wp, cp, out_hw, taps, out),
        (3, 1, false) => correlate_of::<3, 1, 2>(frame, wp, cp, out_hw, taps, out),
        (3, _, false) => correlate_of::<3, 2, 2>(frame, wp, cp, out_hw, taps, out),
        (_, 1, _) => correlate_of::<5, 1, 2>(frame, wp, cp, out_hw, taps, out),
        _ => correlate_of::<5, 2, 2>(frame, wp, cp, out_hw, taps, out),
    }
}

fn correlate_of<const K: usize, const D: usize, const R: usize>(
    frame: &[f32],
    wp: usize,
    cp: usize,
    (ho, wo): (usize, usize),
    taps: &[f32],
    out: &mut [f32],
) {
    let span = (K - 1) * D;
    assert!(wp >= wo + span);
    let frames = blocks(frame, wp, cp, ho + span);
    let outs = out[..cp * ho * wo].chunks_exact_mut(ho * wo * LANES);
    for ((frame, out), taps) in frames.zip(outs).zip(taps.chunks_exact(K * K * LANES)) {
        let wv: [[f32x8; K]; K] =
            std::array::from_fn(|i| std::array::from_fn(|j| load(&taps[(i * K + j) * LANES..])));
        let b = Block { frame, wp };
        for oh in 0..ho {
            let rows = b.rows::<K, D>(oh);
            let out = &mut out[oh * wo * LANES..][..wo * LANES];
            let mut ow = 0;
            while ow + R <= wo {
                let mut acc = [f32x8::ZERO; R];
                for (row, wrow) in rows.iter().zip(&wv) {
                    // Row reads up to (ow + R - 1 + span) 8 + 8 <= wp 8 values: in the row.
                    let row = &row[ow * LANES..][..(R + span) * LANES];
                    for (j, &wt) in wrow.iter().enumerate() {
                        for (r, a) in acc.iter_mut().enumerate() {
                            *a = wt.mul_add(load(&row[(r + j * D) * LANES..]), *a);
                        }
                    }
                }
                for (r, a) in acc.into_iter().enumerate() {
                    store(a, &mut out[(ow + r) * LANES..]);
                }
                ow += R;
            }
            for ow in ow..wo {
                let mut acc = f32x8::ZERO;
                for (row, wrow) in rows.iter().zip(&wv) {
                    for (j, &wt) in wrow.iter().enumerate() {
                        acc = wt.mul_add(load(&row[(ow + j * D) * LANES..]), acc);
                    }
                }
                store(acc, &mut out[ow * LANES..]);
            }
        }
    }
}

/// acc [cp / 8, k k, 8] = the weight gradient of [`correlate`]: tap t of channel ch is the sum
/// over outputs (oh, ow), in row-major order, of dy[oh, ow] frame[oh + i d, ow + j d] (dy
/// [cp / 8, ho wo, 8]).
#[allow(clippy::too_many_arguments)]
fn tap_grads(
    k: usize,
    frame: &[f32],
    wp: usize,
    cp: usize,
    d: usize,
    out_hw: (usize, usize),
    dy: &[f32],
    acc: &mut [f32],
) {
    match (k, d) {
        (3, 1) => tap_grads_of::<3, 1>(frame, wp, cp, out_hw, dy, acc),
        (3, _) => tap_grads_of::<3, 2>(frame, wp, cp, out_hw, dy, acc),
        (_, 1) => tap_grads_of::<5, 1>(frame, wp, cp, out_hw, dy, acc),
        _ => tap_grads_of::<5, 2>(frame, wp, cp, out_hw, dy, acc),
    }
}

fn tap_grads_of<const K: usize, const D: usize>(
    frame: &[f32],
    wp: usize,
    cp: usize,
    (ho, wo): (usize, usize),
    dy: &[f32],
    acc: &mut [f32],
) {
    let span = (K - 1) * D;
    assert!(wp >= wo + span);
    let frames = blocks(frame, wp, cp, ho + span);
    let dys = dy[..cp * ho * wo].chunks_exact(ho * wo * LANES);
    let accs = acc[..K * K * cp].chunks_exact_mut(K * K * LANES);
    for ((frame, dy), acc) in frames.zip(dys).zip(accs) {
        let mut sums = [[f32x8::ZERO; K]; K];
        let b = Block { frame, wp };
        for oh in 0..ho {
            let rows = b.rows::<K, D>(oh);
            for ow in 0..wo {
                let dv = load(&dy[(oh * wo + ow) * LANES..]);
                for (row, srow) in rows.iter().zip(sums.iter_mut()) {
                    let row = &row[ow * LANES..][..(span + 1) * LANES];
                    for (j, s) in srow.iter_mut().enumerate() {
                        *s = dv.mul_add(load(&row[j * D * LANES..]), *s);
                    }
                }
            }
        }
        for (i, srow) in sums.iter().enumerate() {
            for (j, &s) in srow.iter().enumerate() {
                store(s, &mut acc[(i * K + j) * LANES..]);
            }
        }
    }
}
