//! Helpers shared by the CLI integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `darts` binary built for these tests.
pub fn darts(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_darts"))
        .args(args)
        .output()
        .unwrap()
}

/// A fresh, empty temporary directory for this test process, removed when dropped (also when
/// the test fails), so the suite leaves nothing behind in the temp folder.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn dir(name: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("darts-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// A file in the repository's tests/golden.
pub fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden")
        .join(name)
}

/// A study small enough for the test suite: 2 arms + 2 baselines x 2 seeds, 64 images.
pub const TINY_STUDY: [&str; 20] = [
    "--seeds",
    "2",
    "--subset",
    "64",
    "--epochs",
    "2",
    "--layers",
    "2",
    "--channels",
    "2",
    "--batch",
    "8",
    "--train-epochs",
    "1",
    "--train-layers",
    "2",
    "--train-channels",
    "4",
    "--train-batch",
    "16",
];

/// A study's study.json without its run-time costs (the only part that may differ between
/// executions of the same study).
pub fn study_results(dir: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("study.json")).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("cost");
    v
}

/// Polls `done` every few milliseconds for up to `seconds`; whether it became true.
pub fn wait_until(seconds: u64, mut done: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while !done() {
        if start.elapsed().as_secs() >= seconds {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    true
}

/// The names of the entries of `dir`.
pub fn file_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// A search small enough for the test suite: C=2, 2 cells, batch 4, 40 images, seed 3.
pub const TINY: [&str; 10] = [
    "--channels",
    "2",
    "--layers",
    "2",
    "--batch",
    "4",
    "--subset",
    "40",
    "--seed",
    "3",
];

/// Asserts a failure with the given status whose stderr contains every `needles` entry and no panic.
pub fn fails(o: &Output, status: i32, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(status), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected '{n}' in: {err}");
    }
}
