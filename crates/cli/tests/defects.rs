//! Defects found by trying to break the CLI (issue 14), each reproduced through the binary.
mod common;

use common::*;
use darts::checkpoint::{save_tensors, TensorFile};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output};

fn search(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["search", "--out", out.to_str().unwrap()];
    args.extend_from_slice(&TINY);
    args.extend_from_slice(extra);
    darts(&args)
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A 50-epoch tiny search into `out`, to be stopped by the test (stderr not shown).
fn long_search(out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_darts"));
    c.args(["search", "--out", out.to_str().unwrap(), "--epochs", "50"])
        .args(TINY);
    c
}

#[test]
fn a_refused_run_leaves_an_existing_one_untouched() {
    let d = dir("refused");
    let r = d.join("r");
    ok(&search(&r, &["--epochs", "1"]));
    let run_json = std::fs::read(r.join("run.json")).unwrap();
    // An invalid configuration, then a valid one: both refused, nothing rewritten.
    fails(
        &darts(&["search", "--batch", "1000", "--out", r.to_str().unwrap()]),
        2,
        &["less than one batch"],
    );
    // In a fresh directory a refused configuration writes nothing at all.
    let fresh = d.join("fresh");
    fails(
        &darts(&[
            "search",
            "--batch",
            "1000",
            "--out",
            fresh.to_str().unwrap(),
        ]),
        2,
        &["less than one batch"],
    );
    assert!(!fresh.exists(), "not even the directory is created");
    fails(&search(&r, &["--epochs", "2"]), 2, &["already holds a run"]);
    fails(
        &darts(&[
            "train",
            "--genotype",
            "DARTS_V2",
            "--out",
            r.to_str().unwrap(),
            "--epochs",
            "1",
            "--subset",
            "40",
        ]),
        2,
        &["already holds a run"],
    );
    assert_eq!(std::fs::read(r.join("run.json")).unwrap(), run_json);
    // Resume on changed data is refused unless accepted.
    let mut info: serde_json::Value = serde_json::from_slice(&run_json).unwrap();
    assert!(info["data_fingerprint"].is_string());
    info["data_fingerprint"] = "0123456789abcdef".into();
    std::fs::write(r.join("run.json"), info.to_string()).unwrap();
    fails(
        &darts(&["search", "--resume", r.to_str().unwrap()]),
        2,
        &["not what this run started on"],
    );
    ok(&darts(&[
        "search",
        "--resume",
        r.to_str().unwrap(),
        "--accept-changed-data",
    ]));
}

#[test]
fn a_failed_save_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let d = dir("full");
    let r = d.join("r");
    // Measure the checkpoint, then allow files a little smaller than it: the first epoch-end
    // save fails with EFBIG (SIGXFSZ ignored, as a full disk fails a write).
    ok(&search(&r, &["--epochs", "1"]));
    let size = std::fs::metadata(r.join("checkpoint.safetensors"))
        .unwrap()
        .len();
    let full = d.join("full");
    let blocks = (size / 512).saturating_sub(4);
    let cmd = format!(
        "trap '' XFSZ; ulimit -f {blocks}; exec {} search --out {} {} --epochs 3",
        env!("CARGO_BIN_EXE_darts"),
        full.display(),
        TINY.join(" ")
    );
    let o = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
    fails(&o, 1, &["checkpoint.tmp"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the search stopped") && err.contains("no checkpoint was written"),
        "{err}"
    );
    let names = file_names(&full);
    assert!(
        !names.iter().any(|n| n.contains(".tmp")),
        "temp file left behind: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n == "checkpoint.safetensors"),
        "{names:?}"
    );
    // It stopped at once: one epoch's steps in the log, not three.
    let steps = std::fs::read_to_string(full.join("log.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(steps, 5, "40 images, batch 4: 5 steps an epoch");
}

#[test]
fn hostile_headers_and_paths_do_not_panic() {
    let d = dir("hostile");
    let idx = |dims: &[u32]| {
        let mut v = 0x803u32.to_be_bytes().to_vec();
        for x in dims {
            v.extend(x.to_be_bytes());
        }
        v
    };
    std::fs::write(
        d.join("train-labels-idx1-ubyte"),
        [0, 0, 8, 1, 0, 0, 0, 8, 0, 1, 2, 3, 4, 5, 6, 7],
    )
    .unwrap();
    let data = format!("idx:{}", d.display());
    for (dims, needle) in [
        (vec![8, 1 << 31, 1 << 31], "more bytes than can exist"),
        (vec![8, 0, 28], "dimension 1 is 0"),
    ] {
        std::fs::write(d.join("train-images-idx3-ubyte"), idx(&dims)).unwrap();
        fails(
            &darts(&[
                "search",
                "--data",
                &data,
                "--out",
                d.join("o").to_str().unwrap(),
            ]),
            1,
            &[needle],
        );
        fails(
            &darts(&[
                "train",
                "--genotype",
                "DARTS_V2",
                "--data",
                &data,
                "--out",
                d.join("t").to_str().unwrap(),
            ]),
            1,
            &[needle],
        );
    }
    // A non-UTF-8 --out path is a path like any other.
    let mut raw = d.as_os_str().as_bytes().to_vec();
    raw.extend_from_slice(b"/out-\xff");
    let out = std::ffi::OsStr::from_bytes(&raw);
    let o = Command::new(env!("CARGO_BIN_EXE_darts"))
        .args(["search", "--epochs", "1"])
        .args(TINY)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    ok(&o);
    assert!(Path::new(out).join("checkpoint.safetensors").exists());
    // Sizes that cannot fit are refused before allocating; absurd thread counts are capped.
    fails(
        &darts(&[
            "train",
            "--genotype",
            "DARTS_V2",
            "--channels",
            "100000",
            "--dry-run",
        ]),
        2,
        &["needs about"],
    );
    let o = darts(&[
        "train",
        "--genotype",
        "DARTS_V2",
        "--dry-run",
        "--threads",
        "1000",
        "--layers",
        "2",
        "--channels",
        "4",
    ]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--threads 1000 is more than 4x"));
    fails(
        &darts(&[
            "train",
            "--genotype",
            "DARTS_V2",
            "--auxiliary-weight",
            "inf",
            "--dry-run",
        ]),
        1,
        &["finite number >= 0, got inf"],
    );
}

#[test]
fn the_genotype_py_a_search_writes_trains_and_results_exist_after_every_epoch() {
    let d = dir("genopy");
    let r = d.join("r");
    ok(&search(&r, &["--epochs", "1"]));
    // The configuration as typed, not with f32 noise (0.0003, not 0.0003000000142492354).
    let summary = std::fs::read_to_string(r.join("summary.json")).unwrap();
    assert!(
        summary.contains("\"arch_lr\": 0.0003,") && summary.contains("0.999\n"),
        "{summary}"
    );
    // report.html: epochs counted from 1, the alpha grid scales to the page (viewBox).
    ok(&darts(&["report", r.to_str().unwrap()]));
    let html = std::fs::read_to_string(r.join("report.html")).unwrap();
    assert!(html.contains("<tr><td>1</td>") && !html.contains("<tr><td>0</td>"));
    assert!(html.contains("viewBox=\"0 0 "));
    let g = r.join("genotype.py");
    let o = darts(&[
        "train",
        "--genotype",
        g.to_str().unwrap(),
        "--dry-run",
        "--layers",
        "2",
        "--channels",
        "4",
    ]);
    ok(&o);
    let o = darts(&[
        "train",
        "--genotype",
        &format!("{}:SEARCHED", g.display()),
        "--dry-run",
        "--layers",
        "2",
        "--channels",
        "4",
    ]);
    ok(&o);

    // Killed after its first epoch end: the result files of that epoch are there and report works.
    let k = d.join("k");
    let mut child = long_search(&k)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(60, || k.join("summary.json").exists()));
    child.kill().unwrap();
    child.wait().unwrap();
    for f in [
        "genotype.json",
        "genotype.py",
        "summary.json",
        "alphas.svg",
        "normal.svg",
        "checkpoint.safetensors",
    ] {
        assert!(k.join(f).exists(), "{f}");
    }
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(k.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["status"], "running");
    ok(&darts(&["report", k.to_str().unwrap()]));
    // The lock of the killed process is gone: resuming works; a held lock refuses a second process.
    let lock = darts::lock::DirLock::acquire(&k).unwrap();
    fails(
        &darts(&["search", "--resume", k.to_str().unwrap()]),
        1,
        &["in use by another darts process"],
    );
    drop(lock);
}

#[test]
fn grad_refuses_non_finite_inputs_and_overwriting_them() {
    let d = dir("gradnan");
    let batch = golden("search_batch.safetensors");
    let ck = TensorFile::open(&golden("search_model.safetensors")).unwrap();
    let mut tensors: Vec<(String, tensor::Tensor)> = ck
        .f32s
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let run = |ckpt: &Path, out: &Path| {
        darts(&[
            "grad",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--batch",
            batch.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let g = d.join("g.safetensors");
    // num_batches_tracked stored as F32 is accepted.
    let tracked = ck
        .i64s
        .keys()
        .find(|k| k.ends_with("num_batches_tracked"))
        .unwrap()
        .clone();
    let mut with_f32 = tensors.clone();
    with_f32.push((
        tracked,
        tensor::Tensor::from_vec(vec![1], vec![3.0]).unwrap(),
    ));
    let f32_tracked = d.join("f32.safetensors");
    save_tensors(&f32_tracked, &with_f32).unwrap();
    ok(&run(&f32_tracked, &g));
    fails(&run(&f32_tracked, &f32_tracked), 2, &["would overwrite it"]);

    let (name, t) = &mut tensors[3];
    let mut v = t.data().to_vec();
    v[1] = f32::NAN;
    *t = tensor::Tensor::from_vec(t.dims().to_vec(), v).unwrap();
    let name = name.clone();
    let bad = d.join("nan.safetensors");
    save_tensors(&bad, &tensors).unwrap();
    fails(
        &run(&bad, &g),
        1,
        &[&format!("tensor {name} holds a non-finite value (NaN)")],
    );
}

#[test]
fn sigterm_saves_like_ctrl_c_and_a_batch_is_not_called_a_checkpoint() {
    let d = dir("term");
    let r = d.join("r");
    let child = long_search(&r)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(60, || r.join("checkpoint.safetensors").exists()));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["status"], "interrupted");

    // A safetensors batch of F64 values: the message names the file and the dtype, not a "checkpoint".
    let header = br#"{"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&1.0f64.to_le_bytes());
    let batch = d.join("batch.safetensors");
    std::fs::write(&batch, bytes).unwrap();
    let o = darts(&[
        "grad",
        "--checkpoint",
        golden("search_model.safetensors").to_str().unwrap(),
        "--batch",
        batch.to_str().unwrap(),
        "--out",
        d.join("g.safetensors").to_str().unwrap(),
    ]);
    fails(&o, 1, &["tensor x has dtype F64"]);
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("checkpoint"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
