//! IDX files (MNIST, Fashion-MNIST): big-endian magic 0x00000803 (u8 images N x H x W) or
//! 0x00000801 (u8 labels N), raw or gzip-compressed (`.gz`).
use super::{normalise, Dataset, Splits};
use crate::error::io;
use crate::{DartsError, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

const MEAN: [f32; 1] = [0.1307];
const STD: [f32; 1] = [0.3081];

/// `base` or `base.gz`, whichever exists, decompressed, with its `dims` header sizes checked
/// against its length. A gzip stream is decompressed only as far as its header says it reaches,
/// so a small file that claims (or inflates to) terabytes is refused without allocating them.
fn read(dir: &Path, base: &str, magic: u32, dims: usize) -> Result<(PathBuf, Vec<u8>, Vec<usize>)> {
    let plain = dir.join(base);
    let gz = dir.join(format!("{base}.gz"));
    if plain.exists() {
        let b = std::fs::read(&plain).map_err(io(&plain))?;
        let sizes = header(&plain, &b, magic, dims)?;
        Ok((plain, b, sizes))
    } else if gz.exists() {
        let f = std::fs::File::open(&gz).map_err(io(&gz))?;
        let bad_gzip = |e: std::io::Error| DartsError::Data {
            path: gz.clone(),
            why: format!("not a valid gzip file: {e}"),
        };
        let mut stream = flate2::read::GzDecoder::new(f);
        let mut out = Vec::new();
        (&mut stream)
            .take(4 + 4 * dims as u64)
            .read_to_end(&mut out)
            .map_err(bad_gzip)?;
        let want = declared_len(&gz, &out, magic, dims)?.1;
        // One byte more than declared, to tell a longer stream from an exact one.
        (&mut stream)
            .take((want - out.len()) as u64 + 1)
            .read_to_end(&mut out)
            .map_err(bad_gzip)?;
        let sizes = header(&gz, &out, magic, dims)?;
        Ok((gz, out, sizes))
    } else {
        Err(DartsError::Data {
            path: plain,
            why: "missing IDX file (also looked for .gz)".into(),
        })
    }
}

/// The sizes an IDX header declares and the file length they imply, from its first bytes.
fn declared_len(path: &Path, b: &[u8], magic: u32, dims: usize) -> Result<(Vec<usize>, usize)> {
    let bad = |why: String| DartsError::Data {
        path: path.into(),
        why,
    };
    if b.len() < 4 + 4 * dims {
        return Err(bad(format!(
            "{} bytes is too short for an IDX header",
            b.len()
        )));
    }
    let got = u32::from_be_bytes(b[..4].try_into().unwrap());
    if got != magic {
        return Err(bad(format!(
            "magic number {got:#010x}, expected {magic:#010x}"
        )));
    }
    let sizes: Vec<usize> = (0..dims)
        .map(|d| u32::from_be_bytes(b[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize)
        .collect();
    if let Some(d) = sizes.iter().position(|&s| s == 0) {
        return Err(bad(format!("header {sizes:?}: dimension {d} is 0")));
    }
    // Checked: a hostile header's product must not wrap around to a small number.
    let want = sizes
        .iter()
        .try_fold(1usize, |p, &s| p.checked_mul(s))
        .and_then(|n| n.checked_add(4 + 4 * dims))
        .ok_or_else(|| {
            bad(format!(
                "header {sizes:?} describes more bytes than can exist"
            ))
        })?;
    Ok((sizes, want))
}

fn header(path: &Path, b: &[u8], magic: u32, dims: usize) -> Result<Vec<usize>> {
    let (sizes, want) = declared_len(path, b, magic, dims)?;
    if b.len() != want {
        return Err(DartsError::Data {
            path: path.into(),
            why: format!(
                "{} bytes, but the header {sizes:?} needs {want} (truncated?)",
                b.len()
            ),
        });
    }
    Ok(sizes)
}

fn split(dir: &Path, prefix: &str) -> Result<Dataset> {
    let (ipath, ib, isizes) = read(dir, &format!("{prefix}-images-idx3-ubyte"), 0x0803, 3)?;
    let (lpath, lb, lsizes) = read(dir, &format!("{prefix}-labels-idx1-ubyte"), 0x0801, 1)?;
    let [n, h, w] = isizes[..] else {
        unreachable!("three dims")
    };
    let [nl] = lsizes[..] else {
        unreachable!("one dim")
    };
    if n != nl {
        return Err(DartsError::Data {
            path: lpath,
            why: format!("{nl} labels for {n} images in {}", ipath.display()),
        });
    }
    let labels: Vec<u32> = lb[8..].iter().map(|&l| l as u32).collect();
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l >= 10) {
        return Err(DartsError::Data {
            path: lpath,
            why: format!("label {l} at index {i} is out of range 0..9"),
        });
    }
    let (images, pad_value) = normalise(&ib[16..], 1, h * w, &MEAN, &STD);
    Ok(Dataset {
        images,
        labels,
        channels: 1,
        height: h,
        width: w,
        classes: 10,
        pad_value,
    })
}

/// Loads `train-{images,labels}` and, if present, `t10k-{images,labels}` from `dir`.
pub fn load_idx(dir: &Path) -> Result<Splits> {
    let train = split(dir, "train")?;
    let has_test = ["t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"]
        .iter()
        .any(|f| dir.join(f).exists());
    let test = if has_test {
        Some(split(dir, "t10k")?)
    } else {
        None
    };
    Ok(Splits { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn reads_raw_and_gzip_and_rejects_bad_headers() {
        let dir = std::env::temp_dir().join(format!("darts-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("train-images-idx3-ubyte"),
            idx(0x803, &[2, 2, 3], &[0, 255, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
        )
        .unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&idx(0x801, &[2], &[4, 9])).unwrap();
        std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), gz.finish().unwrap()).unwrap();
        let s = load_idx(&dir).unwrap();
        assert_eq!(
            (
                s.train.len(),
                s.train.height,
                s.train.width,
                s.train.labels.clone()
            ),
            (2, 2, 3, vec![4, 9])
        );
        assert!((s.train.images[1] - (1.0 - 0.1307) / 0.3081).abs() < 1e-5);

        std::fs::write(
            dir.join("train-images-idx3-ubyte"),
            idx(0x801, &[2, 2, 3], &[0; 12]),
        )
        .unwrap();
        assert!(load_idx(&dir)
            .unwrap_err()
            .to_string()
            .contains("magic number"));
        std::fs::write(
            dir.join("train-images-idx3-ubyte"),
            idx(0x803, &[2, 2, 3], &[0; 5]),
        )
        .unwrap();
        assert!(load_idx(&dir)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        // A header whose size product wraps around to 0 in 64 bits, and a zero dimension.
        for (dims, needle) in [
            ([8u32, 1 << 31, 1 << 31], "more bytes than can exist"),
            ([2, 0, 3], "dimension 1 is 0"),
        ] {
            std::fs::write(dir.join("train-images-idx3-ubyte"), idx(0x803, &dims, &[])).unwrap();
            let e = load_idx(&dir).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), b"not gzip").unwrap();
        std::fs::write(
            dir.join("train-images-idx3-ubyte"),
            idx(0x803, &[2, 2, 3], &[0; 12]),
        )
        .unwrap();
        assert!(load_idx(&dir).unwrap_err().to_string().contains("gzip"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b).unwrap();
        gz.finish().unwrap()
    }

    /// Images gzip-compressed load as the plain file does; a stream one byte longer or shorter
    /// than its header says, or a header cut short, is refused as such.
    #[test]
    fn gzip_images_load_exactly_and_lengths_are_checked() {
        let dir = std::env::temp_dir().join(format!("darts-idx-gz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pixels: Vec<u8> = (0..24).map(|i| i * 10).collect();
        let images = idx(0x803, &[2, 3, 4], &pixels);
        std::fs::write(
            dir.join("train-labels-idx1-ubyte"),
            idx(0x801, &[2], &[1, 7]),
        )
        .unwrap();
        std::fs::write(dir.join("train-images-idx3-ubyte"), &images).unwrap();
        let plain = load_idx(&dir).unwrap().train;
        std::fs::remove_file(dir.join("train-images-idx3-ubyte")).unwrap();
        let path = dir.join("train-images-idx3-ubyte.gz");
        std::fs::write(&path, gzip(&images)).unwrap();
        let packed = load_idx(&dir).unwrap().train;
        assert_eq!((packed.height, packed.width), (3, 4));
        assert_eq!(packed.images, plain.images);
        assert!((packed.images[23] - (230.0 / 255.0 - 0.1307) / 0.3081).abs() < 1e-6);
        // A black pixel's normalised value: what the crop's zero padding becomes.
        assert_eq!(packed.pad_value, vec![-0.1307f32 / 0.3081]);
        for (bytes, needle) in [
            (
                [&images[..], &[0]].concat(),
                "41 bytes, but the header [2, 3, 4] needs 40",
            ),
            (
                images[..images.len() - 1].to_vec(),
                "39 bytes, but the header [2, 3, 4] needs 40",
            ),
            (
                images[..12].to_vec(),
                "12 bytes is too short for an IDX header",
            ),
        ] {
            std::fs::write(&path, gzip(&bytes)).unwrap();
            let e = load_idx(&dir).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        std::fs::remove_file(&path).unwrap();
        std::fs::write(dir.join("train-images-idx3-ubyte"), &images[..12]).unwrap();
        let e = load_idx(&dir).unwrap_err().to_string();
        assert!(e.contains("12 bytes is too short for an IDX header"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
