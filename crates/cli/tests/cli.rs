//! The command line: bad input gives a clear message and a non-zero status (never a panic), and a
//! search interrupted with Ctrl-C (SIGINT) and resumed ends exactly where an uninterrupted one does.
mod common;

use common::*;
use darts::checkpoint::{save_tensors, TensorFile};
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn bad_flags_and_data_are_reported() {
    let out = dir("bad");
    let o = out.to_str().unwrap();
    fails(
        &darts(&["search", "--data", "bogus", "--out", o]),
        2,
        &["--data bogus"],
    );
    fails(
        &darts(&["search", "--data", "cifar10:/nonexistent/dir", "--out", o]),
        1,
        &["data_batch_1.bin", "missing"],
    );
    fails(
        &darts(&["search", "--batch", "1", "--out", o]),
        1,
        &["batch must be at least 2", "got 1"],
    );
    fails(
        &darts(&["search", "--epochs", "0", "--out", o]),
        1,
        &["epochs must be at least 1"],
    );
    fails(
        &darts(&["search", "--subset", "8", "--batch", "16", "--out", o]),
        2,
        &["less than one batch"],
    );
    fails(&darts(&["search", "--weighting", "fancy"]), 2, &["fancy"]);
    fails(
        &darts(&["search", "--resume", "/nonexistent/run", "--epochs", "3"]),
        2,
        &["--epochs cannot be changed"],
    );
    fails(
        &darts(&["search", "--resume", "/nonexistent/run"]),
        1,
        &["/nonexistent/run/run.json"],
    );
    // A run directory whose checkpoint is garbage.
    std::fs::write(
        out.join("run.json"),
        r#"{"data": "synthetic", "subset": 40, "command": []}"#,
    )
    .unwrap();
    std::fs::write(
        out.join("checkpoint.safetensors"),
        b"\x10\x00\x00\x00garbage",
    )
    .unwrap();
    fails(
        &darts(&["search", "--resume", o]),
        1,
        &["checkpoint.safetensors", "not a safetensors file"],
    );
}

#[test]
fn bad_checkpoints_and_batches_for_grad_are_reported() {
    let d = dir("grad");
    let ck = TensorFile::open(&golden("search_model.safetensors")).unwrap();
    let tensors: Vec<(String, tensor::Tensor)> = ck
        .f32s
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let run = |ckpt: &Path, batch: &Path| {
        darts(&[
            "grad",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--batch",
            batch.to_str().unwrap(),
            "--out",
            d.join("g.safetensors").to_str().unwrap(),
        ])
    };
    let batch = golden("search_batch.safetensors");

    let missing = d.join("missing.safetensors");
    save_tensors(
        &missing,
        &tensors
            .iter()
            .filter(|(k, _)| k != "cells.2.preprocess0.conv_1.weight")
            .cloned()
            .collect::<Vec<_>>(),
    )
    .unwrap();
    fails(
        &run(&missing, &batch),
        1,
        &["missing tensor cells.2.preprocess0.conv_1.weight"],
    );

    let extra = d.join("extra.safetensors");
    let mut with_extra = tensors.clone();
    with_extra.push((
        "cells.1.unexpected.weight".into(),
        tensor::Tensor::zeros([2]),
    ));
    save_tensors(&extra, &with_extra).unwrap();
    fails(
        &run(&extra, &batch),
        1,
        &["unexpected tensor", "cells.1.unexpected.weight"],
    );

    let misshaped = d.join("misshaped.safetensors");
    let bad: Vec<_> = tensors
        .iter()
        .map(|(k, v)| {
            if k == "alphas_reduce" {
                (k.clone(), tensor::Tensor::zeros([14, 7]))
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    save_tensors(&misshaped, &bad).unwrap();
    fails(
        &run(&misshaped, &batch),
        1,
        &["alphas_reduce has shape [14, 7]"],
    );

    let truncated = d.join("truncated.safetensors");
    let bytes = std::fs::read(golden("search_model.safetensors")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    fails(&run(&truncated, &batch), 1, &["truncated.safetensors"]);

    let bad_batch = d.join("batch.safetensors");
    save_tensors(
        &bad_batch,
        &[("x".into(), tensor::Tensor::zeros([2, 3, 16, 16]))],
    )
    .unwrap();
    fails(
        &run(&golden("search_model.safetensors"), &bad_batch),
        1,
        &["missing i64 or i32 tensor 'y'"],
    );
}

fn final_state(out: &Path) -> (String, Vec<u32>) {
    let g = std::fs::read_to_string(out.join("genotype.json")).unwrap();
    let ck = TensorFile::open(&out.join("checkpoint.safetensors")).unwrap();
    let bits = ["alphas_normal", "alphas_reduce", "classifier.weight"]
        .iter()
        .flat_map(|n| {
            ck.f32s[*n]
                .data()
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        })
        .collect();
    (g, bits)
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_resume_matches_an_uninterrupted_run() {
    let straight = dir("straight");
    let mut args: Vec<&str> = vec!["search", "--epochs", "4"];
    args.extend(TINY);
    let so = straight.to_str().unwrap();
    let o = darts(&[args.clone(), vec!["--out", so]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "genotype.json",
        "genotype.py",
        "normal.svg",
        "reduce.svg",
        "normal.dot",
        "reduce.dot",
        "alphas.csv",
        "alphas.svg",
        "log.jsonl",
        "summary.json",
        "checkpoint.safetensors",
    ] {
        assert!(straight.join(f).exists(), "{f} missing");
    }
    assert_eq!(
        std::fs::read_to_string(straight.join("log.jsonl"))
            .unwrap()
            .lines()
            .count(),
        20
    );
    let r = darts(&["report", so]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let html = std::fs::read_to_string(straight.join("report.html")).unwrap();
    assert!(
        html.contains("Mixture weights over the epochs")
            && html.contains("reduction cell")
            && html.contains("--seed")
    );

    let resumed = dir("resumed");
    let ro = resumed.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_darts"))
        .args([args.clone(), vec!["--out", ro]].concat())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = resumed.join("log.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |s| s.lines().count()) < 3 {
        assert!(t0.elapsed().as_secs() < 120, "search made no progress");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "Ctrl-C exits with 130 after saving"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(resumed.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["status"], "interrupted");
    let steps_done = std::fs::read_to_string(&log).unwrap().lines().count();
    assert!(
        steps_done < 20,
        "interrupted before the end ({steps_done} steps)"
    );

    let o = darts(&["search", "--resume", ro]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        20,
        "each step logged once"
    );
    assert_eq!(final_state(&resumed), final_state(&straight));
}

/// `darts bench --roofline` profiles every op family of a search step: each has time, work and a
/// bound from the measured peaks, and the families' times account for the step.
#[test]
fn bench_roofline_reports_each_family_of_the_step() {
    let out = darts(&[
        "bench",
        "--preset",
        "tiny",
        "--steps",
        "1",
        "--threads",
        "1",
        "--roofline",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &j["roofline"];
    let f = r["families"].as_object().unwrap();
    let names = [
        "dense conv",
        "depthwise + 1x1",
        "pools",
        "BN + mixed op",
        "Max-W",
        "optimizer",
        "elementwise",
    ];
    assert_eq!(f.len(), names.len());
    for name in names {
        let fam = &f[name];
        for key in ["seconds", "flops", "bytes", "bound_seconds"] {
            let v = fam[key].as_f64().unwrap();
            // The search network's BN with affine parameters is the stem's only (plain batch_norm).
            assert!(v > 0.0, "{name}: {key} = {v}");
        }
    }
    let profiled: f64 = f.values().map(|v| v["seconds"].as_f64().unwrap()).sum();
    // Per op, the same seconds split into forward and backward.
    let ops = r["ops"].as_object().unwrap();
    for op in ["separable_conv_bn", "max_pool2d", "weighted_sum_bn", "maxw"] {
        assert!(ops[op]["forward_seconds"].as_f64().unwrap() > 0.0, "{op}");
    }
    let per_op: f64 = ops
        .values()
        .map(|v| v["forward_seconds"].as_f64().unwrap() + v["backward_seconds"].as_f64().unwrap())
        .sum();
    assert!(
        (per_op - profiled).abs() <= 1e-9 * profiled.max(1.0),
        "{per_op} vs {profiled}"
    );
    // By shape, slowest first: the op shapes' seconds add up to the ops' (the optimizers, which
    // have no shape, aside), and the stem's 3 x 3 conv shows at the input's shape.
    let shapes = r["shapes"].as_array().unwrap();
    let total = |v: &serde_json::Value| {
        v["forward_seconds"].as_f64().unwrap() + v["backward_seconds"].as_f64().unwrap()
    };
    assert!(shapes.windows(2).all(|w| total(&w[0]) >= total(&w[1])));
    let optimizers: f64 = ["sgd_step", "adam_step"]
        .iter()
        .map(|o| total(&ops[*o]))
        .sum();
    let by_shape: f64 = shapes.iter().map(total).sum();
    assert!(
        (by_shape + optimizers - per_op).abs() <= 1e-9 * per_op.max(1.0),
        "{by_shape} + {optimizers} vs {per_op}"
    );
    let stem = shapes
        .iter()
        .find(|s| s["op"] == "conv2d")
        .expect("the stem conv");
    assert_eq!(stem["shape"], "[16, 3, 32, 32] -> [16, 24, 32, 32]");
    assert!(stem["calls"].as_f64().unwrap() >= 1.0);
    let step = r["step_seconds"].as_f64().unwrap();
    assert!(
        profiled <= step * 1.01 && profiled > 0.5 * step,
        "{profiled} of {step}"
    );
    // Peaks measured before and after the steps (before only where the peak memory can be reset
    // afterwards, as this process can reset its own), the better of each kept as the bound's peak.
    let resettable = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let measured = r["peaks_measured"].as_array().unwrap();
    assert_eq!(measured.len(), 1 + resettable as usize, "{measured:?}");
    for key in ["gflops", "gbs"] {
        let each: Vec<f64> = measured.iter().map(|m| m[key].as_f64().unwrap()).collect();
        assert!(each.iter().all(|&v| v > 0.0), "{key}: {each:?}");
        let peak = r[format!("peak_{key}")].as_f64().unwrap();
        assert_eq!(peak, each.iter().cloned().fold(0.0, f64::max), "{key}");
    }
}
