//! Fully connected layer: `y [N, out] = x [N, in] * W^T + b`, `W [out, in]`, `b [out]`. One sgemm each way;
//! small enough in DARTS (the classifier) that it runs on one thread.
use crate::gemm::{sgemm, Trans};

/// y = x W^T + b.
pub fn forward(
    n: usize,
    d_in: usize,
    d_out: usize,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    y: &mut [f32],
) {
    sgemm(n, d_in, d_out, 1.0, x, Trans::N, w, Trans::T, 0.0, y);
    if let Some(b) = b {
        for row in y.chunks_mut(d_out) {
            crate::elementwise::axpy(1.0, b, row);
        }
    }
}

/// dx += dy W, dw += dy^T x, db += sum over rows of dy (rows in order).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    n: usize,
    d_in: usize,
    d_out: usize,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
    db: Option<&mut [f32]>,
) {
    if let Some(dx) = dx {
        sgemm(n, d_out, d_in, 1.0, dy, Trans::N, w, Trans::N, 1.0, dx);
    }
    if let Some(dw) = dw {
        sgemm(d_out, n, d_in, 1.0, dy, Trans::T, x, Trans::N, 1.0, dw);
    }
    if let Some(db) = db {
        for row in dy.chunks(d_out) {
            crate::elementwise::axpy(1.0, row, db);
        }
    }
}

pub mod reference {
    pub fn forward(
        n: usize,
        d_in: usize,
        d_out: usize,
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        y: &mut [f32],
    ) {
        for i in 0..n {
            for o in 0..d_out {
                y[i * d_out + o] = (0..d_in)
                    .map(|k| x[i * d_in + k] * w[o * d_in + k])
                    .sum::<f32>()
                    + b.map_or(0.0, |b| b[o]);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        n: usize,
        d_in: usize,
        d_out: usize,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        dx: Option<&mut [f32]>,
        dw: Option<&mut [f32]>,
        db: Option<&mut [f32]>,
    ) {
        if let Some(dx) = dx {
            for i in 0..n {
                for k in 0..d_in {
                    dx[i * d_in + k] += (0..d_out)
                        .map(|o| dy[i * d_out + o] * w[o * d_in + k])
                        .sum::<f32>();
                }
            }
        }
        if let Some(dw) = dw {
            for o in 0..d_out {
                for k in 0..d_in {
                    dw[o * d_in + k] += (0..n)
                        .map(|i| dy[i * d_out + o] * x[i * d_in + k])
                        .sum::<f32>();
                }
            }
        }
        if let Some(db) = db {
            for o in 0..d_out {
                db[o] += (0..n).map(|i| dy[i * d_out + o]).sum::<f32>();
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
        fn fast_matches_reference(
            (n, di, dout, x, w, b, dy) in (1usize..6, 1usize..12, 1usize..12).prop_flat_map(|(n, di, dout)|
                (Just(n), Just(di), Just(dout), vec_f32(n * di), vec_f32(dout * di), vec_f32(dout), vec_f32(n * dout)))
        ) {
            let (mut y, mut yr) = (vec![0.0; n * dout], vec![0.0; n * dout]);
            forward(n, di, dout, &x, &w, Some(&b), &mut y);
            reference::forward(n, di, dout, &x, &w, Some(&b), &mut yr);
            assert_close(&y, &yr, 1e-5);
            let (mut dx, mut dw, mut db) = (x.clone(), w.clone(), b.clone());
            let (mut dxr, mut dwr, mut dbr) = (x.clone(), w.clone(), b.clone());
            backward(n, di, dout, &x, &w, &dy, Some(&mut dx), Some(&mut dw), Some(&mut db));
            reference::backward(n, di, dout, &x, &w, &dy, Some(&mut dxr), Some(&mut dwr), Some(&mut dbr));
            assert_close(&dx, &dxr, 1e-5);
            assert_close(&dw, &dwr, 1e-5);
            assert_close(&db, &dbr, 1e-5);
        }
    }
}
