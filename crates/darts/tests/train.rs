//! The evaluation network and its training: PyTorch agreement (parameter count, logits), the
//! auxiliary head, determinism across thread counts, and stop/resume.
use autograd::{Tape, Var};
use darts::checkpoint::{load_model, load_train, save_train, TensorFile};
use darts::data::Dataset;
use darts::evalnet::{EvalConfig, EvalNet};
use darts::train::{TrainConfig, Trainer};
use darts::Genotype;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use tensor::{Rng, Tensor};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden")
        .join(name)
}

/// Counts from `scripts/golden_eval_model.py` (PyTorch 2.15).
#[test]
fn darts_v2_parameter_count_matches_pytorch() {
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden("eval_model.json")).unwrap()).unwrap();
    let g = Genotype::builtin("DARTS_V2").unwrap();
    let cfg = EvalConfig {
        channels: 36,
        layers: 20,
        classes: 10,
        in_channels: 3,
        auxiliary: true,
    };
    let init = EvalNet::init(cfg, &g, &mut Rng::new(0)).unwrap();
    let aux = EvalNet::aux_params(&init.params);
    assert_eq!(
        init.params.numel() as u64,
        info["darts_v2_c36_l20_with_auxiliary"].as_u64().unwrap()
    );
    assert_eq!(
        (init.params.numel() - aux) as u64,
        info["darts_v2_c36_l20_without_auxiliary"].as_u64().unwrap()
    );
}

/// tests/golden/eval_tiny/model.safetensors was trained by `darts train` (see its README);
/// eval_logits.safetensors holds PyTorch's eval-mode logits of it on a fixed batch, computed by
/// `scripts/golden_eval_model.py` after `load_state_dict(strict=True)`.
#[test]
fn trained_weights_give_pytorchs_logits() {
    let mut model = load_model(&golden("eval_tiny/model.safetensors")).unwrap();
    let g = TensorFile::open(&golden("eval_logits.safetensors")).unwrap();
    let ours = model.predict(&g.f32s["x"]).unwrap();
    let theirs = &g.f32s["logits"];
    assert_eq!(ours.dims(), theirs.dims());
    for (a, b) in ours.data().iter().zip(theirs.data()) {
        assert!(
            (a - b).abs() < 1e-4 * (1.0 + b.abs()),
            "ours {a} vs PyTorch {b}"
        );
    }
}

fn tiny_net(aux: bool) -> (EvalNet, darts::params::ParamStore, darts::params::BnStore) {
    let cfg = EvalConfig {
        channels: 2,
        layers: 3,
        classes: 3,
        in_channels: 3,
        auxiliary: aux,
    };
    let i = EvalNet::init(
        cfg,
        &Genotype::builtin("DARTS_V1").unwrap(),
        &mut Rng::new(1),
    )
    .unwrap();
    (i.net, i.params, i.bns)
}

#[test]
fn auxiliary_head_runs_in_training_only_and_needs_8x8_features() {
    let (net, params, mut bns) = tiny_net(true);
    assert!(params
        .names
        .iter()
        .any(|n| n == "auxiliary_head.features.5.weight"));
    let run = |side: usize, train: bool, bns: &mut darts::params::BnStore| {
        let mut t = Tape::new();
        let w: Vec<Var> = params
            .values
            .iter()
            .map(|v| t.leaf(v.clone(), false))
            .collect();
        let x = t.leaf(
            Tensor::randn([2, 3, side, side], 1.0, &mut Rng::new(2)),
            false,
        );
        net.forward(&mut t, x, &w, bns, train, None).map(|(l, a)| {
            (
                t.value(l).dims().to_vec(),
                a.map(|a| t.value(a).dims().to_vec()),
            )
        })
    };
    assert_eq!(
        run(32, true, &mut bns).unwrap(),
        (vec![2, 3], Some(vec![2, 3]))
    );
    assert_eq!(
        run(32, false, &mut bns).unwrap(),
        (vec![2, 3], None),
        "no auxiliary logits in eval mode"
    );
    let e = run(16, true, &mut bns).unwrap_err().to_string();
    assert!(
        e.contains("auxiliary head needs a feature map of at least 8x8"),
        "{e}"
    );
}

/// Random 32x32 images whose label is the brightest channel.
fn data(n: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut x = Tensor::randn([n, 3, 32, 32], 1.0, &mut rng);
    let labels: Vec<u32> = (0..n).map(|_| rng.below(3) as u32).collect();
    for (img, &l) in x.data_mut().chunks_mut(3 * 1024).zip(&labels) {
        img[l as usize * 1024..][..1024]
            .iter_mut()
            .for_each(|v| *v += 0.5);
    }
    Dataset::from_tensors(&x, labels, 3).unwrap()
}

fn config() -> TrainConfig {
    TrainConfig {
        channels: 2,
        layers: 3,
        epochs: 2,
        batch: 8,
        seed: 4,
        cutout: 8,
        ..Default::default()
    }
}

fn weights_bits(t: &Trainer) -> Vec<u32> {
    t.model
        .params
        .values
        .iter()
        .flat_map(|p| p.data().iter().map(|v| v.to_bits()))
        .collect()
}

#[test]
fn one_and_two_threads_train_identical_weights() {
    let (train, test) = (data(32, 1), data(16, 2));
    let g = Genotype::builtin("DARTS_V2").unwrap();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let mut t = Trainer::new(config(), &g, 3, 3).unwrap();
                t.run(&train, Some(&test), &AtomicBool::new(false), &mut |_| {})
                    .unwrap();
                weights_bits(&t)
            })
    };
    assert!(run(1) == run(2), "1 and 2 threads differ");
}

#[test]
fn stop_and_resume_equals_an_uninterrupted_training_run() {
    let (train, test) = (data(32, 3), data(16, 4));
    let g = Genotype::builtin("DARTS_V2").unwrap();
    let mut straight = Trainer::new(config(), &g, 3, 3).unwrap();
    straight
        .run(&train, Some(&test), &AtomicBool::new(false), &mut |_| {})
        .unwrap();

    let mut first = Trainer::new(config(), &g, 3, 3).unwrap();
    for _ in 0..5 {
        first.step(&train, Some(&test)).unwrap(); // 4 steps per epoch: stops mid-epoch 2
    }
    let path = std::env::temp_dir().join(format!(
        "darts-train-resume-{}.safetensors",
        std::process::id()
    ));
    save_train(&path, &first).unwrap();
    let mut resumed = load_train(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    resumed
        .run(&train, Some(&test), &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert!(
        weights_bits(&resumed) == weights_bits(&straight),
        "resumed run diverged"
    );
    let accs = |t: &Trainer| {
        t.history
            .iter()
            .map(|r| (r.train_loss, r.test_acc))
            .collect::<Vec<_>>()
    };
    assert_eq!(accs(&resumed), accs(&straight));
}
