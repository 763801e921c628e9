//! CIFAR-10 binary format: records of 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B).
use super::{normalise, Dataset, Splits};
use crate::error::io;
use crate::{DartsError, Result};
use std::path::Path;

const RECORD: usize = 1 + 3072;
const MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
const STD: [f32; 3] = [0.2470, 0.2435, 0.2616];

fn read_file(path: &Path, raw: &mut Vec<u8>, labels: &mut Vec<u32>) -> Result<()> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(DartsError::Data { path: path.into(), why: format!("{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (truncated or not CIFAR-10 binary?)", bytes.len()) });
    }
    for (r, rec) in bytes.chunks(RECORD).enumerate() {
        if rec[0] >= 10 {
            return Err(DartsError::Data {
                path: path.into(),
                why: format!("record {r} has label {} (CIFAR-10 labels are 0..9)", rec[0]),
            });
        }
        labels.push(rec[0] as u32);
        raw.extend_from_slice(&rec[1..]);
    }
    Ok(())
}

fn dataset(files: &[std::path::PathBuf]) -> Result<Dataset> {
    let (mut raw, mut labels) = (Vec::new(), Vec::new());
    for f in files {
        read_file(f, &mut raw, &mut labels)?;
    }
    let (images, pad_value) = normalise(&raw, 3, 1024, &MEAN, &STD);
    Ok(Dataset {
        images,
        labels,
        channels: 3,
        height: 32,
        width: 32,
        classes: 10,
        pad_value,
    })
}

/// Loads `data_batch_1.bin` .. `data_batch_5.bin` (training) and `test_batch.bin` (test, if present)
/// from `dir`.
pub fn load_cifar10(dir: &Path) -> Result<Splits> {
    let train: Vec<_> = (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .collect();
    if let Some(missing) = train.iter().find(|p| !p.exists()) {
        return Err(DartsError::Data {
            path: missing.clone(),
            why: "missing CIFAR-10 training file".into(),
        });
    }
    let test_path = dir.join("test_batch.bin");
    let test = if test_path.exists() {
        Some(dataset(&[test_path])?)
    } else {
        None
    };
    Ok(Splits {
        train: dataset(&train)?,
        test,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    #[test]
    fn loads_records_and_rejects_bad_files() {
        let dir = std::env::temp_dir().join(format!("darts-cifar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut rec = vec![3u8];
        rec.extend((0..3072).map(|i| (i % 256) as u8));
        for i in 1..=5 {
            write(&dir, &format!("data_batch_{i}.bin"), &rec.repeat(2));
        }
        let s = load_cifar10(&dir).unwrap();
        assert_eq!(
            (s.train.len(), s.train.labels[0], s.test.is_none()),
            (10, 3, true)
        );
        assert!((s.train.images[1] - (1.0 / 255.0 - 0.4914) / 0.2470).abs() < 1e-6);

        write(&dir, "data_batch_2.bin", &rec[..100]);
        let e = load_cifar10(&dir).unwrap_err().to_string();
        assert!(
            e.contains("data_batch_2.bin") && e.contains("truncated"),
            "{e}"
        );
        let mut bad = rec.clone();
        bad[0] = 12;
        write(&dir, "data_batch_2.bin", &bad);
        assert!(load_cifar10(&dir)
            .unwrap_err()
            .to_string()
            .contains("label 12"));
        std::fs::remove_file(dir.join("data_batch_2.bin")).unwrap();
        assert!(load_cifar10(&dir)
            .unwrap_err()
            .to_string()
            .contains("missing"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
