//! A configuration's memory, estimated before anything is allocated, so a size that cannot fit
//! is refused with a message instead of an abort ("memory allocation of 120000000000 bytes
//! failed"). The estimates scale measured peaks (benches/README.md) by the sizes that drive them:
//! activations by batch x channels x cells x pixels, parameters (with gradients and optimizer
//! state) by channels^2 x cells. They are meant to catch the impossible, not to budget closely.
use crate::Failure;

const GIB: f64 = (1u64 << 30) as f64;

/// Bytes a search of this size needs: the standard search (C=16, 8 cells, batch 64, 32x32) peaks
/// at 3.03 GiB, nearly all stored activations; its 1.93 M weights take 4 copies (value, gradient,
/// momentum, the second-order step's copy).
pub fn search_bytes(channels: usize, layers: usize, batch: usize, pixels: usize) -> f64 {
    let scale = (channels as f64 / 16.0) * (layers as f64 / 8.0);
    let act = 3.03 * GIB * scale * (batch as f64 / 64.0) * (pixels as f64 / 1024.0);
    let params = 1.93e6 * (channels as f64 / 16.0).powi(2) * (layers as f64 / 8.0) * 4.0 * 4.0;
    act + params
}

/// Bytes a training of this size needs: the default training (C=16, 8 cells, batch 32, 32x32)
/// peaks at 0.58 GB (0.67 GB measured before the separable blocks stopped storing their depthwise
/// output, scaled by the 0.87x that change measured on a short run); DARTS_V2 at C=36, 20 cells has 3.35 M weights, kept 4 times.
pub fn train_bytes(channels: usize, layers: usize, batch: usize, pixels: usize) -> f64 {
    let scale = (channels as f64 / 16.0) * (layers as f64 / 8.0);
    let act = 0.58e9 * scale * (batch as f64 / 32.0) * (pixels as f64 / 1024.0);
    let params = 3.35e6 * (channels as f64 / 36.0).powi(2) * (layers as f64 / 20.0) * 4.0 * 4.0;
    act + params
}

/// The memory the kernel says is available (Linux `MemAvailable`), if it can be read.
fn available() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// Refuses `what` when its estimate exceeds the available memory.
pub fn check(what: &str, bytes: f64) -> Result<(), Failure> {
    match available() {
        Some(avail) if bytes > avail => Err(Failure(
            format!(
                "{what} needs about {:.1} GiB, more than the {:.1} GiB this machine has available; use fewer --channels, --layers or a smaller --batch",
                bytes / GIB,
                avail / GIB
            ),
            2,
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_track_the_measured_peaks_and_catch_the_impossible() {
        let s = search_bytes(16, 8, 64, 1024) / GIB;
        assert!((3.0..3.3).contains(&s), "{s}");
        let t = train_bytes(16, 8, 32, 1024) / 1e9;
        assert!((0.55..0.7).contains(&t), "{t}");
        assert!(train_bytes(100_000, 8, 32, 1024) > 1e12);
        assert!(check("x", 1e18).is_err());
        assert!(check("x", 1.0).is_ok());
    }
}
