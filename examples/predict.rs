//! Trains the evaluation network of a genotype on data from memory, saves it, loads it back and
//! predicts classes of new images, then reports accuracy and the confusion matrix.
//!
//!     cargo run --release --example predict
//!
//! The data: 32x32 RGB noise images of three classes; class k has its k-th channel brightened.
use darts::checkpoint::{load_model, save_model};
use darts::data::Dataset;
use darts::train::{TrainConfig, Trainer};
use darts::Genotype;
use std::sync::atomic::AtomicBool;
use tensor::{Rng, Tensor};

fn images(n: usize, seed: u64) -> darts::Result<Dataset> {
    let side = 32;
    let mut x = Tensor::randn([n, 3, side, side], 1.0, &mut Rng::new(seed));
    let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
    for (image, &label) in x.data_mut().chunks_mut(3 * side * side).zip(&labels) {
        let channel = &mut image[label as usize * side * side..][..side * side];
        channel.iter_mut().for_each(|v| *v += 0.5);
    }
    Dataset::from_tensors(&x, labels, 3)
}

fn main() -> darts::Result<()> {
    let (train, test) = (images(192, 1)?, images(60, 2)?);
    let config = TrainConfig {
        channels: 4,
        layers: 3,
        epochs: 3,
        batch: 16,
        auxiliary_weight: 0.0,
        cutout: 0,
        ..TrainConfig::default()
    };
    let genotype = Genotype::builtin("DARTS_V2").expect("a built-in genotype");
    let mut trainer = Trainer::new(config, &genotype, train.classes, train.channels)?;
    trainer.run(&train, Some(&test), &AtomicBool::new(false), &mut |_| {})?;

    let path =
        std::env::temp_dir().join(format!("darts-predict-{}.safetensors", std::process::id()));
    let m = &trainer.model();
    save_model(&path, &m.net, &m.params, &m.bns)?;
    let mut model = load_model(&path)?;
    std::fs::remove_file(&path).ok();

    // Logits of the first six test images, in eval mode (running BN statistics).
    let first: Vec<usize> = (0..6).collect();
    let (x, y) = test.batch(&first, None);
    let logits = model.predict(&x)?;
    for (row, label) in logits.data().chunks(test.classes).zip(&y) {
        let best = (0..row.len())
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap_or(0);
        println!("predicted {best}, true {label}, logits {row:.2?}");
    }
    let e = model.evaluate(&test, 16)?;
    println!(
        "test accuracy {:.3} over {} images; confusion {:?}",
        e.accuracy, e.images, e.confusion
    );
    Ok(())
}
