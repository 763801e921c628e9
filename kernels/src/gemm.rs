//! Single-precision matrix multiply: `matrixmultiply::sgemm` (single-threaded; callers parallelise
//! over samples) beside a triple-loop reference. Matrices are row-major slices; a transposed operand
//! is read through swapped strides, never copied.

use crate::simd::{f32x8, load, store, LANES};

/// Which way to read an operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    /// Use the matrix as stored.
    N,
    /// Use its transpose.
    T,
}

/// Row and column strides of a row-major `rows x cols` matrix read as `op(M)`.
fn strides(t: Trans, cols: usize) -> (usize, usize) {
    match t {
        Trans::N => (cols, 1),
        Trans::T => (1, cols),
    }
}

/// C (m x n) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C. With beta = 0, C is overwritten
/// (its old contents are never read, NaN included).
///
/// A product of few rows and columns over a long k with both operands' rows running along k
/// (A as stored, B transposed: a weight gradient dy x^T; k at least [`DOTS_MIN_K`] times m and
/// n) is computed as tiles of dot products; everything else goes to matrixmultiply, whose packing costs more than such a
/// product (16 x 1024 x 16: 16 GFLOP/s there).
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
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "sgemm: operand too short"
    );
    if m == 0 || n == 0 {
        return;
    }
    if ta == Trans::N && tb == Trans::T && k >= DOTS_MIN_K * m.max(n) {
        return dots(m, k, n, alpha, a, b, beta, c);
    }
    // op(A) is m x k: stored as m x k (N) or k x m (T).
    let (rsa, csa) = strides(ta, if ta == Trans::N { k } else { m });
    if tb == Trans::N && k <= BROADCAST_MAX_K {
        return broadcast(m, k, n, alpha, a, (rsa, csa), b, beta, c);
    }
    let (rsb, csb) = strides(tb, if tb == Trans::N { n } else { k });
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
            n as isize,
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
/// Measured in cache, one thread: the dot tiles run at about 40 GFLOP/s whatever the shape;
/// matrixmultiply at 12 - 25 on 8 x 1024 x 8 and 16 x 1024 x 16 (the 1x1 convs' weight
/// gradients at 32 x 32), but at 60 on 32 x 256 x 32 and 64 x 1024 x 64.
pub const DOTS_MIN_K: usize = 32;

/// [`sgemm`] computes C = op(A) B with B as stored by [`broadcast`] when k is at most this: the 1x1
/// convs' products, k = input channels.
pub const BROADCAST_MAX_K: usize = 64;

/// Rows of C per [`broadcast`] tile.
const BR: usize = 4;
/// 8-lane vectors of C's columns per [`broadcast`] tile.
const BV: usize = 4;

/// C = alpha * op(A) B + beta * C with B (k x n) row-major and k small, op(A)[i][p] at
/// a[i * ri + p * rp], without packing either operand: tiles of 4 rows x 32 columns of C, each
/// accumulated over p = 0..k as op(A)[i][p] broadcast times B's row p (16 accumulators, 8 loads
/// per 16 multiply-adds); then 8-column and single-row tiles, then the last n % 8 columns one
/// value at a time. Every element is the same chain of multiply-adds in p order whatever tile it
/// falls in.
#[allow(clippy::too_many_arguments)]
fn broadcast(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    (ri, rp): (usize, usize),
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    let m4 = m / BR * BR;
    let n8 = n / LANES * LANES;
    let wide_end = n8 / (BV * LANES) * (BV * LANES);
    let g = Bcast {
        k,
        n,
        ri,
        rp,
        alpha,
        beta,
    };
    for j in (0..wide_end).step_by(BV * LANES) {
        (0..m4)
            .step_by(BR)
            .for_each(|i| g.tile::<BR, BV>(i, j, a, b, c));
        (m4..m).for_each(|i| g.tile::<1, BV>(i, j, a, b, c));
    }
    for j in (wide_end..n8).step_by(LANES) {
        (0..m4)
            .step_by(BR)
            .for_each(|i| g.tile::<BR, 1>(i, j, a, b, c));
        (m4..m).for_each(|i| g.tile::<1, 1>(i, j, a, b, c));
    }
    for i in 0..m {
        for j in n8..n {
            let acc = (0..k).fold(0.0f32, |acc, p| {
                a[i * ri + p * rp].mul_add(b[p * n + j], acc)
            });
            scale_into(&mut c[i * n + j], alpha, acc, beta);
        }
    }
}

/// The shape and scalars of one [`broadcast`] product.
struct Bcast {
    k: usize,
    n: usize,
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
            n,
            ri,
            rp,
            alpha,
            beta,
        } = *self;
        let mut acc = [[f32x8::ZERO; V]; R];
        for p in 0..k {
            let brow = &b[p * n + j..][..V * LANES];
            let bv: [f32x8; V] = std::array::from_fn(|v| load(&brow[v * LANES..]));
            for r in 0..R {
                let av = f32x8::splat(a[(i + r) * ri + p * rp]);
                for v in 0..V {
                    acc[r][v] = av.mul_add(bv[v], acc[r][v]);
                }
            }
        }
        for r in 0..R {
            let out = &mut c[(i + r) * n + j..][..V * LANES];
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

/// C = alpha * A B^T + beta * C with A (m x k) and B (n x k) row-major: 4 x 4 tiles of 8-lane dot
/// products (16 accumulators, 8 loads per 16 multiply-adds), each summed across its lanes in a
/// fixed order, then its k % 8 tail. Every element is computed the same way whatever tile it is
/// in, so the result depends on nothing but the operands.
#[allow(clippy::too_many_arguments)]
fn dots(m: usize, k: usize, n: usize, alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
    let (m4, n4) = (m / 4 * 4, n / 4 * 4);
    for i in (0..m).step_by(4) {
        for j in (0..n).step_by(4) {
            match (i < m4, j < n4) {
                (true, true) => dot_tile::<4, 4>(i, j, k, n, alpha, a, b, beta, c),
                (true, false) => {
                    (j..n).for_each(|j| dot_tile::<4, 1>(i, j, k, n, alpha, a, b, beta, c))
                }
                (false, true) => {
                    (i..m).for_each(|i| dot_tile::<1, 4>(i, j, k, n, alpha, a, b, beta, c))
                }
                (false, false) => (i..m).for_each(|i| {
                    (j..n).for_each(|j| dot_tile::<1, 1>(i, j, k, n, alpha, a, b, beta, c))
                }),
            }
        }
    }
}

/// C[i..i + R, j..j + S] of [`dots`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dot_tile<const R: usize, const S: usize>(
    i: usize,
    j: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    use crate::simd::hsum;
    let ar: [&[f32]; R] = std::array::from_fn(|r| &a[(i + r) * k..][..k]);
    let br: [&[f32]; S] = std::array::from_fn(|s| &b[(j + s) * k..][..k]);
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
    for r in 0..R {
        for s in 0..S {
            let mut d = hsum(acc[r][s]);
            for p in k8..k {
                d += ar[r][p] * br[s][p];
            }
            scale_into(&mut c[(i + r) * n + j + s], alpha, d, beta);
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
    use crate::testutil::{assert_close, vec_f32};
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

    /// The dot-tile path at every k around its threshold and the 8-lane split (k = 32 .. 80 with
    /// one row and column, 2 x 3 with k >= 96), against the reference.
    #[test]
    fn dot_tiles_match_reference_at_every_split() {
        for (m, n, ks) in [(1, 1, 32..80), (2, 3, 96..120)] {
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
}
