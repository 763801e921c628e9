//! Deterministic data parallelism: fixed chunks, serial below a work threshold.
//!
//! The chunking never depends on the number of threads, and every chunk is computed by the same code
//! whether rayon runs it or a plain loop does, so results are bit-identical for any thread count.
use rayon::prelude::*;

/// Below this many scalar operations a kernel runs serially: rayon's fork-join overhead (a few
/// microseconds) would outweigh the work.
pub const MIN_PARALLEL_WORK: usize = 1 << 15;

/// Elementwise work is split at multiples of this many values (a multiple of the SIMD width), so the
/// same element always lands in the same SIMD lane position whatever the thread count.
pub const ELEMENTWISE_CHUNK: usize = 1 << 14;

/// The `with_min_len` for a parallel iterator doing `work` scalar operations in total: 1 lets rayon
/// split freely, `usize::MAX` keeps the whole loop on the calling thread.
pub fn min_len(work: usize) -> usize {
    if work >= MIN_PARALLEL_WORK {
        1
    } else {
        usize::MAX
    }
}

/// Runs `f(i, chunk_i)` for every `chunk_len`-sized chunk of `out` (the last may be shorter).
pub fn chunks<F>(out: &mut [f32], chunk_len: usize, work: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    out.par_chunks_mut(chunk_len.max(1))
        .with_min_len(min_len(work))
        .enumerate()
        .for_each(|(i, c)| f(i, c));
}

/// Runs `f(i, out_i, scratch_i)` over matching chunks of `out` and a scratch buffer. A `scratch_len`
/// of 0 passes an empty scratch slice to every call.
pub fn chunks_with_scratch<T, F>(
    out: &mut [T],
    out_len: usize,
    scratch: &mut [f32],
    scratch_len: usize,
    work: usize,
    f: F,
) where
    T: Send,
    F: Fn(usize, &mut [T], &mut [f32]) + Sync + Send,
{
    let out_len = out_len.max(1);
    let ml = min_len(work);
    if scratch_len == 0 {
        out.par_chunks_mut(out_len)
            .with_min_len(ml)
            .enumerate()
            .for_each(|(i, o)| f(i, o, &mut []));
    } else {
        assert!(
            scratch.len() >= out.len().div_ceil(out_len) * scratch_len,
            "scratch buffer too short"
        );
        out.par_chunks_mut(out_len)
            .zip(scratch.par_chunks_mut(scratch_len))
            .with_min_len(ml)
            .enumerate()
            .for_each(|(i, (o, s))| f(i, o, s));
    }
}

/// Runs `f(i, a_i, b_i)` over matching chunks of two output buffers (`a_len` and `b_len` long), e.g. a
/// max pool's values and argmax, or a batch norm's per-channel mean and inverse std.
pub fn chunks2<A, B, F>(a: &mut [A], a_len: usize, b: &mut [B], b_len: usize, work: usize, f: F)
where
    A: Send,
    B: Send,
    F: Fn(usize, &mut [A], &mut [B]) + Sync + Send,
{
    a.par_chunks_mut(a_len.max(1))
        .zip(b.par_chunks_mut(b_len.max(1)))
        .with_min_len(min_len(work))
        .enumerate()
        .for_each(|(i, (x, y))| f(i, x, y));
}

/// [`chunks2`] with a scratch buffer chunked alongside, as [`chunks_with_scratch`] does (a
/// `scratch_len` of 0 passes an empty scratch slice to every call).
#[allow(clippy::too_many_arguments)]
pub fn chunks2_with_scratch<A, B, F>(
    a: &mut [A],
    a_len: usize,
    b: &mut [B],
    b_len: usize,
    scratch: &mut [f32],
    scratch_len: usize,
    work: usize,
    f: F,
) where
    A: Send,
    B: Send,
    F: Fn(usize, &mut [A], &mut [B], &mut [f32]) + Sync + Send,
{
    if scratch_len == 0 {
        return chunks2(a, a_len, b, b_len, work, |i, x, y| f(i, x, y, &mut []));
    }
    let a_len = a_len.max(1);
    assert!(
        scratch.len() >= a.len().div_ceil(a_len) * scratch_len,
        "scratch buffer too short"
    );
    a.par_chunks_mut(a_len)
        .zip(b.par_chunks_mut(b_len.max(1)))
        .zip(scratch.par_chunks_mut(scratch_len))
        .with_min_len(min_len(work))
        .enumerate()
        .for_each(|(i, ((x, y), s))| f(i, x, y, s));
}
