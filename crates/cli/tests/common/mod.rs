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
