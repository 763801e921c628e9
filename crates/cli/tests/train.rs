//! `darts train`, `darts eval` and `darts report` through the binary.
mod common;

use common::*;
use darts::checkpoint::save_tensors;
use std::path::PathBuf;
use std::process::Output;

fn json(path: PathBuf) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn short_training_beats_chance_and_eval_and_report_agree() {
    let out = dir("run");
    let o = out.to_str().unwrap();
    ok(&darts(&[
        "train",
        "--genotype",
        "DARTS_V2",
        "--layers",
        "3",
        "--channels",
        "8",
        "--epochs",
        "4",
        "--batch",
        "16",
        "--subset",
        "480",
        "--seed",
        "1",
        "--out",
        o,
    ]));
    for f in [
        "model.safetensors",
        "log.jsonl",
        "summary.json",
        "curves.svg",
        "checkpoint.safetensors",
        "genotype.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let summary = json(out.join("summary.json"));
    let acc = summary["test_accuracy"].as_f64().unwrap();
    // Measured: test accuracy 0.54 (chance 0.1); training loss 2.95, 2.24, 1.46, 1.13 and test
    // loss 2.40, 1.42, 0.90, 0.83 over the 4 epochs. A broken update, schedule or augmentation
    // that still lets the net learn a little fails these, not only one that stops it learning.
    assert!(
        acc > 0.45,
        "test accuracy {acc}: the net did not learn (measured 0.54, chance 0.1)"
    );
    let epochs = summary["epochs"].as_array().unwrap();
    let series =
        |key: &str| -> Vec<f64> { epochs.iter().map(|e| e[key].as_f64().unwrap()).collect() };
    let (train_loss, test_loss) = (series("train_loss"), series("test_loss"));
    assert!(
        train_loss.windows(2).all(|w| w[1] < w[0]),
        "training loss falls every epoch: {train_loss:?}"
    );
    assert!(
        test_loss[3] < 0.5 * test_loss[0],
        "test loss at least halves: {test_loss:?}"
    );
    assert_eq!(
        series("test_acc")[3],
        acc,
        "the last epoch's test accuracy is the summary's"
    );

    let e = darts(&["eval", "--model", o, "--json"]);
    ok(&e);
    let ev: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
    assert_eq!(
        ev["evaluation"]["accuracy"].as_f64().unwrap(),
        acc,
        "eval reproduces summary.json"
    );
    assert_eq!(ev["evaluation"]["confusion"].as_array().unwrap().len(), 10);
    let text = darts(&["eval", "--model", o]);
    ok(&text);
    assert!(String::from_utf8_lossy(&text.stdout).contains("confusion matrix"));

    ok(&darts(&["report", o]));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("<svg")
            && html.contains("Training curves")
            && html.contains("--genotype DARTS_V2")
            && !html.contains("<script")
    );
}

#[test]
fn dry_run_prints_the_network_summary() {
    let o = darts(&["train", "--genotype", "DARTS_V2", "--paper", "--dry-run"]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["parameters_without_auxiliary"], 3349342);
    assert_eq!(v["cells"].as_array().unwrap().len(), 20);
    assert_eq!(v["cells"][19]["output_size"], 8);
}

#[test]
fn bad_genotypes_and_models_are_reported() {
    let d = dir("bad");
    let write = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let cases = [
        (write("unknown.py", "Genotype(normal=[('conv_9x9', 0), ('skip_connect', 1)], normal_concat=[2], reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])"), "unknown primitive 'conv_9x9'"),
        (write("range.py", "Genotype(normal=[('skip_connect', 0), ('skip_connect', 5)], normal_concat=[2], reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])"), "cannot take input 5"),
        (write("broken.json", "{\"normal\": [[\"skip_connect\", 0]"), "invalid genotype JSON"),
        ("NO_SUCH_NAME".to_string(), "neither a file nor a built-in"),
    ];
    for (g, want) in &cases {
        let o = darts(&["train", "--genotype", g, "--dry-run"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains(want) && !err.contains("panicked"),
            "{g}: {err}"
        );
    }

    // A model file whose tensors (DARTS_V2's) do not match the genotype in its metadata (DARTS_V1).
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden/eval_tiny/model.safetensors");
    let trained = darts::checkpoint::load_model(&src).unwrap();
    let v1 = darts::evalnet::EvalNet::init(
        trained.net.config,
        &darts::Genotype::builtin("DARTS_V1").unwrap(),
        &mut tensor::Rng::new(0),
    )
    .unwrap();
    let model_dir = dir("model");
    darts::checkpoint::save_model(
        &model_dir.join("model.safetensors"),
        &v1.net,
        &trained.params,
        &trained.bns,
    )
    .unwrap();
    let o = darts(&[
        "eval",
        "--model",
        model_dir.to_str().unwrap(),
        "--data",
        "synthetic",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("model.safetensors")
            && (err.contains("missing tensor") || err.contains("has shape")),
        "{err}"
    );

    // Not a model file at all.
    save_tensors(
        &model_dir.join("model.safetensors"),
        &[("x".into(), tensor::Tensor::zeros([1]))],
    )
    .unwrap();
    let o = darts(&[
        "eval",
        "--model",
        model_dir.to_str().unwrap(),
        "--data",
        "synthetic",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a model file"));
}
