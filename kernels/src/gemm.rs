//! Single-precision matrix multiply for the shapes a DARTS step makes, beside a triple-loop
//! reference: C = op(A) B with few rows of B as broadcast tiles, C = A B^T as dot tiles or, with B
//! transposed block by block into a stack scratch, as the same broadcast tiles; everything else
//! `matrixmultiply::sgemm`. All single-threaded: callers parallelise over samples. Matrices are
//! row-major slices.

use crate::simd::{f32x8, load, load_at, store, LANES, WIDE_REGS};

/// Which way to read an operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    /// Use the matrix as stored.
    N,
    /// Use its transpose.
    T,
}

/// Row and column strides of `op(M)` for M stored with rows `ld` apart.
fn strides(t: Trans, ld: usize) -> (usize, usize) {
    match t {
        Trans::N => (ld, 1),
        Trans::T => (1, ld),
    }
}

/// C (m x n) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C, every operand stored densely
/// (rows one after the other): [`sgemm_ld`] with [`Ld::dense`].
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    ta: Trans,
    b: &[f32],
    tb: Trans,
    beta: f32,
    c: &mut [f32],
) {
    let ld = Ld::dense(m, k, n, ta, tb);
    sgemm_ld(m, k, n, alpha, a, ta, b, tb, beta, c, ld)
}

/// The distances between consecutive stored rows of A, B and C (BLAS's lda, ldb, ldc): a stored
/// row of A is a row of op(A) for [`Trans::N`], a column for [`Trans::T`]; likewise B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ld {
    /// A's row stride (lda).
    pub a: usize,
    /// B's row stride (ldb).
    pub b: usize,
    /// C's row stride (ldc).
    pub c: usize,
}

impl Ld {
    /// Rows one after the other: A stored m x k (N) or k x m (T), B k x n or n x k, C m x n.
    pub fn dense(m: usize, k: usize, n: usize, ta: Trans, tb: Trans) -> Ld {
        Ld {
            a: if ta == Trans::N { k } else { m },
            b: if tb == Trans::N { n } else { k },
            c: n,
        }
    }
}

/// A row stride for rows of `len` values that a product reads many at once as its B (the 1x1
/// convs' planes): `len`, plus 16 where that is a multiple of 512. Rows 2 or 4 KiB apart (32 x 32
/// planes) share L1's sets: the broadcast tiles' 16 - 64 rows of B then miss L1 on every reuse,
/// and the product runs at half speed (16 x 16 x 1024 A B, one thread, rows 1024 / 1040 values
/// apart: 48 / 100 GFLOP/s).
pub fn row_stride(len: usize) -> usize {
    if len.is_multiple_of(512) {
        len + 16
    } else {
        len
    }
}

/// Values a stored `rows x cols` matrix with rows `ld` apart spans (0 when empty).
fn span(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * ld + cols
    }
}

/// C (m x n) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C, with stored rows `ld` apart
/// (each at least its row's length). With beta = 0, C is overwritten (its old contents are never
/// read, NaN included); values between C's rows are never touched, nor read between A's or B's.
///
/// By shape: A B^T over a long k (at least [`DOTS_MIN_K`] times m and n: the weight gradient
/// dy x^T of a 1x1 conv on a large plane) as tiles of dot products (`dots`); op(A) B with k up
/// to [`BROADCAST_MAX_K`] (every 1x1 conv's forward and input gradient) by `broadcast`; op(A)
/// B^T with k up to [`TRANSPOSE_MAX_K`] by `transposed`; the rest by matrixmultiply, whose
/// packing costs more than these products (in cache, one thread, GFLOP/s ours vs matrixmultiply:
/// 16 x 1024 x 16 A B^T 100 vs 16, 64 x 64 x 64 A B^T 100 vs 68, 8 x 24 x 1024 A B 100 vs 28).
/// Each element's arithmetic depends on the path and the values only, never on `ld`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_ld(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    ta: Trans,
    b: &[f32],
    tb: Trans,
    beta: f32,
    c: &mut [f32],
    ld: Ld,
) {
    let (a_rows, a_cols) = if ta == Trans::N { (m, k) } else { (k, m) };
    let (b_rows, b_cols) = if tb == Trans::N { (k, n) } else { (n, k) };
    assert!(
        ld.a >= a_cols && ld.b >= b_cols && ld.c >= n,
        "sgemm: a row stride shorter than its row"
    );
    assert!(
        a.len() >= span(a_rows, a_cols, ld.a)
            && b.len() >= span(b_rows, b_cols, ld.b)
            && c.len() >= span(m, n, ld.c),
        "sgemm: operand too short"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // No terms: C = beta C (written as 0.0 when beta = 0).
        for row in c.chunks_mut(ld.c).take(m) {
            row[..n]
                .iter_mut()
                .for_each(|v| scale_into(v, alpha, 0.0, beta));
        }
        return;
    }
    if ta == Trans::N && tb == Trans::T && k >= DOTS_MIN_K * m.max(n) {
        return dots(m, k, n, alpha, (a, ld.a), (b, ld.b), beta, (c, ld.c));
    }
    // op(A)[i][p] at a[i * rsa + p * csa].
    let (rsa, csa) = strides(ta, ld.a);
    if tb == Trans::N && k <= BROADCAST_MAX_K {
        return broadcast(m, k, n, alpha, a, (rsa, csa), (b, ld.b), beta, (c, ld.c));
    }
    if tb == Trans::T && k <= TRANSPOSE_MAX_K {
        return transposed(m, k, n, alpha, a, (rsa, csa), (b, ld.b), beta, (c, ld.c));
    }
    let (rsb, csb) = strides(tb, ld.b);
    // SAFETY: the asserts above guarantee every index the strides address lies inside the slices.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            ld.c as isize,
            1,
        );
    }
}

/// out = alpha * acc + beta * out, with beta = 0 leaving out unread (NaN included).
#[inline(always)]
fn scale_into(out: &mut f32, alpha: f32, acc: f32, beta: f32) {
    *out = if beta == 0.0 {
        alpha * acc
    } else {
        alpha * acc + beta * *out
    };
}

/// [`sgemm`] computes C = A B^T as dot products when k is at least this many times max(m, n).
/// Measured in cache, one thread, GFLOP/s dots vs `transposed`: 16 x 1024 x 16 99 vs 47,
/// 16 x 256 x 16 73 vs 60, 32 x 512 x 32 91 vs 94, 32 x 256 x 32 75 vs 93, 8 x 64 x 8 28 vs 34.
pub const DOTS_MIN_K: usize = 16;

/// [`sgemm`] computes C = op(A) B with B as stored by `broadcast` when k is at most this: the 1x1
/// convs' products, k = input channels.
pub const BROADCAST_MAX_K: usize = 64;

/// [`sgemm`] computes C = op(A) B^T with k at most this by `transposed`: the weight gradients
/// of the 1x1 convs (k = the plane's size: 1024, 256, 64 in DARTS).
pub const TRANSPOSE_MAX_K: usize = 2048;

/// Values in [`transposed`]'s stack scratch (64 KiB): 32 columns of B^T up to k = 512, fewer above.
const TRANSPOSE_SCRATCH: usize = 16 * 1024;

/// C = alpha * op(A) B^T + beta * C with B (n x k, rows `ldb` apart): a block of C's columns at a time
/// (32, or as many whole vectors as fit the scratch at this k), B's rows for them transposed (8 x 8
/// blocks in registers) into a k x w stack scratch, which [`broadcast`] then reads as its B.
/// (matrixmultiply gathers B^T in its packing, two thirds of its time on these shapes; dot
/// products need a sum across lanes per element.) Every element is [`broadcast`]'s chain of
/// multiply-adds in p order.
#[allow(clippy::too_many_arguments)]
fn transposed(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    a_strides: (usize, usize),
    (b, ldb): (&[f32], usize),
    beta: f32,
    (c, ldc): (&mut [f32], usize),
) {
    let block = (TRANSPOSE_SCRATCH / k / LANES * LANES).min(BV * LANES);
    assert!(block > 0, "k beyond TRANSPOSE_MAX_K");
    let mut scratch = [std::mem::MaybeUninit::<f32>::uninit(); TRANSPOSE_SCRATCH];
    for j0 in (0..n).step_by(block) {
        let w = (n - j0).min(block);
        let bt = transpose_into((&b[j0 * ldb..], ldb), w, k, &mut scratch[..k * w]);
        broadcast(
            m,
            k,
            w,
            alpha,
            a,
            a_strides,
            (bt, w),
            beta,
            (&mut c[j0..], ldc),
        );
    }
}

/// dst (cols x rows, dense) = src (rows x cols, rows `ld` apart) transposed: 8 x 8 blocks through
/// registers, the edges one value at a time. Writes every value of dst and returns it.
fn transpose_into<'d>(
    (src, ld): (&[f32], usize),
    rows: usize,
    cols: usize,
    dst: &'d mut [std::mem::MaybeUninit<f32>],
) -> &'d [f32] {
    assert!(src.len() >= span(rows, cols, ld) && dst.len() == rows * cols);
    let (r8, c8) = (rows / LANES * LANES, cols / LANES * LANES);
    for i in (0..r8).step_by(LANES) {
        for j in (0..c8).step_by(LANES) {
            let block: [f32x8; LANES] = std::array::from_fn(|r| load(&src[(i + r) * ld + j..]));
            for (r, v) in f32x8::transpose(block).into_iter().enumerate() {
                let out = &mut dst[(j + r) * rows + i..][..LANES];
                for (o, &x) in out.iter_mut().zip(v.as_array()) {
                    o.write(x);
                }
            }
        }
    }
    for i in 0..rows {
        let from = if i < r8 { c8 } else { 0 };
        for j in from..cols {
            dst[j * rows + i].write(src[i * ld + j]);
        }
    }
    // SAFETY: the loops above wrote every (j, i) of the cols x rows values: the blocks all
    // i < r8, j < c8, the edge loop the rest; MaybeUninit<f32> has f32's layout.
    unsafe { &*(dst as *const [std::mem::MaybeUninit<f32>] as *const [f32]) }
}

/// Rows of C per [`broadcast`] tile.
const BR: usize = 4;
/// 8-lane vectors of C's columns per [`broadcast`] tile: 4 x 4 accumulators, 4 vectors of B and
/// a broadcast in 21 registers; 4 x 3 + 3 + 1 = 16 where that is all there is.
const BV: usize = if WIDE_REGS { 4 } else { 3 };

/// C = alpha * op(A) B + beta * C with B (k x n, rows `ldb` apart) and C (m x n, rows `ldc`
/// apart) row-major and k small, op(A)[i][p] at a[i * ri + p * rp], without packing either
/// operand: tiles of [`BR`] rows x 8 [`BV`] columns of C, each accumulated over p = 0..k as
/// op(A)[i][p] broadcast times B's row p (BR + BV loads per BR BV multiply-adds); then a
/// 16-column block in 4 x 16 tiles and an 8-column one in 8 x 8 tiles (single rows where m runs out), then
/// the last n % 8 columns one value at a time. Every element is the same chain of multiply-adds
/// in p order whatever tile it falls in.
#[allow(clippy::too_many_arguments)]
fn broadcast(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    (ri, rp): (usize, usize),
    (b, ldb): (&[f32], usize),
    beta: f32,
    (c, ldc): (&mut [f32], usize),
) {
    let g = Bcast {
        k,
        ldb,
        ldc,
        ri,
        rp,
        alpha,
        beta,
    };
    // Columns j.. j + 8 V of every row: tiles of R rows, then the rows left one at a time.
    macro_rules! cols {
        ($r:expr, $v:expr, $j:expr) => {{
            let mr = m / $r * $r;
            (0..mr)
                .step_by($r)
                .for_each(|i| g.tile::<{ $r }, { $v }>(i, $j, a, b, c));
            (mr..m).for_each(|i| g.tile::<1, { $v }>(i, $j, a, b, c));
        }};
    }
    // 8 V columns at a time, then 16 and 8 (each tile 8 or more accumulators, enough to hide the
    // multiply-add latency).
    let mut j = 0;
    while j + BV * LANES <= n {
        cols!(BR, BV, j);
        j += BV * LANES;
    }
    if j + 2 * LANES <= n {
        cols!(BR, 2, j);
        j += 2 * LANES;
    }
    if j + LANES <= n {
        cols!(2 * BR, 1, j);
        j += LANES;
    }
    let n8 = j;
    for i in 0..m {
        for j in n8..n {
            let acc = (0..k).fold(0.0f32, |acc, p| {
                a[i * ri + p * rp].mul_add(b[p * ldb + j], acc)
            });
            scale_into(&mut c[i * ldc + j], alpha, acc, beta);
        }
    }
}

/// The shape and scalars of one [`broadcast`] product.
struct Bcast {
    k: usize,
    ldb: usize,
    ldc: usize,
    ri: usize,
    rp: usize,
    alpha: f32,
    beta: f32,
}

impl Bcast {
    /// C[i..i + R, j..j + 8 V] of [`broadcast`].
    #[inline(always)]
    fn tile<const R: usize, const V: usize>(
        &self,
        i: usize,
        j: usize,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) {
        let Bcast {
            k,
            ldb,
            ldc,
            ri,
            rp,
            alpha,
            beta,
        } = *self;
        let mut acc = [[f32x8::ZERO; V]; R];
        // The last values the loop reads, checked once here instead of at every step: its
        // bounds checks and the row offsets they kept live were half of its instructions.
        assert!(
            k == 0
                || ((i + R - 1) * ri + (k - 1) * rp < a.len()
                    && (k - 1) * ldb + j + V * LANES <= b.len()),
            "broadcast tile out of its operands"
        );
        for p in 0..k {
            // SAFETY: p < k and r < R, so every index is at most the ones asserted above.
            let bv: [f32x8; V] =
                std::array::from_fn(|v| unsafe { load_at(b, p * ldb + j + v * LANES) });
            #[allow(clippy::needless_range_loop)] // r also addresses A's row
            for r in 0..R {
                let av = f32x8::splat(unsafe { *a.get_unchecked((i + r) * ri + p * rp) });
                for v in 0..V {
                    acc[r][v] = av.mul_add(bv[v], acc[r][v]);
                }
            }
        }
        for r in 0..R {
            let out = &mut c[(i + r) * ldc + j..][..V * LANES];
            for v in 0..V {
                let o = &mut out[v * LANES..];
                let y = if beta == 0.0 {
                    f32x8::splat(alpha) * acc[r][v]
                } else {
                    f32x8::splat(alpha) * acc[r][v] + f32x8::splat(beta) * load(o)
                };
                store(y, o);
            }
        }
    }
}

/// Rows of A per [`dots`] tile.
const DR: usize = 4;
/// Rows of B per [`dots`] tile: 4 x 4 accumulators, 4 vectors of B and one of A in 21
/// registers; 4 x DS + DS + 1 <= 16 where that is all there is.
const DS: usize = if WIDE_REGS { 4 } else { 2 };

/// C = alpha * A B^T + beta * C with A (m x k) and B (n x k), their rows `lda` and `ldb` apart:
/// [`DR`] x [`DS`] tiles of 8-lane dot products (DR + DS loads per DR DS multiply-adds), each
/// summed across its lanes in a fixed order, then its k % 8 tail. Every element is computed the
/// same way whatever tile it is in, so the result depends on nothing but the operands.
#[allow(clippy::too_many_arguments)]
fn dots(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: (&[f32], usize),
    b: (&[f32], usize),
    beta: f32,
    (c, ldc): (&mut [f32], usize),
) {
    let d = Dots {
        k,
        alpha,
        beta,
        a,
        b,
    };
    let (mr, ns) = (m / DR * DR, n / DS * DS);
    for i in (0..m).step_by(DR) {
        for j in (0..n).step_by(DS) {
            match (i < mr, j < ns) {
                (true, true) => d.tile::<DR, DS>(i, j, c, ldc),
                (true, false) => (j..n).for_each(|j| d.tile::<DR, 1>(i, j, c, ldc)),
                (false, true) => (i..m).for_each(|i| d.tile::<1, DS>(i, j, c, ldc)),
                (false, false) => {
                    (i..m).for_each(|i| (j..n).for_each(|j| d.tile::<1, 1>(i, j, c, ldc)))
                }
            }
        }
    }
}

/// The operands and scalars of one [`dots`] product: A and B with their row strides.
struct Dots<'a> {
    k: usize,
    alpha: f32,
    beta: f32,
    a: (&'a [f32], usize),
    b: (&'a [f32], usize),
}

impl Dots<'_> {
    /// C[i..i + R, j..j + S] of [`dots`] (C's rows `ldc` apart).
    #[inline(always)]
    fn tile<const R: usize, const S: usize>(&self, i: usize, j: usize, c: &mut [f32], ldc: usize) {
        use crate::simd::hsum;
        let Dots {
            k,
            alpha,
            beta,
            a: (a, lda),
            b: (b, ldb),
        } = *self;
        let ar: [&[f32]; R] = std::array::from_fn(|r| &a[(i + r) * lda..][..k]);
        let br: [&[f32]; S] = std::array::from_fn(|s| &b[(j + s) * ldb..][..k]);
        let k8 = k / LANES * LANES;
        let mut acc = [[f32x8::ZERO; S]; R];
        for p in (0..k8).step_by(LANES) {
            let bv: [f32x8; S] = std::array::from_fn(|s| load(&br[s][p..]));
            for r in 0..R {
                let av = load(&ar[r][p..]);
                for s in 0..S {
                    acc[r][s] = av.mul_add(bv[s], acc[r][s]);
                }
            }
        }
        // Summed across lanes as whole arrays: indexing the accumulators in the runtime loop below
        // would keep them in memory, stored on every step of the loop above.
        let sums = acc.map(|row| row.map(hsum));
        for r in 0..R {
            for s in 0..S {
                let mut d = sums[r][s];
                for p in k8..k {
                    d += ar[r][p] * br[s][p];
                }
                scale_into(&mut c[(i + r) * ldc + j + s], alpha, d, beta);
            }
        }
    }
}

pub mod reference {
    use super::Trans;

    #[allow(clippy::too_many_arguments)]
    pub fn sgemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: &[f32],
        ta: Trans,
        b: &[f32],
        tb: Trans,
        beta: f32,
        c: &mut [f32],
    ) {
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f32;
                for p in 0..k {
                    let av = if ta == Trans::N {
                        a[i * k + p]
                    } else {
                        a[p * m + i]
                    };
                    let bv = if tb == Trans::N {
                        b[p * n + j]
                    } else {
                        b[j * k + p]
                    };
                    acc += av * bv;
                }
                let old = if beta == 0.0 {
                    0.0
                } else {
                    beta * c[i * n + j]
                };
                c[i * n + j] = alpha * acc + old;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, bits, vec_f32};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn sgemm_matches_reference(
            (m, k, n, a, b, c) in (1usize..20, prop_oneof![1usize..20, 60usize..70, 200usize..700], prop_oneof![1usize..20, 30usize..80]).prop_flat_map(|(m, k, n)|
                (Just(m), Just(k), Just(n), vec_f32(m * k), vec_f32(k * n), vec_f32(m * n))),
            ta in prop_oneof![Just(Trans::N), Just(Trans::T)],
            tb in prop_oneof![Just(Trans::N), Just(Trans::T)],
            beta in prop_oneof![Just(0.0f32), Just(1.0f32), -1.0f32..1.0],
        ) {
            let (mut got, mut want) = (c.clone(), c.clone());
            sgemm(m, k, n, 0.7, &a, ta, &b, tb, beta, &mut got);
            reference::sgemm(m, k, n, 0.7, &a, ta, &b, tb, beta, &mut want);
            assert_close(&got, &want, 1e-5 * k as f32);
        }
    }

    /// `rows x cols` values stored with rows `ld` apart, NaN between the rows.
    fn spread(dense: &[f32], rows: usize, cols: usize, ld: usize) -> Vec<f32> {
        let mut out = vec![f32::NAN; span(rows, cols, ld)];
        for (r, row) in dense.chunks_exact(cols.max(1)).take(rows).enumerate() {
            out[r * ld..][..cols].copy_from_slice(row);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Every path with rows further apart than their length (NaN between them): the dense
        /// product's values, nothing read or written between the rows.
        #[test]
        fn strided_rows_give_the_dense_product(
            (m, k, n, a, b, c) in (1usize..20, prop_oneof![1usize..20, 60usize..70, 200usize..700], prop_oneof![1usize..20, 30usize..80]).prop_flat_map(|(m, k, n)|
                (Just(m), Just(k), Just(n), vec_f32(m * k), vec_f32(k * n), vec_f32(m * n))),
            ta in prop_oneof![Just(Trans::N), Just(Trans::T)],
            tb in prop_oneof![Just(Trans::N), Just(Trans::T)],
            beta in prop_oneof![Just(0.0f32), Just(1.0f32), -1.0f32..1.0],
            pad in (0usize..20, 0usize..20, 0usize..20),
        ) {
            let dense = Ld::dense(m, k, n, ta, tb);
            let ld = Ld { a: dense.a + pad.0, b: dense.b + pad.1, c: dense.c + pad.2 };
            let (a_rows, b_rows) = (a.len() / dense.a, b.len() / dense.b);
            let (sa, sb) = (spread(&a, a_rows, dense.a, ld.a), spread(&b, b_rows, dense.b, ld.b));
            let mut got = spread(&c, m, n, ld.c);
            let mut want = c.clone();
            sgemm_ld(m, k, n, 0.7, &sa, ta, &sb, tb, beta, &mut got, ld);
            sgemm(m, k, n, 0.7, &a, ta, &b, tb, beta, &mut want);
            for (i, row) in want.chunks_exact(n).enumerate() {
                let got_row = &got[i * ld.c..][..n];
                prop_assert!(got_row.iter().zip(row).all(|(g, w)| g.to_bits() == w.to_bits()), "row {i}");
            }
            for (i, v) in got.iter().enumerate() {
                prop_assert!(i % ld.c < n || v.is_nan(), "wrote between C's rows at {i}");
            }
        }
    }

    /// C = A B^T through the transposed-B blocks at k where the block width changes (32 columns
    /// up to k = 512, then 24, 16, 8) and past the path's end, with several blocks and a ragged
    /// last one (n = 137: wide enough that the dot tiles never take these k), against the
    /// reference.
    #[test]
    fn transposed_blocks_match_reference_at_every_width() {
        let (m, n) = (5, 137);
        assert!(2049 < DOTS_MIN_K * n);
        for k in [1, 7, 8, 9, 64, 255, 512, 513, 700, 1100, 2048, 2049] {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1 - 0.6).collect();
            let b: Vec<f32> = (0..n * k).map(|i| (i % 7) as f32 * 0.2 - 0.5).collect();
            let c: Vec<f32> = (0..m * n).map(|i| (i % 5) as f32 - 2.0).collect();
            let (mut got, mut want) = (c.clone(), c);
            sgemm(m, k, n, 0.7, &a, Trans::N, &b, Trans::T, 0.5, &mut got);
            reference::sgemm(m, k, n, 0.7, &a, Trans::N, &b, Trans::T, 0.5, &mut want);
            assert_close(&got, &want, 1e-5 * k as f32);
        }
    }

    /// The dot-tile path at every k around its threshold (16 max(m, n)) and the 8-lane split
    /// (k = 8 .. 64 with one row and column, 2 x 3 from k = 40, 4 x 5 from 72), against the
    /// reference.
    #[test]
    fn dot_tiles_match_reference_at_every_split() {
        for (m, n, ks) in [(1, 1, 8..64), (2, 3, 40..64), (4, 5, 72..100)] {
            for k in ks {
                let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1 - 0.6).collect();
                let b: Vec<f32> = (0..n * k).map(|i| (i % 7) as f32 * 0.2 - 0.5).collect();
                let (mut got, mut want) = (vec![f32::NAN; m * n], vec![0.0; m * n]);
                sgemm(m, k, n, 1.0, &a, Trans::N, &b, Trans::T, 0.0, &mut got);
                reference::sgemm(m, k, n, 1.0, &a, Trans::N, &b, Trans::T, 0.0, &mut want);
                assert_close(&got, &want, 1e-5 * k as f32);
            }
        }
    }

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + seed * 104729) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// A B^T takes the dot tiles from k = 16 max(m, n) on and the transposed-B broadcast tiles
    /// below: at the threshold and one below it the product has the bits of that path run on its
    /// own (the two round differently: 8-lane partial sums against one chain in p order).
    #[test]
    fn a_b_transposed_takes_dots_from_the_threshold() {
        let (m, n) = (4, 8);
        for k in [DOTS_MIN_K * n - 1, DOTS_MIN_K * n] {
            let (a, b) = (values(m * k, 1), values(n * k, 2));
            let mut got = vec![0.0; m * n];
            sgemm(m, k, n, 0.7, &a, Trans::N, &b, Trans::T, 0.0, &mut got);
            let (mut by_dots, mut by_tiles) = (vec![0.0; m * n], vec![0.0; m * n]);
            dots(m, k, n, 0.7, (&a, k), (&b, k), 0.0, (&mut by_dots, n));
            transposed(m, k, n, 0.7, &a, (k, 1), (&b, k), 0.0, (&mut by_tiles, n));
            assert_ne!(
                bits(&by_dots),
                bits(&by_tiles),
                "k {k}: the paths must be told apart"
            );
            let want = if k >= DOTS_MIN_K * n {
                by_dots
            } else {
                by_tiles
            };
            assert_eq!(bits(&got), bits(&want), "k {k}");
        }
    }

    /// Empty products: nothing to read, C untouched where it has no elements, and k = 0 gives
    /// C = beta C.
    #[test]
    fn empty_products() {
        for (ta, tb) in [(Trans::N, Trans::N), (Trans::T, Trans::T)] {
            sgemm(0, 3, 4, 1.0, &[], ta, &[0.0; 12], tb, 0.0, &mut []);
            sgemm(3, 4, 0, 1.0, &[0.0; 12], ta, &[], tb, 0.0, &mut []);
            let mut c = vec![2.0; 6];
            sgemm(2, 0, 3, 1.0, &[], ta, &[], tb, 0.5, &mut c);
            assert_eq!(c, vec![1.0; 6]);
            // Rows further apart than their length: an empty matrix still spans nothing.
            let ld = Ld { a: 9, b: 9, c: 9 };
            sgemm_ld(0, 3, 4, 1.0, &[], ta, &[0.0; 40], tb, 0.0, &mut [], ld);
        }
    }

    /// Scratch rows a product reads many at once are padded only where they would be a multiple of
    /// 2 KiB apart.
    #[test]
    fn row_stride_pads_multiples_of_512_values() {
        assert_eq!(
            [64, 256, 500, 512, 1024, 2048].map(row_stride),
            [64, 256, 500, 528, 1040, 2064]
        );
    }
}
