//! `darts grad` against PyTorch: tests/golden/search_*.safetensors and search_model.json were
//! produced by `scripts/golden_search_model.py` (PyTorch 2.15, CPU) from its own implementation of
//! the reference search model. The checkpoint is a PyTorch state_dict (with int64
//! num_batches_tracked) plus the two alphas.
mod common;

use common::*;
use darts::checkpoint::TensorFile;

#[test]
fn gradients_match_pytorch_on_a_pytorch_checkpoint() {
    let d = dir("grad");
    let (out, dot) = (d.join("grads.safetensors"), d.join("tape.dot"));
    let o = darts(&[
        "grad",
        "--checkpoint",
        golden("search_model.safetensors").to_str().unwrap(),
        "--batch",
        golden("search_batch.safetensors").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--weighting",
        "maxw",
        "--stats",
        "--dot",
        dot.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden("search_model.json")).unwrap())
            .unwrap();
    let (ours, theirs) = (
        printed["loss"].as_f64().unwrap(),
        info["loss"].as_f64().unwrap(),
    );
    assert!(
        (ours - theirs).abs() < 1e-4 * theirs.abs(),
        "loss {ours} vs PyTorch {theirs}"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cells.4._ops.13._ops.7.op.2.weight"),
        "--stats lists every parameter"
    );
    assert!(std::fs::read_to_string(&dot)
        .unwrap()
        .starts_with("digraph"));

    let ours = TensorFile::open(&out).unwrap();
    let theirs = TensorFile::open(&golden("search_grads.safetensors")).unwrap();
    assert_eq!(
        ours.f32s.keys().collect::<Vec<_>>(),
        theirs.f32s.keys().collect::<Vec<_>>(),
        "same parameter names"
    );
    // Relative L2 error per tensor, ||ours - PyTorch|| / ||PyTorch|| (as the held-out comparison
    // does): f32 through ~30 batch norms. Measured worst 2.3e-6 (was 2e-3 of each tensor's
    // largest entry before).
    let mut worst = (0.0f64, String::new());
    for (name, t) in &theirs.f32s {
        let g = &ours.f32s[name];
        assert_eq!(g.dims(), t.dims(), "{name}");
        let diff: f64 = g
            .data()
            .iter()
            .zip(t.data())
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        let norm: f64 = t.data().iter().map(|b| (*b as f64).powi(2)).sum();
        let rel = (diff / norm.max(1e-30)).sqrt();
        if rel > worst.0 {
            worst = (rel, name.clone());
        }
    }
    assert!(
        worst.0 < 2e-5,
        "largest relative L2 gradient error {} in {}",
        worst.0,
        worst.1
    );
}

#[test]
fn weight_count_of_the_darts_setting_matches_pytorch() {
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden("search_model.json")).unwrap())
            .unwrap();
    let cfg = darts::NetConfig {
        channels: 16,
        layers: 8,
        classes: 10,
        in_channels: 3,
    };
    let init = darts::Supernet::init(cfg, &mut tensor::Rng::new(0)).unwrap();
    assert_eq!(
        init.params.numel() as u64,
        info["weights_darts_c16_l8_10_classes"].as_u64().unwrap()
    );
}
