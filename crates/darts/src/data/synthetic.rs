//! The built-in dataset: 10 classes of 32x32 RGB images made from a seed.
//!
//! Class k is an oriented sinusoidal grating (orientation (k mod 5) * 36 degrees, spatial frequency
//! 0.12 or 0.24 cycles per pixel for k < 5 or k >= 5) under a Gaussian envelope at a random position,
//! with a random phase, a random colour tint and pixel noise. The random phase makes every class's
//! mean image nearly flat grey, so a linear model on pixels stays near chance, while oriented
//! filters followed by a ReLU and pooling separate the classes easily.
use super::{normalise, Dataset, Splits};
use tensor::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// The built-in dataset's size and seed.
pub struct SyntheticConfig {
    /// Training images.
    pub train: usize,
    /// Test images.
    pub test: usize,
    /// Everything random derives from it.
    pub seed: u64,
}

const SIDE: usize = 32;
const CLASSES: usize = 10;
const MEAN: [f32; 3] = [0.5; 3];
const STD: [f32; 3] = [0.25; 3];

fn image(class: usize, rng: &mut Rng, out: &mut [u8]) {
    let theta = (class % 5) as f32 * std::f32::consts::PI / 5.0;
    let freq = if class < 5 { 0.12 } else { 0.24 };
    let phase = rng.uniform(0.0, std::f32::consts::TAU);
    let (cy, cx) = (rng.uniform(10.0, 22.0), rng.uniform(10.0, 22.0));
    let radius = rng.uniform(7.0, 11.0);
    let tint: [f32; 3] = std::array::from_fn(|_| rng.uniform(0.3, 1.0));
    let base: [f32; 3] = std::array::from_fn(|_| rng.uniform(0.35, 0.65));
    let (ct, st) = (theta.cos(), theta.sin());
    for y in 0..SIDE {
        for x in 0..SIDE {
            let (fy, fx) = (y as f32, x as f32);
            let wave = (std::f32::consts::TAU * freq * (fx * ct + fy * st) + phase).sin();
            let env = (-((fy - cy).powi(2) + (fx - cx).powi(2)) / (2.0 * radius * radius)).exp();
            for c in 0..3 {
                let v = base[c] + 0.35 * tint[c] * wave * env + 0.08 * rng.normal();
                out[(c * SIDE + y) * SIDE + x] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
}

fn make(n: usize, rng: &mut Rng) -> Dataset {
    let plane = SIDE * SIDE;
    let mut raw = vec![0u8; n * 3 * plane];
    let mut labels = Vec::with_capacity(n);
    for (i, img) in raw.chunks_mut(3 * plane).enumerate() {
        let class = i % CLASSES; // balanced; the order is shuffled by the batcher
        image(class, rng, img);
        labels.push(class as u32);
    }
    let (images, pad_value) = normalise(&raw, 3, plane, &MEAN, &STD);
    Dataset {
        images,
        labels,
        channels: 3,
        height: SIDE,
        width: SIDE,
        classes: CLASSES,
        pad_value,
    }
}

/// The built-in dataset: `train` training and `test` test images, entirely determined by `seed`.
pub fn synthetic(cfg: SyntheticConfig) -> Splits {
    let mut rng = Rng::new(cfg.seed ^ 0x5EED_DA7A);
    let train = make(cfg.train, &mut rng);
    let test = make(cfg.test, &mut rng);
    Splits {
        train,
        test: Some(test),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_images_and_balanced_labels() {
        let a = synthetic(SyntheticConfig {
            train: 40,
            test: 10,
            seed: 3,
        });
        let b = synthetic(SyntheticConfig {
            train: 40,
            test: 10,
            seed: 3,
        });
        assert_eq!(a.train, b.train);
        assert_eq!(a.train.labels.iter().filter(|&&l| l == 7).count(), 4);
        let c = synthetic(SyntheticConfig {
            train: 40,
            test: 10,
            seed: 4,
        });
        assert_ne!(a.train.images, c.train.images);
    }

    /// The class means are nearly identical: no linear template separates the classes.
    #[test]
    fn class_mean_images_are_nearly_flat() {
        let d = synthetic(SyntheticConfig {
            train: 2000,
            test: 0,
            seed: 1,
        })
        .train;
        let il = d.image_len();
        let mut means = vec![vec![0.0f64; il]; CLASSES];
        for i in 0..d.len() {
            for (m, v) in means[d.labels[i] as usize].iter_mut().zip(d.image(i)) {
                *m += *v as f64 / (d.len() / CLASSES) as f64;
            }
        }
        let spread: f64 = (0..il)
            .map(|p| {
                (0..CLASSES)
                    .map(|k| (means[k][p] - means[0][p]).abs())
                    .fold(0.0, f64::max)
            })
            .sum::<f64>()
            / il as f64;
        // Pixel noise alone makes the per-image values vary by ~1.3 (normalised); the class means
        // differ by a small fraction of that.
        assert!(spread < 0.25, "mean class images differ by {spread}");
    }
}
