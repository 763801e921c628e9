//! `darts study --executor slurm` on a real Slurm cluster: `.ci/run` starts one with
//! `scripts/slurm-local.sh start`, runs this test (`--ignored`: it needs that cluster), and stops it.
//! The study submitted as job arrays must report exactly what the local executor reports.
mod common;

use common::*;
use std::path::Path;

#[test]
#[ignore = "needs a running Slurm cluster: scripts/slurm-local.sh start"]
fn slurm_study_equals_the_local_one_bit_for_bit() {
    let root = dir("slurm");
    let (on_slurm, local) = (root.join("slurm"), root.join("local"));
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec!["study", "--out", out.to_str().unwrap()];
        args.extend_from_slice(&TINY_STUDY);
        args.extend_from_slice(extra);
        let o = darts(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // --slurm-args reach every sbatch (a bad one would fail the submission).
    let err = run(
        &on_slurm,
        &[
            "--executor",
            "slurm",
            "--wait",
            "--slurm-args",
            "--time=30 --nice=0",
        ],
    );
    assert!(
        err.contains("submitted search array job")
            && err.contains("submitted train array job")
            && err.contains("submitted baseline array job"),
        "{err}"
    );
    // Every run went through a Slurm array task.
    let outs = std::fs::read_dir(on_slurm.join("logs"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("slurm-")
        })
        .count();
    assert_eq!(outs, 12, "one Slurm output file per run");
    run(&local, &["--jobs", "2"]);
    assert_eq!(
        std::fs::read(on_slurm.join("study.csv")).unwrap(),
        std::fs::read(local.join("study.csv")).unwrap()
    );
    assert_eq!(study_results(&on_slurm), study_results(&local));
    // Re-submitting a finished study submits nothing.
    let err = run(&on_slurm, &["--executor", "slurm", "--wait"]);
    assert!(err.contains("every run is already done"), "{err}");
    let status = darts(&["study", "status", on_slurm.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("12 runs: 12 done"));
}
