//! Single-precision matrix multiply: `matrixmultiply::sgemm` (single-threaded; callers parallelise
//! over samples) beside a triple-loop reference. Matrices are row-major slices; a transposed operand
//! is read through swapped strides, never copied.

/// Which way to read an operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    /// Use the matrix as stored.
    N,
    /// Use its transpose.
    T,
}

/// Row and column strides of a row-major `rows x cols` matrix read as `op(M)`.
fn strides(t: Trans, cols: usize) -> (isize, isize) {
    match t {
        Trans::N => (cols as isize, 1),
        Trans::T => (1, cols as isize),
    }
}

/// C (m x n) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C. With beta = 0, C is overwritten
/// (its old contents are never read, NaN included).
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
    // op(A) is m x k: stored as m x k (N) or k x m (T).
    let (rsa, csa) = strides(ta, if ta == Trans::N { k } else { m });
    let (rsb, csb) = strides(tb, if tb == Trans::N { n } else { k });
    // SAFETY: the asserts above guarantee every index the strides address lies inside the slices.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
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
            (m, k, n, a, b, c) in (1usize..20, 1usize..20, 1usize..20).prop_flat_map(|(m, k, n)|
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
}
