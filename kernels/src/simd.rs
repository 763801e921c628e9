//! Thin helpers around `wide::f32x8`: loads, stores and horizontal reductions with a fixed lane order.
pub use wide::f32x8;

pub const LANES: usize = 8;

/// Whether the target has 32 vector registers (AVX-512's ymm0 - ymm31) rather than 16 (AVX2, or
/// SSE's xmm pairs). Register tiles hold all their accumulators and operands in registers; a tile
/// that needs more than the target has spills them to the stack on every step of its loop (the
/// 1x1 convs' 4 x 4 tiles on an AVX2 Zen 3 ran at 30 GFLOP/s, about 40 % of the sgemm peak).
pub const WIDE_REGS: bool = cfg!(target_feature = "avx512f");

/// Loads the first 8 values of `s`.
#[inline(always)]
pub fn load(s: &[f32]) -> f32x8 {
    f32x8::new(s[..LANES].try_into().unwrap())
}

/// The 8 values of `s` from `i` on, without a bounds check: for loops whose bounds are checked
/// once, before them.
///
/// # Safety
/// `i + 8 <= s.len()`.
#[inline(always)]
pub unsafe fn load_at(s: &[f32], i: usize) -> f32x8 {
    debug_assert!(i + LANES <= s.len());
    f32x8::new(std::ptr::read_unaligned(
        s.as_ptr().add(i).cast::<[f32; LANES]>(),
    ))
}

/// Stores `v` into the first 8 values of `d`.
#[inline(always)]
pub fn store(v: f32x8, d: &mut [f32]) {
    d[..LANES].copy_from_slice(v.as_array());
}

/// Gathers `s[0], s[stride], ..., s[7 * stride]`.
#[inline(always)]
pub fn load_strided(s: &[f32], stride: usize) -> f32x8 {
    f32x8::new(std::array::from_fn(|i| s[i * stride]))
}

/// e^x for x <= 0, the argument of every softmax term (x - max x): x = n ln 2 + r with |r| <= ln 2 / 2,
/// e^r by its degree-7 Taylor polynomial (relative error under 2e-7 there), 2^n written straight into
/// the exponent bits. Arguments below -87 (e^x near the smallest normal f32) are clamped to -87, so
/// e^x never returns denormals or 0 for finite x; NaN stays NaN. About a third of the instructions of
/// the general `f32x8::exp`, which handles overflow and denormals the softmax never meets.
#[inline(always)]
pub fn exp_neg(x: f32x8) -> f32x8 {
    const SHIFT: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting it rounds to an integer
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.fast_max(f32x8::splat(-87.0));
    let n =
        (xc * f32x8::splat(std::f32::consts::LOG2_E) + f32x8::splat(SHIFT)) - f32x8::splat(SHIFT);
    let r = n.mul_neg_add(f32x8::splat(LN2_HI), xc);
    let r = n.mul_neg_add(f32x8::splat(LN2_LO), r);
    let p = [
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ]
    .iter()
    .fold(f32x8::ZERO, |acc, &c| acc.mul_add(r, f32x8::splat(c)));
    // n + 127 + 2^23 holds n + 127 in its low mantissa bits; shifted up, they are 2^n's exponent.
    let bits: wide::i32x8 = bytemuck::cast(n + f32x8::splat(127.0 + 8_388_608.0));
    let scale: f32x8 = bytemuck::cast(bits << 23);
    x.is_nan().select(x, p * scale)
}

/// Horizontal maximum (NaN-propagation is not relied on).
#[inline(always)]
pub fn hmax(v: f32x8) -> f32 {
    v.as_array()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// Horizontal sum in a fixed order (lane 0 first).
#[inline(always)]
pub fn hsum(v: f32x8) -> f32 {
    v.as_array().iter().sum()
}

/// Independent accumulators per reduction: an f32 add has a latency of several cycles, so one
/// accumulator would leave the adder idle between loads; four keep it busy on in-cache data.
const ACCS: usize = 4;

/// The fixed-order reduction behind [`dot`], [`sum`] and [`sum_and_dot`]: `M` sums of `term(i)`
/// (the 8-lane terms at i = 0, 8, ..., n8 - 8), 8-value block j into accumulator j % 4, the four
/// added as (a0 + a1) + (a2 + a3), then each sum's lanes in order. Deterministic for a given length.
#[inline(always)]
pub fn reduce<const M: usize>(n8: usize, mut term: impl FnMut(usize) -> [f32x8; M]) -> [f32; M] {
    let mut acc = [[f32x8::ZERO; M]; ACCS];
    let step = ACCS * LANES;
    let full = n8 / step * step;
    for i in (0..full).step_by(step) {
        for (k, a) in acc.iter_mut().enumerate() {
            let t = term(i + k * LANES);
            for m in 0..M {
                a[m] += t[m];
            }
        }
    }
    for (k, i) in (full..n8).step_by(LANES).enumerate() {
        let t = term(i);
        for m in 0..M {
            acc[k][m] += t[m];
        }
    }
    std::array::from_fn(|m| hsum((acc[0][m] + acc[1][m]) + (acc[2][m] + acc[3][m])))
}

/// Dot product of two equal-length slices: the 8-lane body in [`reduce`]'s fixed order, then the
/// scalar tail. Deterministic for a given length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let n8 = a.len() / LANES * LANES;
    let [mut s] = reduce(n8, |i| [load(&a[i..]) * load(&b[i..])]);
    for i in n8..a.len() {
        s += a[i] * b[i];
    }
    s
}

/// Sum of a slice, same order rules as [`dot`].
#[inline]
pub fn sum(a: &[f32]) -> f32 {
    let n8 = a.len() / LANES * LANES;
    let [mut s] = reduce(n8, |i| [load(&a[i..])]);
    for &v in &a[n8..] {
        s += v;
    }
    s
}

/// (sum(a), dot(a, b)) in one read of `a`: the same bits as [`sum`] and [`dot`].
#[inline]
pub fn sum_and_dot(a: &[f32], b: &[f32]) -> (f32, f32) {
    debug_assert_eq!(a.len(), b.len());
    let n8 = a.len() / LANES * LANES;
    let [mut s, mut d] = reduce(n8, |i| {
        let x = load(&a[i..]);
        [x, x * load(&b[i..])]
    });
    for i in n8..a.len() {
        s += a[i];
        d += a[i] * b[i];
    }
    (s, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::vec_f32;
    use proptest::strategy::Strategy;

    fn exact_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
    }

    proptest::proptest! {
        #[test]
        fn reductions_are_close_to_f64_and_agree_bitwise(
            (a, b) in (0usize..200).prop_flat_map(|n| (vec_f32(n), vec_f32(n)))
        ) {
            let ones = vec![1.0; a.len()];
            let (s, d) = sum_and_dot(&a, &b);
            proptest::prop_assert_eq!(s.to_bits(), sum(&a).to_bits());
            proptest::prop_assert_eq!(d.to_bits(), dot(&a, &b).to_bits());
            let scale: f64 = a.iter().zip(&b).map(|(&x, &y)| (x as f64 * y as f64).abs()).sum();
            proptest::prop_assert!((d as f64 - exact_dot(&a, &b)).abs() <= 1e-5 * (1.0 + scale));
            let scale: f64 = a.iter().map(|&x| (x as f64).abs()).sum();
            proptest::prop_assert!((s as f64 - exact_dot(&a, &ones)).abs() <= 1e-5 * (1.0 + scale));
        }
    }

    #[test]
    fn reduce_adds_the_four_accumulators_pairwise() {
        // Blocks 1e8, 1, -1e8, 1 land in accumulators 0..3: (1e8 + 1) + (-1e8 + 1) = 0 in f32, where
        // a running sum would give 1 and the pairing (a0 + a2) + (a1 + a3) would give 2.
        let blocks = [1e8f32, 1.0, -1e8, 1.0];
        let [s] = reduce(4 * LANES, |i| [f32x8::splat(blocks[i / LANES])]);
        assert_eq!(s, 0.0);
        // A fifth block goes to accumulator 0 again: (1e8 + 1 + 1) + (-1e8 + 1) = 0 too (a running
        // sum: 2).
        let blocks = [1e8f32, 1.0, -1e8, 1.0, 1.0];
        let [s] = reduce(5 * LANES, |i| [f32x8::splat(blocks[i / LANES])]);
        assert_eq!(s, 0.0);
    }

    #[test]
    fn exp_neg_is_within_a_few_ulp_of_exp() {
        let mut worst = 0.0f64;
        for i in 0..=86_990 {
            let xs: [f32; LANES] = std::array::from_fn(|l| -(i as f32 * 0.001 + l as f32 * 1.3e-4));
            let got = exp_neg(f32x8::new(xs));
            for (&x, &g) in xs.iter().zip(got.as_array()) {
                let want = (x as f64).exp();
                worst = worst.max(((g as f64 - want) / want).abs());
            }
        }
        assert!(worst < 4e-7, "worst relative error {worst:e}");
        let special = exp_neg(f32x8::new([
            f32::NAN,
            -1e4,
            0.0,
            -0.0,
            -87.5,
            -1.0,
            -2.0,
            -3.0,
        ]));
        let s = special.as_array();
        assert!(s[0].is_nan());
        assert!(s[1] > 0.0 && s[1] < 1e-37, "clamped, never 0 or denormal");
        assert_eq!((s[2], s[3]), (1.0, 1.0));
    }
}
