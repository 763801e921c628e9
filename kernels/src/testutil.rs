//! Shared helpers for the kernels' property tests.
use proptest::prelude::*;

/// A vector of `len` values in [-2, 2].
pub fn vec_f32(len: usize) -> impl Strategy<Value = Vec<f32>> {
    proptest::collection::vec(-2.0f32..2.0, len)
}

/// Each value's bits, for comparisons that must hold to the bit (-0.0 and NaNs included).
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Asserts `|a - b| <= tol * (1 + |b|)` elementwise, naming the first bad index.
pub fn assert_close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "index {i}: fast {x} vs reference {y}"
        );
    }
}

/// Asserts `|a - b| <= tol * (1 + mag)` elementwise, `mag` the sum of the magnitudes of the terms
/// each element adds up (the same computation on absolute values): for long sums whose terms
/// cancel, the rounding of either side grows with `mag`, not with the result.
pub fn assert_close_to_magnitude(a: &[f32], b: &[f32], mag: &[f32], tol: f32) {
    assert!(a.len() == b.len() && b.len() == mag.len(), "length");
    for (i, ((x, y), m)) in a.iter().zip(b).zip(mag).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + m),
            "index {i}: fast {x} vs reference {y} (terms' magnitudes {m})"
        );
    }
}
