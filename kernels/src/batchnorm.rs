//! Batch normalisation over [N, C, HW] with PyTorch's semantics: training mode normalises with the
//! batch mean and the biased batch variance, eval mode with the running statistics; the running
//! statistics move with `momentum` towards the batch mean and the *unbiased* batch variance.
//!
//! y = (x - mean) * invstd * gamma + beta, invstd = 1 / sqrt(var + eps); gamma = 1, beta = 0 when the
//! layer has no affine parameters. Statistics are summed per plane with f32x8 and across planes in f64,
//! in a fixed order; the fast kernels run in parallel over channels (statistics) and planes (outputs).
use crate::par;
use crate::simd::{self, f32x8, load, store, LANES};

/// The layout of a batch-norm input: N samples, C channels, HW values per plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnShape {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
}

impl BnShape {
    fn count(&self) -> usize {
        self.n * self.hw
    }
}

/// out[i] = a * x[i] + b over a plane (SIMD body, scalar tail); x is `out` itself when `None`.
fn affine_plane(x: Option<&[f32]>, a: f32, b: f32, out: &mut [f32]) {
    let n8 = out.len() / LANES * LANES;
    let (av, bv) = (f32x8::splat(a), f32x8::splat(b));
    for i in (0..n8).step_by(LANES) {
        let v = load(&x.unwrap_or(out)[i..]);
        store(av * v + bv, &mut out[i..]);
    }
    for i in n8..out.len() {
        out[i] = a * x.unwrap_or(out)[i] + b;
    }
}

/// Sum of (x - m)^2 over a plane.
fn sq_dev(x: &[f32], m: f32) -> f32 {
    let n8 = x.len() / LANES * LANES;
    let mv = f32x8::splat(m);
    let [mut s] = simd::reduce(n8, |i| {
        let d = load(&x[i..]) - mv;
        [d * d]
    });
    for v in &x[n8..] {
        s += (v - m) * (v - m);
    }
    s
}

/// One plane's share of the batch statistics: [sum, sum of squared deviations from the plane's
/// own mean]. A producer that has the plane in cache (the fused separable block) computes it there;
/// [`merge_stats`] turns the planes' shares into the batch statistics.
pub fn plane_stats(p: &[f32]) -> [f32; 2] {
    let sum = simd::sum(p);
    [sum, sq_dev(p, sum / p.len().max(1) as f32)]
}

/// Length of the per-plane statistics buffer of [`batch_stats`] and [`merge_stats`]: 2 * N * C.
pub fn stats_partial_len(s: BnShape) -> usize {
    2 * s.n * s.c
}

/// Per-channel batch mean and biased variance from each plane's [`plane_stats`] (`partial`
/// [N, C, 2]), merged in f64 in sample order (Chan et al.): mean = sum / count, and the squared
/// deviations from it = sum over planes of (M2_p + hw * (mean_p - mean)^2).
pub fn merge_stats(s: BnShape, partial: &[f32], mean: &mut [f32], var: &mut [f32]) {
    let (hw, count) = (s.hw as f64, s.count() as f64);
    for c in 0..s.c {
        let plane = |n: usize| &partial[2 * (n * s.c + c)..][..2];
        let mu = (0..s.n).map(|n| plane(n)[0] as f64).sum::<f64>() / count;
        let m2: f64 = (0..s.n)
            .map(|n| {
                let d = plane(n)[0] as f64 / hw - mu;
                plane(n)[1] as f64 + hw * d * d
            })
            .sum();
        mean[c] = mu as f32;
        var[c] = (m2 / count) as f32;
    }
}

/// Per-channel batch mean and biased variance of x: [`plane_stats`] of every plane, in parallel,
/// into `partial` ([`stats_partial_len`]), then [`merge_stats`].
pub fn batch_stats(s: BnShape, x: &[f32], partial: &mut [f32], mean: &mut [f32], var: &mut [f32]) {
    let partial = &mut partial[..stats_partial_len(s)];
    par::chunks(partial, 2, 2 * x.len(), |p, out| {
        out.copy_from_slice(&plane_stats(&x[p * s.hw..][..s.hw]))
    });
    merge_stats(s, partial, mean, var);
}

/// y = gamma * (x - mean) / sqrt(var + eps) + beta with the given per-channel statistics (batch
/// statistics in training, running ones in eval). `gamma`/`beta` are `None` without affine parameters.
#[allow(clippy::too_many_arguments)]
pub fn normalize(
    s: BnShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    y: &mut [f32],
) {
    normalize_from(s, Some(x), (mean, var, eps), gamma, beta, y);
}

/// [`normalize`] with x = y: y normalised where it is, as a producer whose pre-normalisation
/// values nobody reads any more does (no second tensor, no write-allocate pass). Same bits.
pub fn normalize_in_place(
    s: BnShape,
    y: &mut [f32],
    (mean, var, eps): (&[f32], &[f32], f32),
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
) {
    normalize_from(s, None, (mean, var, eps), gamma, beta, y);
}

/// [`normalize`] reading x, or y itself where x is `None`.
fn normalize_from(
    s: BnShape,
    x: Option<&[f32]>,
    (mean, var, eps): (&[f32], &[f32], f32),
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    y: &mut [f32],
) {
    par::chunks(y, s.hw, 2 * y.len(), |p, y| {
        let c = p % s.c;
        let a = gamma.map_or(1.0, |g| g[c]) / (var[c] + eps).sqrt();
        let b = beta.map_or(0.0, |b| b[c]) - mean[c] * a;
        affine_plane(x.map(|x| &x[p * s.hw..][..s.hw]), a, b, y);
    });
}

/// running <- (1 - momentum) * running + momentum * batch, with the batch variance made unbiased
/// (times count / (count - 1)) as PyTorch does.
pub fn update_running(
    s: BnShape,
    mean: &[f32],
    var: &[f32],
    momentum: f32,
    running_mean: &mut [f32],
    running_var: &mut [f32],
) {
    let m = s.count() as f32;
    let unbias = if m > 1.0 { m / (m - 1.0) } else { 1.0 };
    for c in 0..s.c {
        running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean[c];
        running_var[c] = (1.0 - momentum) * running_var[c] + momentum * var[c] * unbias;
    }
}

/// Length of the scratch buffer the backward kernels need: 3 * C.
pub fn backward_scratch_len(s: BnShape) -> usize {
    3 * s.c
}

/// Backward of training-mode batch norm (the batch statistics depend on x):
/// dx += gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)), dgamma += sum(dy * xhat),
/// dbeta += sum(dy), per channel, with xhat = (x - mean) * invstd. `scratch`: [`backward_scratch_len`].
#[allow(clippy::too_many_arguments)]
pub fn backward_train(
    s: BnShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
    gamma: Option<&[f32]>,
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dgamma: Option<&mut [f32]>,
    dbeta: Option<&mut [f32]>,
    scratch: &mut [f32],
) {
    let (sum_dy, sum_dy_xhat) = scratch[..2 * s.c].split_at_mut(s.c);
    par::chunks2(sum_dy, 1, sum_dy_xhat, 1, 2 * x.len(), |c, sdy, sdx| {
        let invstd = 1.0 / (var[c] + eps).sqrt();
        let (mut a, mut b) = (0.0f64, 0.0f64);
        for n in 0..s.n {
            let off = (n * s.c + c) * s.hw;
            let (xp, dyp) = (&x[off..][..s.hw], &dy[off..][..s.hw]);
            // sum(dy * (x - mean)) = dot(dy, x) - mean * sum(dy), per plane.
            let (sum, dot) = simd::sum_and_dot(dyp, xp);
            a += sum as f64;
            b += (dot - mean[c] * sum) as f64;
        }
        sdy[0] = a as f32;
        sdx[0] = (b as f32) * invstd;
    });
    if let Some(dg) = dgamma {
        crate::elementwise::axpy(1.0, sum_dy_xhat, dg);
    }
    if let Some(db) = dbeta {
        crate::elementwise::axpy(1.0, sum_dy, db);
    }
    let Some(dx) = dx else { return };
    let m = s.count() as f32;
    let (sum_dy, sum_dy_xhat) = (&*sum_dy, &*sum_dy_xhat);
    par::chunks(dx, s.hw, 4 * x.len(), |p, dx| {
        let c = p % s.c;
        let invstd = 1.0 / (var[c] + eps).sqrt();
        let a = gamma.map_or(1.0, |g| g[c]) * invstd;
        // dx += a * dy + bx * (x - mean) + k, expanded so one pass does it.
        let bx = -a * invstd * sum_dy_xhat[c] / m;
        let k = -a * sum_dy[c] / m - bx * mean[c];
        let (xp, dyp) = (&x[p * s.hw..][..s.hw], &dy[p * s.hw..][..s.hw]);
        let n8 = s.hw / LANES * LANES;
        let (av, bv, kv) = (f32x8::splat(a), f32x8::splat(bx), f32x8::splat(k));
        for i in (0..n8).step_by(LANES) {
            store(
                load(&dx[i..]) + av * load(&dyp[i..]) + bv * load(&xp[i..]) + kv,
                &mut dx[i..],
            );
        }
        for i in n8..s.hw {
            dx[i] += a * dyp[i] + bx * xp[i] + k;
        }
    });
}

/// The input gradient of training-mode batch norm without affine parameters, from its *output*
/// y = xhat (so its input need not be kept), as per-channel coefficients:
/// dx = invstd * (dy - mean(dy) - y * mean(dy * y)) = `a[c] * dy + b[c] * y + k[c]`.
/// Made in one pass over y and dy; applied plane by plane ([`OutputGrad::add_plane`]), by
/// [`backward_train_from_output`] or by a producing op that wants dL/dx one sample at a time.
pub struct OutputGrad<'a> {
    a: &'a [f32],
    b: &'a [f32],
    k: &'a [f32],
}

impl<'a> OutputGrad<'a> {
    /// The coefficients for y, dy [N, C, H, W] and the batch variance `var`, kept in `scratch`
    /// ([`backward_scratch_len`] values).
    pub fn train(
        s: BnShape,
        y: &[f32],
        var: &[f32],
        eps: f32,
        dy: &[f32],
        scratch: &'a mut [f32],
    ) -> Self {
        let (sums, rest) = scratch[..3 * s.c].split_at_mut(s.c);
        let (a, b) = rest.split_at_mut(s.c);
        par::chunks2(sums, 1, b, 1, 2 * y.len(), |c, sa, sb| {
            let (mut sum_dy, mut sum_dy_y) = (0.0f64, 0.0f64);
            for n in 0..s.n {
                let off = (n * s.c + c) * s.hw;
                let (yp, dyp) = (&y[off..][..s.hw], &dy[off..][..s.hw]);
                let (s, d) = simd::sum_and_dot(dyp, yp);
                (sum_dy, sum_dy_y) = (sum_dy + s as f64, sum_dy_y + d as f64);
            }
            sa[0] = sum_dy as f32;
            sb[0] = sum_dy_y as f32;
        });
        // The sums become coefficients in place: sum(dy) -> k, sum(dy * y) -> b; a = invstd.
        let m = s.count() as f32;
        for c in 0..s.c {
            let invstd = 1.0 / (var[c] + eps).sqrt();
            (a[c], b[c], sums[c]) = (invstd, -invstd * b[c] / m, -invstd * sums[c] / m);
        }
        OutputGrad { a, b, k: sums }
    }

    /// `dx += a[c] * dy + b[c] * y + k[c]` over one plane of channel c.
    pub fn add_plane(&self, c: usize, y: &[f32], dy: &[f32], dx: &mut [f32]) {
        self.plane::<true>(c, y, dy, dx)
    }

    /// `dx = a[c] * dy + b[c] * y + k[c]` over one plane of channel c: the same bits as
    /// [`OutputGrad::add_plane`] into zeros, without zeroing dx first.
    pub fn write_plane(&self, c: usize, y: &[f32], dy: &[f32], dx: &mut [f32]) {
        self.plane::<false>(c, y, dy, dx)
    }

    #[inline(always)]
    fn plane<const ADD: bool>(&self, c: usize, y: &[f32], dy: &[f32], dx: &mut [f32]) {
        let (a, b, k) = (self.a[c], self.b[c], self.k[c]);
        let n8 = dx.len() / LANES * LANES;
        let (av, bv, kv) = (f32x8::splat(a), f32x8::splat(b), f32x8::splat(k));
        for i in (0..n8).step_by(LANES) {
            // Starting from +0.0, not from a * dy: the bits of adding into a zeroed buffer.
            let acc = if ADD { load(&dx[i..]) } else { f32x8::ZERO };
            store(
                acc + av * load(&dy[i..]) + bv * load(&y[i..]) + kv,
                &mut dx[i..],
            );
        }
        for i in n8..dx.len() {
            let acc = if ADD { dx[i] } else { 0.0 };
            dx[i] = acc + (a * dy[i] + b * y[i] + k);
        }
    }
}

/// Backward of training-mode batch norm without affine parameters, from its *output* y = xhat:
/// dx += invstd * (dy - mean(dy) - y * mean(dy * y)) per channel ([`OutputGrad`]), or, when not
/// `add`, dx = that (the bits of adding into zeros; dx's old values unread).
/// `scratch`: [`backward_scratch_len`].
#[allow(clippy::too_many_arguments)]
pub fn backward_train_from_output(
    s: BnShape,
    y: &[f32],
    var: &[f32],
    eps: f32,
    dy: &[f32],
    dx: &mut [f32],
    add: bool,
    scratch: &mut [f32],
) {
    let coef = OutputGrad::train(s, y, var, eps, dy, scratch);
    par::chunks(dx, s.hw, 4 * y.len(), |p, dx| {
        let (at, c) = (p * s.hw, p % s.c);
        let (y, dy) = (&y[at..][..s.hw], &dy[at..][..s.hw]);
        if add {
            coef.add_plane(c, y, dy, dx)
        } else {
            coef.write_plane(c, y, dy, dx)
        }
    });
}

/// Backward of eval-mode batch norm (fixed statistics): dx += gamma * invstd * dy,
/// dgamma += sum(dy * xhat), dbeta += sum(dy). Shares [`backward_train`]'s per-channel sums.
#[allow(clippy::too_many_arguments)]
pub fn backward_eval(
    s: BnShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
    gamma: Option<&[f32]>,
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dgamma: Option<&mut [f32]>,
    dbeta: Option<&mut [f32]>,
    scratch: &mut [f32],
) {
    if dgamma.is_some() || dbeta.is_some() {
        backward_train(
            s, x, mean, var, eps, gamma, dy, None, dgamma, dbeta, scratch,
        );
    }
    if let Some(dx) = dx {
        par::chunks(dx, s.hw, 2 * x.len(), |p, dx| {
            let c = p % s.c;
            let a = gamma.map_or(1.0, |g| g[c]) / (var[c] + eps).sqrt();
            crate::elementwise::reference::axpy(a, &dy[p * s.hw..][..s.hw], dx);
        });
    }
}

/// Two-pass f64 definitions.
pub mod reference {
    use super::BnShape;

    pub fn batch_stats(s: BnShape, x: &[f32], mean: &mut [f32], var: &mut [f32]) {
        for c in 0..s.c {
            let vals = || {
                (0..s.n).flat_map(|n| x[(n * s.c + c) * s.hw..][..s.hw].iter().map(|&v| v as f64))
            };
            let mu = vals().sum::<f64>() / s.count() as f64;
            mean[c] = mu as f32;
            var[c] = (vals().map(|v| (v - mu) * (v - mu)).sum::<f64>() / s.count() as f64) as f32;
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn normalize(
        s: BnShape,
        x: &[f32],
        mean: &[f32],
        var: &[f32],
        eps: f32,
        gamma: Option<&[f32]>,
        beta: Option<&[f32]>,
        y: &mut [f32],
    ) {
        for (i, (yv, xv)) in y.iter_mut().zip(x).enumerate() {
            let c = i / s.hw % s.c;
            let xhat = (xv - mean[c]) / (var[c] + eps).sqrt();
            *yv = xhat * gamma.map_or(1.0, |g| g[c]) + beta.map_or(0.0, |b| b[c]);
        }
    }

    /// dx, dgamma, dbeta of training-mode batch norm, straight from the formula, in f64.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_train(
        s: BnShape,
        x: &[f32],
        mean: &[f32],
        var: &[f32],
        eps: f32,
        gamma: Option<&[f32]>,
        dy: &[f32],
        dx: &mut [f32],
        dgamma: &mut [f32],
        dbeta: &mut [f32],
    ) {
        let m = s.count() as f64;
        for c in 0..s.c {
            let invstd = 1.0 / (var[c] as f64 + eps as f64).sqrt();
            let idx =
                || (0..s.n).flat_map(move |n| (0..s.hw).map(move |i| (n * s.c + c) * s.hw + i));
            let xhat = |i: usize| (x[i] as f64 - mean[c] as f64) * invstd;
            let sdy: f64 = idx().map(|i| dy[i] as f64).sum();
            let sdyx: f64 = idx().map(|i| dy[i] as f64 * xhat(i)).sum();
            dgamma[c] += sdyx as f32;
            dbeta[c] += sdy as f32;
            let g = gamma.map_or(1.0, |g| g[c] as f64);
            for i in idx() {
                dx[i] += (g * invstd * (dy[i] as f64 - sdy / m - xhat(i) * sdyx / m)) as f32;
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
        fn fast_matches_reference(
            // Planes of 1 - 29 values, and of 100 and 257 (more than four 8-value blocks per
            // accumulator, and SIMD bodies that are not a multiple of 32).
            (s, x, dy, g, b) in (1usize..4, 1usize..5, prop_oneof![1usize..30, Just(100), Just(257)]).prop_flat_map(|(n, c, hw)| {
                let s = BnShape { n, c, hw };
                (Just(s), vec_f32(n * c * hw), vec_f32(n * c * hw), vec_f32(c), vec_f32(c))
            }).prop_filter("more than one value per channel", |(s, ..)| s.count() > 1),
            affine in any::<bool>(),
        ) {
            let (gamma, beta) = if affine { (Some(&g[..]), Some(&b[..])) } else { (None, None) };
            let (mut m, mut v, mut mr, mut vr) = (vec![0.0; s.c], vec![0.0; s.c], vec![0.0; s.c], vec![0.0; s.c]);
            let mut partial = vec![f32::NAN; stats_partial_len(s)];
            batch_stats(s, &x, &mut partial, &mut m, &mut v);
            reference::batch_stats(s, &x, &mut mr, &mut vr);
            assert_close(&m, &mr, 1e-5);
            assert_close(&v, &vr, 1e-5);
            let (mut y, mut yr) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            normalize(s, &x, &m, &v, 1e-5, gamma, beta, &mut y);
            reference::normalize(s, &x, &mr, &vr, 1e-5, gamma, beta, &mut yr);
            assert_close(&y, &yr, 1e-5);
            // In place: the same bits.
            let mut y2 = x.clone();
            normalize_in_place(s, &mut y2, (&m, &v, 1e-5), gamma, beta);
            prop_assert_eq!(bits(&y2), bits(&y));

            let mut scratch = vec![0.0; backward_scratch_len(s)];
            let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; s.c], vec![0.0; s.c]);
            let (mut dxr, mut dgr, mut dbr) = (vec![0.0; x.len()], vec![0.0; s.c], vec![0.0; s.c]);
            backward_train(s, &x, &m, &v, 1e-5, gamma, &dy, Some(&mut dx), Some(&mut dg), Some(&mut db), &mut scratch);
            reference::backward_train(s, &x, &mr, &vr, 1e-5, gamma, &dy, &mut dxr, &mut dgr, &mut dbr);
            // Near-constant channels have huge invstd; compare relative to the gradient's scale.
            let scale = dxr.iter().fold(1.0f32, |a, v| a.max(v.abs()));
            assert_close(&dx.iter().map(|v| v / scale).collect::<Vec<_>>(), &dxr.iter().map(|v| v / scale).collect::<Vec<_>>(), 1e-3);
            assert_close(&dg, &dgr, 1e-3);
            assert_close(&db, &dbr, 1e-4);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// From the output alone (no input kept) the training backward gives the same gradient.
        #[test]
        fn backward_from_output_matches_backward_from_input(
            (s, x, dy) in (2usize..4, 1usize..5, 1usize..30).prop_flat_map(|(n, c, hw)| {
                let s = BnShape { n, c, hw };
                (Just(s), vec_f32(n * c * hw), vec_f32(n * c * hw))
            })
        ) {
            let (mut m, mut v) = (vec![0.0; s.c], vec![0.0; s.c]);
            batch_stats(s, &x, &mut vec![0.0; stats_partial_len(s)], &mut m, &mut v);
            let mut y = vec![0.0; x.len()];
            normalize(s, &x, &m, &v, 1e-5, None, None, &mut y);
            let mut scratch = vec![0.0; backward_scratch_len(s)];
            let (mut a, mut b) = (vec![0.0; x.len()], vec![f32::NAN; x.len()]);
            backward_train(s, &x, &m, &v, 1e-5, None, &dy, Some(&mut a), None, None, &mut scratch);
            // Written (every value, over NaN), then added into ones.
            backward_train_from_output(s, &y, &v, 1e-5, &dy, &mut b, false, &mut scratch);
            let mut c = vec![1.0; x.len()];
            backward_train_from_output(s, &y, &v, 1e-5, &dy, &mut c, true, &mut scratch);
            let scale = a.iter().fold(1.0f32, |acc, v| acc.max(v.abs()));
            let scaled = |v: &[f32], off: f32| v.iter().map(|v| (v - off) / scale).collect::<Vec<_>>();
            assert_close(&scaled(&b, 0.0), &scaled(&a, 0.0), 1e-3);
            assert_close(&scaled(&c, 1.0), &scaled(&a, 0.0), 1e-3);
        }
    }

    /// A constant channel (variance 0): eps alone keeps the gradient finite,
    /// dx = (dy - mean(dy)) / sqrt(eps) (the random proptest's variances hide eps).
    #[test]
    fn backward_from_output_adds_eps_to_the_variance() {
        let s = BnShape { n: 2, c: 1, hw: 2 };
        let (y, dy, mut dx) = ([0.0; 4], [1.0, 2.0, 3.0, 4.0], [0.0; 4]);
        let mut scratch = vec![0.0; backward_scratch_len(s)];
        backward_train_from_output(s, &y, &[0.0], 1e-4, &dy, &mut dx, true, &mut scratch);
        let want = dy.map(|v| (v - 2.5) / 1e-2);
        assert_close(&dx, &want, 1e-5);
    }

    #[test]
    fn running_stats_use_unbiased_variance() {
        let s = BnShape { n: 2, c: 1, hw: 1 };
        let (mut m, mut v) = (vec![0.0], vec![0.0]);
        batch_stats(s, &[1.0, 3.0], &mut [0.0; 4], &mut m, &mut v);
        assert_eq!((m[0], v[0]), (2.0, 1.0));
        let (mut rm, mut rv) = (vec![0.0], vec![1.0]);
        update_running(s, &m, &v, 0.1, &mut rm, &mut rv);
        assert!((rm[0] - 0.2).abs() < 1e-7 && (rv[0] - (0.9 + 0.1 * 2.0)).abs() < 1e-6);
    }

    /// Channel 0's planes both sit at 1000 with a small spread (a sum of squares about zero would
    /// cancel it away; each plane's own squared deviations keep it); channel 1's at 5 and -5 (the
    /// merge's hw * (mean_p - mean)^2 term carries the variance).
    #[test]
    fn merged_plane_statistics_keep_small_spreads_and_distant_plane_means() {
        let s = BnShape { n: 2, c: 2, hw: 5 };
        let means = [1000.0f32, 5.0, 1000.0, -5.0]; // planes (n, c) = (0, 0), (0, 1), (1, 0), (1, 1)
        let x: Vec<f32> = (0..20)
            .map(|i| means[i / 5] + (i % 5) as f32 * 0.01)
            .collect();
        let (mut m, mut v, mut mr, mut vr) = ([0.0; 2], [0.0; 2], [0.0; 2], [0.0; 2]);
        batch_stats(s, &x, &mut [f32::NAN; 8], &mut m, &mut v);
        reference::batch_stats(s, &x, &mut mr, &mut vr);
        assert_close(&m, &mr, 1e-6);
        assert_close(&v, &vr, 1e-6);
        assert!((v[0] - 2e-4).abs() < 1e-6, "{}", v[0]);
        assert!((v[1] - 25.0002).abs() < 1e-3, "{}", v[1]);
        // A plane's share: its sum, and its squared deviations from its own mean.
        let [sum, m2] = plane_stats(&x[..5]);
        assert!(
            (sum - 5000.1).abs() < 1e-3 && (m2 - 1e-3).abs() < 1e-5,
            "{sum} {m2}"
        );
    }
}
