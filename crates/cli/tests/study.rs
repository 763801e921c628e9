//! `darts study` through the binary: the same report whatever `--jobs`, a re-run that repeats
//! nothing, a killed study that resumes to the same numbers, and bad input refused clearly.
mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};

fn study(out: &Path, extra: &[&str]) -> std::process::Output {
    darts(&study_args(out, "2", extra))
}

/// `study --out OUT` with the tiny settings, `epochs` search epochs, and `extra`.
fn study_args<'a>(out: &'a Path, epochs: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["study", "--out", out.to_str().unwrap()];
    args.extend_from_slice(&TINY_STUDY);
    args[8] = epochs; // TINY_STUDY[5] is the search epochs' value
    args.extend_from_slice(extra);
    args
}

fn assert_ok(o: &std::process::Output) {
    assert!(
        o.status.success(),
        "status {:?}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn jobs_do_not_change_the_numbers_and_a_rerun_repeats_nothing() {
    let root = dir("study-jobs");
    let (one, two) = (root.join("one"), root.join("two"));
    assert_ok(&study(&one, &["--jobs", "1"]));
    assert_ok(&study(&two, &["--jobs", "2"]));
    assert_eq!(
        std::fs::read(one.join("study.csv")).unwrap(),
        std::fs::read(two.join("study.csv")).unwrap()
    );
    assert_eq!(study_results(&one), study_results(&two));
    let r = study_results(&one);
    assert_eq!(
        r["runs"].as_array().unwrap().len(),
        8,
        "2 arms + random + DARTS_V2, 2 seeds each"
    );
    assert_eq!(r["comparisons"][0]["a"], "maxw");
    for f in [
        "study.json",
        "study.csv",
        "report.html",
        "accuracy.svg",
        "alphas.svg",
        "baselines/random-0.json",
        "search/maxw/seed-1/genotype.json",
        "train/softmax/seed-2/eval.json",
    ] {
        assert!(one.join(f).exists(), "{f}");
    }
    let html = std::fs::read_to_string(one.join("report.html")).unwrap();
    assert!(
        html.contains("<svg")
            && html.contains("Alpha trajectories")
            && html.contains("maxw vs softmax")
    );

    // Re-running the same command finds everything done and starts nothing.
    let before = std::fs::metadata(one.join("train/maxw/seed-1/summary.json"))
        .unwrap()
        .modified()
        .unwrap();
    let o = study(&one, &["--jobs", "2"]);
    assert_ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("0 runs done now, 12 were done before"),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(one.join("train/maxw/seed-1/summary.json"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
    assert_eq!(study_results(&one), study_results(&two));

    // status and report work on the directory; a different study there is refused.
    let s = darts(&["study", "status", one.to_str().unwrap()]);
    assert_ok(&s);
    assert!(String::from_utf8_lossy(&s.stdout).contains("12 runs: 12 done"));
    let o = study(&one, &["--baselines", "DARTS_V1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds a different study"));

    // A missing run is reported and left out; the statistics use the rest.
    std::fs::remove_file(one.join("train/DARTS_V2/seed-2/eval.json")).unwrap();
    let o = darts(&["study", "report", one.to_str().unwrap()]);
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 runs not complete"));
    let r = study_results(&one);
    let v2 = r["arms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "DARTS_V2")
        .unwrap()
        .clone();
    assert_eq!(
        (v2["complete"].as_u64(), v2["planned"].as_u64()),
        (Some(1), Some(2))
    );
}

#[test]
fn a_killed_study_resumes_to_the_same_numbers_without_repeating_finished_runs() {
    let root = dir("study-kill");
    let (reference, killed) = (root.join("reference"), root.join("killed"));
    // Longer searches, so the kill lands while runs are in flight.
    assert_ok(&darts(&study_args(&reference, "6", &["--jobs", "2"])));
    let args = study_args(&killed, "6", &["--jobs", "2"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_darts"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = killed.join("search/maxw/seed-1/summary.json");
    let in_flight = killed.join("search/softmax/seed-1");
    // summary.json is rewritten at every epoch end; "finished" marks the end of the run.
    let finished = || {
        std::fs::read_to_string(&first)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v["status"] == "finished")
    };
    // Kill once the maxw searches are done and a softmax search has passed its first epoch end.
    let ready = wait_until(120, || {
        finished() && in_flight.join("checkpoint.safetensors").exists()
    });
    assert!(ready, "the first search never finished");
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    // Its darts processes get SIGINT from the kernel (parent death), save and stop; wait for them.
    assert!(wait_until(60, || ![
        "search/maxw/seed-2",
        "search/softmax/seed-1",
        "search/softmax/seed-2",
        "train/maxw/seed-1",
    ]
    .iter()
    .any(|r| darts::lock::is_locked(&killed.join(r)))));
    // The run in flight was stopped cleanly (SIGINT from the kernel when its study died).
    let log = std::fs::read_to_string(killed.join("logs/search.softmax.seed-1.log")).unwrap();
    assert!(log.contains("interrupted at epoch"), "{log}");
    let finished_before = std::fs::read_to_string(&first).unwrap();
    let o = darts(&study_args(&killed, "6", &["--jobs", "2"]));
    assert_ok(&o);
    assert!(
        std::fs::read_to_string(&first).unwrap() == finished_before,
        "a finished run is never repeated"
    );
    let log = std::fs::read_to_string(killed.join("logs/search.maxw.seed-1.log")).unwrap();
    assert_eq!(log.matches("searching:").count(), 1, "{log}");
    assert_eq!(
        std::fs::read(reference.join("study.csv")).unwrap(),
        std::fs::read(killed.join("study.csv")).unwrap()
    );
    assert_eq!(study_results(&reference), study_results(&killed));
}

#[test]
fn bad_input_is_refused_clearly() {
    let root = dir("study-bad");
    let out = root.join("s");
    let check = |o: std::process::Output, code: i32, needle: &str| {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{err}");
        assert!(
            err.contains(needle) && !err.contains("panicked"),
            "expected '{needle}' in {err}"
        );
    };
    check(
        study(&out, &["--weighting", "maxw,sharp"]),
        2,
        "unknown value 'sharp'",
    );
    check(study(&out, &["--order", ""]), 2, "empty item");
    check(study(&out, &["--baselines", "random:0"]), 2, "random:K");
    check(study(&out, &["--seeds", "0"]), 2, "--seeds");
    assert!(!out.exists(), "nothing is written for a refused study");
    check(
        darts(&["study", "report", root.to_str().unwrap()]),
        1,
        "not a study directory",
    );

    // Two studies on one directory: the second refuses while the first holds it.
    let lock = darts::lock::DirLock::acquire(&out).unwrap();
    check(study(&out, &[]), 2, "another `darts study` is working in");
    drop(lock);

    // sbatch missing: the error names the script that starts a local cluster.
    let o = Command::new(env!("CARGO_BIN_EXE_darts"))
        .args([
            "study",
            "--out",
            out.to_str().unwrap(),
            "--executor",
            "slurm",
        ])
        .args(TINY_STUDY)
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    check(o, 1, "scripts/slurm-local.sh");

    // Nothing complete: report fails.
    check(
        darts(&["study", "report", out.to_str().unwrap()]),
        1,
        "no run is complete",
    );
}

#[test]
fn ctrl_c_stops_a_study_cleanly_and_the_same_command_finishes_it() {
    let root = dir("study-int");
    let out = root.join("s");
    let args = study_args(&out, "12", &["--jobs", "2"]);
    let child = Command::new(env!("CARGO_BIN_EXE_darts"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ckpt = out.join("search/maxw/seed-1/checkpoint.safetensors");
    assert!(wait_until(60, || ckpt.exists()));
    // SIGINT to the study alone (not its process group): it forwards it to its runs.
    assert!(Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted: running runs saved their checkpoints"),
        "{err}"
    );
    let log = std::fs::read_to_string(out.join("logs/search.maxw.seed-1.log")).unwrap();
    assert!(log.contains("interrupted at epoch"), "{log}");
    let s = darts(&["study", "status", out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&s.stdout).contains("interrupted          search/maxw/seed-1"));
    assert_ok(&darts(&args));
    assert!(out.join("study.json").exists());
}
