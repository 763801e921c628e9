//! DARTS's training augmentation: random crop of the original size from the image zero-padded by 4
//! (the padding is black before normalisation), then a horizontal flip with probability 1/2.
use super::Dataset;
use tensor::Rng;

/// Zero padding on each side, as in the reference `RandomCrop(32, padding=4)`.
pub const PAD: usize = 4;

/// Writes augmented image `i` of `data` into `out` (one image long).
pub fn augment_into(data: &Dataset, i: usize, rng: &mut Rng, out: &mut [f32]) {
    let (h, w) = (data.height, data.width);
    let dy = rng.below(2 * PAD + 1) as isize - PAD as isize;
    let dx = rng.below(2 * PAD + 1) as isize - PAD as isize;
    let flip = rng.below(2) == 1;
    let img = data.image(i);
    for c in 0..data.channels {
        for y in 0..h {
            for x in 0..w {
                let sx = if flip { w - 1 - x } else { x } as isize + dx;
                let sy = y as isize + dy;
                out[(c * h + y) * w + x] =
                    if sy >= 0 && sx >= 0 && (sy as usize) < h && (sx as usize) < w {
                        img[(c * h + sy as usize) * w + sx as usize]
                    } else {
                        data.pad_value[c]
                    };
            }
        }
    }
}

/// Cutout (DeVries & Taylor, as in the DARTS reference): zero a `length` x `length` square (clipped
/// at the border) centred on a uniformly drawn pixel, in every channel of one image [C, H, W].
pub fn cutout(img: &mut [f32], channels: usize, h: usize, w: usize, length: usize, rng: &mut Rng) {
    if length == 0 {
        return;
    }
    let (cy, cx) = (rng.below(h), rng.below(w));
    let (y0, y1) = (cy.saturating_sub(length / 2), (cy + length / 2).min(h));
    let (x0, x1) = (cx.saturating_sub(length / 2), (cx + length / 2).min(w));
    for c in 0..channels {
        for y in y0..y1 {
            img[(c * h + y) * w + x0..(c * h + y) * w + x1].fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutout_zeroes_one_clipped_square_in_every_channel() {
        let mut rng = Rng::new(4);
        let mut largest = 0;
        for _ in 0..50 {
            let mut img = vec![1.0f32; 2 * 10 * 12];
            cutout(&mut img, 2, 10, 12, 4, &mut rng);
            let zeros: Vec<usize> = (0..120).filter(|&i| img[i] == 0.0).collect();
            assert!(!zeros.is_empty() && zeros.len() <= 16);
            assert!(
                zeros.iter().all(|&i| img[120 + i] == 0.0),
                "same square in channel 1"
            );
            let (ys, xs): (Vec<usize>, Vec<usize>) =
                zeros.iter().map(|&i| (i / 12, i % 12)).unzip();
            let (h, w) = (
                ys.iter().max().unwrap() - ys.iter().min().unwrap() + 1,
                xs.iter().max().unwrap() - xs.iter().min().unwrap() + 1,
            );
            assert_eq!(h * w, zeros.len(), "a rectangle");
            assert!(h <= 4 && w <= 4);
            largest = largest.max(zeros.len());
        }
        // A centre away from the border zeroes the whole 4 x 4 square.
        assert_eq!(largest, 16);
    }

    #[test]
    fn crops_stay_in_the_padded_frame_and_flips_mirror() {
        let img: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let d = Dataset {
            images: img.clone(),
            labels: vec![0],
            channels: 1,
            height: 4,
            width: 4,
            classes: 2,
            pad_value: vec![-1.0],
        };
        let mut rng = Rng::new(1);
        let mut seen_flip = false;
        for _ in 0..64 {
            let mut out = vec![0.0; 16];
            augment_into(&d, 0, &mut rng, &mut out);
            // Every value is an original pixel or padding; rows keep a constant step of +-1.
            assert!(out.iter().all(|v| *v == -1.0 || img.contains(v)));
            for row in out.chunks(4) {
                for p in row.windows(2) {
                    if p[0] >= 0.0 && p[1] >= 0.0 {
                        assert_eq!((p[1] - p[0]).abs(), 1.0);
                        seen_flip |= p[1] < p[0];
                    }
                }
            }
        }
        assert!(seen_flip);
    }

    /// Against the definition: pad by 4 with the pad value, crop the original size at the drawn
    /// offset (dy, dx in -4..=4), then mirror when the flip is drawn; every offset and both flips
    /// come up (each about as often).
    #[test]
    fn augmentation_is_flip_of_crop_of_padded_image() {
        let (c, h, w) = (2, 3, 5);
        let img: Vec<f32> = (0..c * h * w).map(|v| v as f32).collect();
        let d = Dataset {
            images: img.clone(),
            labels: vec![0],
            channels: c,
            height: h,
            width: w,
            classes: 2,
            pad_value: vec![-1.0, -2.0],
        };
        let mut rng = Rng::new(9);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..400 {
            let mut draw = rng.clone();
            let dy = draw.below(9) as isize - 4;
            let dx = draw.below(9) as isize - 4;
            let flip = draw.below(2) == 1;
            seen.insert((dy, dx, flip));
            let mut out = vec![0.0; c * h * w];
            augment_into(&d, 0, &mut rng, &mut out);
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        let xc = if flip { w - 1 - x } else { x };
                        let (sy, sx) = (y as isize + dy, xc as isize + dx);
                        let want = if (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx)
                        {
                            img[(ch * h + sy as usize) * w + sx as usize]
                        } else {
                            d.pad_value[ch]
                        };
                        assert_eq!(out[(ch * h + y) * w + x], want, "{dy} {dx} {flip}");
                    }
                }
            }
            assert_eq!(
                draw.next_u64(),
                rng.clone().next_u64(),
                "three draws an image"
            );
        }
        let offsets = |f: fn(&(isize, isize, bool)) -> isize| {
            seen.iter()
                .map(f)
                .collect::<std::collections::BTreeSet<_>>()
        };
        let all: std::collections::BTreeSet<isize> = (-4..=4).collect();
        assert_eq!(offsets(|s| s.0), all);
        assert_eq!(offsets(|s| s.1), all);
        assert_eq!(
            seen.iter().filter(|s| s.2).count() * 3 / seen.len(),
            1,
            "both flips"
        );
    }
}
