//! Optimizer update passes and the opt-in max-gradient transform, each one fused SIMD pass.
//!
//! Every update reads the gradient as `grad_scale * g - grad_shift`: `grad_scale` carries global-norm
//! clipping and `grad_shift` the max-gradient transform (`g <- g - max(g)` after clipping, shift =
//! grad_scale * max(g)), so neither needs its own pass over the buffer.
use crate::par::{self, ELEMENTWISE_CHUNK};
use crate::simd::{self, f32x8, load, store, LANES};

/// max of one slice, eight lanes at a time.
fn max_serial(buf: &[f32]) -> f32 {
    let n8 = buf.len() / LANES * LANES;
    let mut m = f32x8::splat(f32::NEG_INFINITY);
    for i in (0..n8).step_by(LANES) {
        m = m.max(load(&buf[i..]));
    }
    buf[n8..].iter().fold(simd::hmax(m), |a, &b| a.max(b))
}

/// max(buf) (-inf for an empty buffer). Chunks in parallel: max is exact, so the order of the
/// reduction cannot change the result.
pub fn max_value(buf: &[f32]) -> f32 {
    use rayon::prelude::*;
    buf.par_chunks(ELEMENTWISE_CHUNK)
        .with_min_len(par::min_len(buf.len()))
        .map(max_serial)
        .reduce(|| f32::NEG_INFINITY, f32::max)
}

/// The max-gradient transform on its own: buf <- buf - max(buf).
pub fn subtract_max(buf: &mut [f32]) {
    let m = max_value(buf);
    let work = buf.len();
    par::chunks(buf, ELEMENTWISE_CHUNK, work, |_, buf| {
        let n8 = buf.len() / LANES * LANES;
        for i in (0..n8).step_by(LANES) {
            let v = load(&buf[i..]) - f32x8::splat(m);
            store(v, &mut buf[i..]);
        }
        for v in &mut buf[n8..] {
            *v -= m;
        }
    });
}

/// Sum of squares (for the global gradient norm) and max of one buffer, in one read pass: the
/// pass that computes the clip norm also yields the max-gradient shift. The sum runs in
/// [`simd::dot`]'s fixed order (the same bits as `dot(buf, buf)`); max is exact.
pub fn sum_squares_and_max(buf: &[f32]) -> (f32, f32) {
    let n8 = buf.len() / LANES * LANES;
    let mut m = f32x8::splat(f32::NEG_INFINITY);
    let [mut s] = simd::reduce(n8, |i| {
        let x = load(&buf[i..]);
        m = m.max(x);
        [x * x]
    });
    let mut m = simd::hmax(m);
    for &x in &buf[n8..] {
        s += x * x;
        m = m.max(x);
    }
    (s, m)
}

/// Hyper-parameters of SGD with momentum and L2 weight decay (PyTorch's `SGD`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
}

/// d = grad_scale * g - grad_shift + wd * w; v = momentum * v + d; w -= lr * v.
/// Fixed chunks in parallel (elementwise: the same bits for any thread count).
pub fn sgd_step(h: Sgd, grad_scale: f32, grad_shift: f32, w: &mut [f32], g: &[f32], v: &mut [f32]) {
    let work = 6 * w.len();
    par::chunks2(
        w,
        ELEMENTWISE_CHUNK,
        v,
        ELEMENTWISE_CHUNK,
        work,
        |ci, w, v| {
            sgd_chunk(
                h,
                grad_scale,
                grad_shift,
                w,
                &g[ci * ELEMENTWISE_CHUNK..][..w.len()],
                v,
            )
        },
    );
}

fn sgd_chunk(h: Sgd, grad_scale: f32, grad_shift: f32, w: &mut [f32], g: &[f32], v: &mut [f32]) {
    let n8 = w.len() / LANES * LANES;
    let [lr, mo, wd, gs, sh] =
        [h.lr, h.momentum, h.weight_decay, grad_scale, grad_shift].map(f32x8::splat);
    for i in (0..n8).step_by(LANES) {
        let wv = load(&w[i..]);
        let d = gs * load(&g[i..]) - sh + wd * wv;
        let vv = mo * load(&v[i..]) + d;
        store(vv, &mut v[i..]);
        store(wv - lr * vv, &mut w[i..]);
    }
    reference::sgd_step(
        h,
        grad_scale,
        grad_shift,
        &mut w[n8..],
        &g[n8..],
        &mut v[n8..],
    );
}

/// Hyper-parameters of Adam with L2 weight decay (PyTorch's `Adam`, not AdamW).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

/// One Adam step number `step` (1-based): d = grad_scale * g - grad_shift + wd * w;
/// m = b1 m + (1 - b1) d; v = b2 v + (1 - b2) d^2; w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
#[allow(clippy::too_many_arguments)]
pub fn adam_step(
    h: Adam,
    step: u64,
    grad_scale: f32,
    grad_shift: f32,
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    let (bc1, bc2_sqrt) = reference::bias_corrections(h, step);
    let n8 = w.len() / LANES * LANES;
    let [b1, b2, eps, wd, gs, sh, step_size, bc2s] = [
        h.beta1,
        h.beta2,
        h.eps,
        h.weight_decay,
        grad_scale,
        grad_shift,
        h.lr / bc1,
        bc2_sqrt,
    ]
    .map(f32x8::splat);
    for i in (0..n8).step_by(LANES) {
        let wv = load(&w[i..]);
        let d = gs * load(&g[i..]) - sh + wd * wv;
        let mv = b1 * load(&m[i..]) + (f32x8::ONE - b1) * d;
        let vv = b2 * load(&v[i..]) + (f32x8::ONE - b2) * d * d;
        store(mv, &mut m[i..]);
        store(vv, &mut v[i..]);
        store(
            wv - step_size * (mv / (vv.sqrt() / bc2s + eps)),
            &mut w[i..],
        );
    }
    reference::adam_step(
        h,
        step,
        grad_scale,
        grad_shift,
        &mut w[n8..],
        &g[n8..],
        &mut m[n8..],
        &mut v[n8..],
    );
}

pub mod reference {
    use super::{Adam, Sgd};

    pub fn max_value(buf: &[f32]) -> f32 {
        buf.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))
    }

    /// In f64 (the fast pass sums in f32 in another order: compare with a tolerance).
    pub fn sum_squares_and_max(buf: &[f32]) -> (f64, f32) {
        let s = buf.iter().map(|&x| x as f64 * x as f64).sum();
        (s, max_value(buf))
    }

    pub fn subtract_max(buf: &mut [f32]) {
        let m = max_value(buf);
        buf.iter_mut().for_each(|v| *v -= m);
    }

    pub fn sgd_step(
        h: Sgd,
        grad_scale: f32,
        grad_shift: f32,
        w: &mut [f32],
        g: &[f32],
        v: &mut [f32],
    ) {
        for i in 0..w.len() {
            let d = grad_scale * g[i] - grad_shift + h.weight_decay * w[i];
            v[i] = h.momentum * v[i] + d;
            w[i] -= h.lr * v[i];
        }
    }

    /// (1 - b1^t, sqrt(1 - b2^t)), computed in f64.
    pub(crate) fn bias_corrections(h: Adam, step: u64) -> (f32, f32) {
        let t = step.max(1) as i32;
        (
            (1.0 - (h.beta1 as f64).powi(t)) as f32,
            (1.0 - (h.beta2 as f64).powi(t)).sqrt() as f32,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn adam_step(
        h: Adam,
        step: u64,
        grad_scale: f32,
        grad_shift: f32,
        w: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) {
        let (bc1, bc2_sqrt) = bias_corrections(h, step);
        let step_size = h.lr / bc1;
        for i in 0..w.len() {
            let d = grad_scale * g[i] - grad_shift + h.weight_decay * w[i];
            m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * d;
            v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * d * d;
            w[i] -= step_size * (m[i] / (v[i].sqrt() / bc2_sqrt + h.eps));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::vec_f32;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn simd_equals_reference_bitwise(
            (w, g, m, v) in prop_oneof![0usize..70, Just(3 * ELEMENTWISE_CHUNK + 11)].prop_flat_map(|n| (vec_f32(n), vec_f32(n), vec_f32(n), vec_f32(n))),
            scale in 0.1f32..1.0, step in 1u64..5,
        ) {
            prop_assert_eq!(max_value(&g).to_bits(), reference::max_value(&g).to_bits());
            let ((s, mx), (rs, rmx)) = (sum_squares_and_max(&g), reference::sum_squares_and_max(&g));
            prop_assert_eq!(mx.to_bits(), rmx.to_bits());
            prop_assert_eq!(s.to_bits(), simd::dot(&g, &g).to_bits());
            prop_assert!((s as f64 - rs).abs() <= 1e-5 * rs + 1e-30, "{} vs {}", s, rs);
            let (mut a, mut b) = (g.clone(), g.clone());
            subtract_max(&mut a); reference::subtract_max(&mut b);
            prop_assert_eq!(&a, &b);
            let shift = scale * max_value(&g);
            let h = Sgd { lr: 0.025, momentum: 0.9, weight_decay: 3e-4 };
            let (mut w1, mut v1, mut w2, mut v2) = (w.clone(), m.clone(), w.clone(), m.clone());
            sgd_step(h, scale, shift, &mut w1, &g, &mut v1);
            reference::sgd_step(h, scale, shift, &mut w2, &g, &mut v2);
            prop_assert_eq!(&w1, &w2); prop_assert_eq!(&v1, &v2);
            let v = v.iter().map(|x| x.abs()).collect::<Vec<_>>();
            let h = Adam { lr: 3e-4, beta1: 0.5, beta2: 0.999, eps: 1e-8, weight_decay: 1e-3 };
            let (mut w1, mut m1, mut v1) = (w.clone(), m.clone(), v.clone());
            let (mut w2, mut m2, mut v2) = (w.clone(), m.clone(), v.clone());
            adam_step(h, step, scale, shift, &mut w1, &g, &mut m1, &mut v1);
            reference::adam_step(h, step, scale, shift, &mut w2, &g, &mut m2, &mut v2);
            prop_assert_eq!(&w1, &w2); prop_assert_eq!(&m1, &m2); prop_assert_eq!(&v1, &v2);
        }
    }

    /// At step 1 (bias-corrected) Adam moves by lr * g / (|g| + eps): a gradient of eps halves the
    /// step. Checked on the SIMD body (11 values) and the tail (3), and in the reference.
    #[test]
    fn adam_adds_eps_to_the_denominator() {
        let h = Adam {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        for n in [3usize, 11] {
            let g = vec![1e-8f32; n];
            let (mut w1, mut m1, mut v1) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            adam_step(h, 1, 1.0, 0.0, &mut w1, &g, &mut m1, &mut v1);
            let (mut w2, mut m2, mut v2) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            reference::adam_step(h, 1, 1.0, 0.0, &mut w2, &g, &mut m2, &mut v2);
            for w in w1.iter().chain(&w2) {
                assert!((w + 0.05).abs() < 1e-5, "{w} instead of -0.05");
            }
        }
    }

    #[test]
    fn subtract_max_makes_max_zero() {
        let mut g: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin()).collect();
        subtract_max(&mut g);
        assert_eq!(max_value(&g), 0.0);
    }
}
