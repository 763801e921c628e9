//! Thin helpers around `wide::f32x8`: loads, stores and horizontal reductions with a fixed lane order.
pub use wide::f32x8;

pub const LANES: usize = 8;

/// Loads the first 8 values of `s`.
#[inline(always)]
pub fn load(s: &[f32]) -> f32x8 {
    f32x8::new(s[..LANES].try_into().unwrap())
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

/// Dot product of two equal-length slices: eight lane accumulators, then a fixed-order horizontal sum,
/// then the scalar tail. Deterministic for a given length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let n8 = a.len() / LANES * LANES;
    let mut acc = f32x8::ZERO;
    for i in (0..n8).step_by(LANES) {
        acc += load(&a[i..]) * load(&b[i..]);
    }
    let mut s = hsum(acc);
    for i in n8..a.len() {
        s += a[i] * b[i];
    }
    s
}

/// Sum of a slice, same order rules as [`dot`].
#[inline]
pub fn sum(a: &[f32]) -> f32 {
    let n8 = a.len() / LANES * LANES;
    let mut acc = f32x8::ZERO;
    for i in (0..n8).step_by(LANES) {
        acc += load(&a[i..]);
    }
    let mut s = hsum(acc);
    for &v in &a[n8..] {
        s += v;
    }
    s
}
