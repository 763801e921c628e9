//! Datasets: in-memory images with labels, the built-in procedural set, CIFAR-10 binary and IDX
//! files; batches with DARTS's augmentation (random crop with padding 4, horizontal flip).
mod augment;
mod cifar;
mod idx;
mod synthetic;

pub use augment::{augment_into, cutout};
pub use cifar::load_cifar10;
pub use idx::load_idx;
pub use synthetic::{synthetic, SyntheticConfig};

use crate::{DartsError, Result};
use tensor::{Rng, Tensor};

/// Normalised images [N, C, H, W] (row-major in one buffer) and their labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// All images, `[N, C, H, W]` row-major.
    pub images: Vec<f32>,
    /// One label per image, below `classes`.
    pub labels: Vec<u32>,
    /// Image channels.
    pub channels: usize,
    /// Image rows.
    pub height: usize,
    /// Image columns.
    pub width: usize,
    /// Number of classes.
    pub classes: usize,
    /// The normalised value of a black pixel per channel: what zero padding of the raw image becomes.
    pub pad_value: Vec<f32>,
}

/// A training set and, where the source has one, a test set.
#[derive(Clone, Debug)]
pub struct Splits {
    /// The training images (searches split them into train and val halves).
    pub train: Dataset,
    /// The test images, where the source has them.
    pub test: Option<Dataset>,
}

impl Dataset {
    /// A 64-bit FNV-1a hash of the shape, labels and pixel bits, as hex: two loads of the same
    /// data agree, and a changed file (another subset, a re-export) almost surely does not.
    pub fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for d in [
            self.len(),
            self.channels,
            self.height,
            self.width,
            self.classes,
        ] {
            eat(&(d as u64).to_le_bytes());
        }
        for l in &self.labels {
            eat(&l.to_le_bytes());
        }
        eat(bytemuck::cast_slice(&self.images));
        format!("{h:016x}")
    }

    /// Wraps in-memory tensors: x [N, C, H, W] (already normalised) and labels (each < classes).
    pub fn from_tensors(x: &Tensor, labels: Vec<u32>, classes: usize) -> Result<Dataset> {
        let [n, c, h, w] = x.shape().nchw("Dataset::from_tensors")?;
        if labels.len() != n {
            return Err(DartsError::Config(format!(
                "{} labels for {n} images",
                labels.len()
            )));
        }
        if let Some((i, l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= classes)
        {
            return Err(DartsError::Config(format!(
                "label {l} of image {i} is out of range for {classes} classes"
            )));
        }
        Ok(Dataset {
            images: x.data().to_vec(),
            labels,
            channels: c,
            height: h,
            width: w,
            classes,
            pad_value: vec![0.0; c],
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image (C * H * W).
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Image `i`, `[C, H, W]` row-major.
    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * self.image_len()..][..self.image_len()]
    }

    /// The first `n` examples (all of them if n >= len).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.images.truncate(n * self.image_len());
    }

    /// The batch of images `indices` as [B, C, H, W], augmented with `rng` when given.
    pub fn batch(&self, indices: &[usize], rng: Option<&mut Rng>) -> (Tensor, Vec<u32>) {
        let il = self.image_len();
        let mut x = vec![0.0; indices.len() * il];
        match rng {
            Some(rng) => {
                for (slot, &i) in x.chunks_mut(il).zip(indices) {
                    augment_into(self, i, rng, slot);
                }
            }
            None => {
                for (slot, &i) in x.chunks_mut(il).zip(indices) {
                    slot.copy_from_slice(self.image(i));
                }
            }
        }
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        (
            Tensor::from_vec([indices.len(), self.channels, self.height, self.width], x)
                .expect("sizes agree"),
            labels,
        )
    }
}

/// An independent generator for (seed, epoch, step); `step = usize::MAX` is the epoch's shuffling
/// stream. Data order, augmentation and drop-path masks all come from these, so any run can be
/// stopped after a step and resumed bit-identically.
pub fn stream(seed: u64, epoch: usize, step: usize) -> Rng {
    let mut r = Rng::new(seed);
    let mut e = r.split();
    for _ in 0..epoch {
        e = r.split();
    }
    Rng::new(e.next_u64() ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Raw u8 pixels (planar per image) normalised with per-channel mean and std (of the [0, 1] scale).
pub(crate) fn normalise(
    raw: &[u8],
    channels: usize,
    plane: usize,
    mean: &[f32],
    std: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let images = raw.iter().enumerate().map(|(i, &b)| {
        let c = i / plane % channels;
        (b as f32 / 255.0 - mean[c]) / std[c]
    });
    (
        images.collect(),
        (0..channels).map(|c| -mean[c] / std[c]).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Dataset {
        Dataset {
            images: vec![0.5, -1.0, 2.0, 0.0],
            labels: vec![1, 2],
            channels: 1,
            height: 1,
            width: 2,
            classes: 3,
            pad_value: vec![0.0],
        }
    }

    /// FNV-1a over the shape, labels and pixel bits: a value computed independently (Python:
    /// the same bytes, `h ^= b; h *= 0x100000001b3` from 0xcbf29ce484222325), and a change of
    /// any part changes it.
    #[test]
    fn fingerprint_is_fnv1a_of_shape_labels_and_pixels() {
        let d = two();
        assert_eq!(d.fingerprint(), "bde03008b8d2a975");
        let mut other = d.clone();
        other.labels[1] = 0;
        assert_ne!(other.fingerprint(), d.fingerprint());
        let mut other = d.clone();
        other.images[3] = -0.0; // the same value, other bits
        assert_ne!(other.fingerprint(), d.fingerprint());
        let mut other = d.clone();
        other.classes = 4;
        assert_ne!(other.fingerprint(), d.fingerprint());
    }

    #[test]
    fn truncate_keeps_the_first_examples() {
        let mut d = two();
        assert!(!d.is_empty());
        d.truncate(5);
        assert_eq!(d, two());
        d.truncate(1);
        assert_eq!(
            (d.images.as_slice(), d.labels.as_slice()),
            (&[0.5, -1.0][..], &[1][..])
        );
        d.truncate(0);
        assert!(d.is_empty() && d.images.is_empty());
    }

    /// Each (seed, epoch, step) its own stream, and the same one each time it is asked for.
    #[test]
    fn streams_differ_by_seed_epoch_and_step() {
        let first = |s: u64, e: usize, k: usize| stream(s, e, k).next_u64();
        let all = [
            first(1, 0, 0),
            first(2, 0, 0),
            first(1, 1, 0),
            first(1, 0, 1),
            first(1, 0, usize::MAX),
        ];
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j], "{i} {j}");
            }
        }
        assert_eq!(first(2, 3, 4), first(2, 3, 4));
    }
}
