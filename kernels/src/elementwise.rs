//! Elementwise kernels: relu, add, scale, axpy and the weighted sum of k inputs (the mixed op).
//!
//! The SIMD versions use plain multiply and add (no fused multiply-add), so they agree with the
//! scalar references bit for bit.
use crate::par::{self, ELEMENTWISE_CHUNK};
use crate::simd::{self, f32x8, load, store, LANES};

/// Rewrites `out` in place: full 8-lane blocks through `f8`, the tail through `f1`, chunked in
/// parallel. Both get the element offset into the whole buffer and the current output value(s).
fn map<F8, F1>(out: &mut [f32], f8: F8, f1: F1)
where
    F8: Fn(usize, f32x8) -> f32x8 + Sync + Send,
    F1: Fn(usize, f32) -> f32 + Sync + Send,
{
    let work = out.len();
    par::chunks(out, ELEMENTWISE_CHUNK, work, |ci, chunk| {
        let base = ci * ELEMENTWISE_CHUNK;
        let n8 = chunk.len() / LANES * LANES;
        for i in (0..n8).step_by(LANES) {
            let v = f8(base + i, load(&chunk[i..]));
            store(v, &mut chunk[i..]);
        }
        for (i, c) in chunk.iter_mut().enumerate().skip(n8) {
            *c = f1(base + i, *c);
        }
    });
}

/// y = max(x, 0).
pub fn relu(x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    map(
        y,
        |i, _| load(&x[i..]).max(f32x8::ZERO),
        |i, _| x[i].max(0.0),
    );
}

/// `dx += dy * [x > 0]`. (The derivative at exactly 0 is taken as 0, as PyTorch does.)
pub fn relu_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    debug_assert!(x.len() == dy.len() && dy.len() == dx.len());
    map(
        dx,
        |i, d| {
            d + load(&x[i..])
                .simd_gt(f32x8::ZERO)
                .select(load(&dy[i..]), f32x8::ZERO)
        },
        |i, d| d + if x[i] > 0.0 { dy[i] } else { 0.0 },
    );
}

/// y = a + b.
pub fn add(a: &[f32], b: &[f32], y: &mut [f32]) {
    debug_assert!(a.len() == b.len() && b.len() == y.len());
    map(y, |i, _| load(&a[i..]) + load(&b[i..]), |i, _| a[i] + b[i]);
}

/// y = s * x.
pub fn scale(s: f32, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    let sv = f32x8::splat(s);
    map(y, |i, _| sv * load(&x[i..]), |i, _| s * x[i]);
}

/// y += a * x.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    let av = f32x8::splat(a);
    map(y, |i, y| y + av * load(&x[i..]), |i, y| y + a * x[i]);
}

/// How many values of y one task of [`add_parts`] sums (a multiple of the SIMD width).
const PARTS_RUN: usize = 512;

/// y += the sum of the parts, each `y.len()` values from `offset` on in one `stride`-long chunk of
/// `parts` (per-sample partial weight gradients, one per sample's scratch slot): every value adds
/// them in chunk order ([`axpy`]'s bits, part by part), runs of y split over threads.
pub fn add_parts(y: &mut [f32], parts: &[f32], stride: usize, offset: usize) {
    let work = y.len() * parts.len().div_ceil(stride.max(1));
    par::chunks(y, PARTS_RUN, work, |i, y| {
        let at = offset + i * PARTS_RUN;
        for part in parts.chunks(stride) {
            axpy(1.0, &part[at..][..y.len()], y);
        }
    });
}

/// y = 0.0 + a * x when `add` is false (the bits of [`axpy`] into zeros, y's old values unread),
/// else [`axpy`]: a gradient written into a fresh buffer or added into an accumulated one.
pub fn axpy_to(a: f32, x: &[f32], y: &mut [f32], add: bool) {
    if add {
        return axpy(a, x, y);
    }
    debug_assert_eq!(x.len(), y.len());
    let av = f32x8::splat(a);
    map(
        y,
        |i, _| f32x8::ZERO + av * load(&x[i..]),
        |i, _| 0.0 + a * x[i],
    );
}

/// `y = sum_k w[k] * xs[k]` (the mixed op's weighted sum), accumulated in order k = 0, 1, ...
/// Inputs whose weight is exactly 0 still take part (0 * x), so a NaN in an input is not hidden.
pub fn weighted_sum(w: &[f32], xs: &[&[f32]], y: &mut [f32]) {
    debug_assert_eq!(w.len(), xs.len());
    debug_assert!(xs.iter().all(|x| x.len() == y.len()));
    map(
        y,
        |i, _| {
            let mut acc = f32x8::ZERO;
            for (wk, xk) in w.iter().zip(xs) {
                acc += f32x8::splat(*wk) * load(&xk[i..]);
            }
            acc
        },
        |i, _| {
            let mut acc = 0.0;
            for (wk, xk) in w.iter().zip(xs) {
                acc += wk * xk[i];
            }
            acc
        },
    );
}

/// Length of the scratch [`weighted_sum_dots`] needs: one partial dot per chunk and input.
pub fn weighted_sum_dots_len(n: usize, inputs: usize) -> usize {
    n.div_ceil(ELEMENTWISE_CHUNK) * inputs
}

/// The weights' gradient of [`weighted_sum`]: `dots[k] = <dy, xs[k]>` for every input k (the inputs'
/// own gradients are plain [`axpy`]s). Parallel over fixed chunks of the buffers, each chunk's dots
/// in `partial` ([`weighted_sum_dots_len`]), then added up in chunk order: the same bits for any
/// thread count.
pub fn weighted_sum_dots(dy: &[f32], xs: &[&[f32]], partial: &mut [f32], dots: &mut [f32]) {
    debug_assert!(xs.iter().all(|x| x.len() == dy.len()) && dots.len() == xs.len());
    let (n, k) = (dy.len(), xs.len());
    let partial = &mut partial[..weighted_sum_dots_len(n, k)];
    par::chunks(partial, k, 2 * n * k, |c, p| {
        let r = c * ELEMENTWISE_CHUNK..((c + 1) * ELEMENTWISE_CHUNK).min(n);
        for (pk, x) in p.iter_mut().zip(xs) {
            *pk = simd::dot(&dy[r.clone()], &x[r.clone()]);
        }
    });
    for (j, d) in dots.iter_mut().enumerate() {
        *d = partial.iter().skip(j).step_by(k.max(1)).sum();
    }
}

/// The readable definitions.
pub mod reference {
    pub fn relu(x: &[f32], y: &mut [f32]) {
        for (y, x) in y.iter_mut().zip(x) {
            *y = x.max(0.0);
        }
    }

    pub fn relu_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        for i in 0..x.len() {
            dx[i] += if x[i] > 0.0 { dy[i] } else { 0.0 };
        }
    }

    pub fn add(a: &[f32], b: &[f32], y: &mut [f32]) {
        for i in 0..y.len() {
            y[i] = a[i] + b[i];
        }
    }

    pub fn scale(s: f32, x: &[f32], y: &mut [f32]) {
        for i in 0..y.len() {
            y[i] = s * x[i];
        }
    }

    pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
        for i in 0..y.len() {
            y[i] += a * x[i];
        }
    }

    pub fn weighted_sum(w: &[f32], xs: &[&[f32]], y: &mut [f32]) {
        for i in 0..y.len() {
            let mut acc = 0.0;
            for (wk, xk) in w.iter().zip(xs) {
                acc += wk * xk[i];
            }
            y[i] = acc;
        }
    }

    pub fn weighted_sum_dots(dy: &[f32], xs: &[&[f32]], dots: &mut [f32]) {
        for (d, x) in dots.iter_mut().zip(xs) {
            *d = x.iter().zip(dy).map(|(a, b)| a * b).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, bits, vec_f32};
    use proptest::prelude::*;

    fn lens() -> impl Strategy<Value = usize> {
        prop_oneof![
            0usize..40,
            Just(ELEMENTWISE_CHUNK + 13),
            Just(3 * ELEMENTWISE_CHUNK + 5)
        ]
    }

    #[test]
    fn axpy_to_a_fresh_buffer_has_the_bits_of_axpy_into_zeros() {
        // -1 * 0 = -0.0, and 0.0 + -0.0 = +0.0: a plain a * x would keep the sign.
        let x = [0.0, -0.0, 1.5, 0.0, 2.0, 0.0, 0.0, 0.0, -0.0];
        let (mut fresh, mut zeros) = ([f32::NAN; 9], [0.0; 9]);
        axpy_to(-1.0, &x, &mut fresh, false);
        axpy(-1.0, &x, &mut zeros);
        assert_eq!(bits(&fresh), bits(&zeros));
        assert_eq!(fresh[0].to_bits(), 0.0f32.to_bits());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// The parallel sum of parts has the bits of adding them one after the other, across the
        /// runs the threads take (lengths past several runs, parts with gaps between them).
        #[test]
        fn add_parts_adds_the_parts_in_order(
            (n, parts, y) in (0usize..1700, 1usize..6, 0usize..9).prop_flat_map(|(n, k, gap)| {
                let stride = n + gap + 3;
                (Just(n), vec_f32(k * stride), vec_f32(n)).prop_map(move |(n, p, y)| {
                    (n, (p, stride), y)
                })
            }),
        ) {
            let (parts, stride) = parts;
            let mut want = y.clone();
            for part in parts.chunks(stride) {
                reference::axpy(1.0, &part[3..][..n], &mut want);
            }
            let mut got = y;
            add_parts(&mut got, &parts, stride, 3);
            prop_assert_eq!(bits(&got), bits(&want));
        }

        #[test]
        fn simd_equals_reference_bitwise(
            (x, y, z) in lens().prop_flat_map(|n| (vec_f32(n), vec_f32(n), vec_f32(n))),
            a in -2.0f32..2.0,
            w in proptest::collection::vec(-1.0f32..1.0, 3),
        ) {
            let n = x.len();
            let (mut out, mut want) = (vec![0.0; n], vec![0.0; n]);
            relu(&x, &mut out); reference::relu(&x, &mut want); prop_assert_eq!(&out, &want);
            add(&x, &y, &mut out); reference::add(&x, &y, &mut want); prop_assert_eq!(&out, &want);
            scale(a, &x, &mut out); reference::scale(a, &x, &mut want); prop_assert_eq!(&out, &want);
            let (mut o2, mut w2) = (z.clone(), z.clone());
            axpy(a, &x, &mut o2); reference::axpy(a, &x, &mut w2); prop_assert_eq!(&o2, &w2);
            axpy_to(a, &x, &mut w2, true); axpy(a, &x, &mut o2); prop_assert_eq!(&o2, &w2);
            let (mut fresh, mut zeros) = (vec![f32::NAN; n], vec![0.0; n]);
            axpy_to(a, &x, &mut fresh, false); axpy(a, &x, &mut zeros);
            prop_assert_eq!(bits(&fresh), bits(&zeros));
            let (mut o3, mut w3) = (z.clone(), z.clone());
            relu_backward(&x, &y, &mut o3); reference::relu_backward(&x, &y, &mut w3); prop_assert_eq!(&o3, &w3);
            let xs: [&[f32]; 3] = [&x, &y, &z];
            weighted_sum(&w, &xs, &mut out); reference::weighted_sum(&w, &xs, &mut want); prop_assert_eq!(&out, &want);
            let (mut dots, mut want_dots) = ([0.0; 3], [0.0; 3]);
            let mut partial = vec![f32::NAN; weighted_sum_dots_len(n, 3)];
            weighted_sum_dots(&x, &xs, &mut partial, &mut dots);
            reference::weighted_sum_dots(&x, &xs, &mut want_dots);
            assert_close(&dots, &want_dots, 1e-4 * (n as f32).sqrt().max(1.0));
        }
    }
}
