//! The evaluation network and its training: PyTorch agreement (parameter count, logits), the
//! auxiliary head, determinism across thread counts, and stop/resume.
use autograd::Tape;
use darts::checkpoint::{load_model, TensorFile};
use darts::data::Dataset;
use darts::evalnet::{EvalConfig, EvalNet};
use darts::forward::Weights;
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

/// The auxiliary head against PyTorch: the trained tiny network of
/// `trained_weights_give_pytorchs_logits` in training mode (batch statistics, no drop-path) gives
/// PyTorch's logits and auxiliary logits (`train_logits`, `train_logits_aux`, from
/// `scripts/golden_eval_model.py`); in eval mode the head does not run; a map under 8x8 at the
/// head is refused.
#[test]
fn auxiliary_head_matches_pytorch_in_training_and_is_off_in_eval() {
    let model = load_model(&golden("eval_tiny/model.safetensors")).unwrap();
    let g = TensorFile::open(&golden("eval_logits.safetensors")).unwrap();
    assert!(model
        .params
        .names
        .iter()
        .any(|n| n == "auxiliary_head.features.5.weight"));
    let run = |x: &Tensor, train: bool| {
        let mut bns = model.bns.clone();
        let mut t = Tape::new();
        let mut ctx = Weights::of(&model.params, &mut bns).leaves(&mut t, false, train);
        let x = t.leaf(x.clone(), false);
        model
            .net
            .forward(&mut t, x, &mut ctx, None)
            .map(|l| (t.value(l.main).clone(), l.aux.map(|a| t.value(a).clone())))
    };
    let close = |ours: &Tensor, theirs: &Tensor, what: &str| {
        assert_eq!(ours.dims(), theirs.dims(), "{what}");
        for (a, b) in ours.data().iter().zip(theirs.data()) {
            assert!(
                (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                "{what}: ours {a} vs PyTorch {b}"
            );
        }
    };
    let x = &g.f32s["x"];
    let (logits, aux) = run(x, true).unwrap();
    close(&logits, &g.f32s["train_logits"], "training-mode logits");
    close(
        &aux.expect("auxiliary logits in training mode"),
        &g.f32s["train_logits_aux"],
        "auxiliary logits",
    );
    let (logits, aux) = run(x, false).unwrap();
    close(&logits, &g.f32s["logits"], "eval-mode logits");
    assert!(aux.is_none(), "no auxiliary logits in eval mode");

    // 16x16 images leave a 4x4 map at the head (cell 3 of 5, after two reductions).
    let small = Tensor::randn([2, 3, 16, 16], 1.0, &mut Rng::new(2));
    let e = run(&small, true).unwrap_err().to_string();
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
    t.model()
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
    first.save(&path).unwrap();
    let mut resumed = Trainer::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    resumed
        .run(&train, Some(&test), &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert!(
        weights_bits(&resumed) == weights_bits(&straight),
        "resumed run diverged"
    );
    let accs = |t: &Trainer| {
        t.history()
            .iter()
            .map(|r| (r.train_loss, r.test_acc))
            .collect::<Vec<_>>()
    };
    assert_eq!(accs(&resumed), accs(&straight));
}
