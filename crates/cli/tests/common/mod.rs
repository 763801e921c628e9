//! Helpers shared by the CLI integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the `darts` binary built for these tests.
pub fn darts(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_darts"))
        .args(args)
        .output()
        .unwrap()
}

/// A fresh, empty temporary directory for this test process.
pub fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("darts-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A file in the repository's tests/golden.
pub fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden")
        .join(name)
}
