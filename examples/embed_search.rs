//! Embeds a DARTS Max-W search in a program: data from memory, progress events, a checkpoint at
//! every epoch end, a cancel flag raised from the progress callback, and a resume from the
//! checkpoint that continues exactly where the search stopped.
//!
//!     cargo run --release --example embed_search
//!
//! The data: 16x16 RGB noise images of three classes; class k has its k-th channel brightened.
use darts::data::Dataset;
use darts::{Event, Outcome, Search, SearchConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use tensor::{Rng, Tensor};

fn main() -> darts::Result<()> {
    let (n, side) = (256, 16);
    let mut rng = Rng::new(1);
    let mut x = Tensor::randn([n, 3, side, side], 1.0, &mut rng);
    let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
    for (image, &label) in x.data_mut().chunks_mut(3 * side * side).zip(&labels) {
        let channel = &mut image[label as usize * side * side..][..side * side];
        channel.iter_mut().for_each(|v| *v += 0.5);
    }
    let data = Dataset::from_tensors(&x, labels, 3)?;

    let config = SearchConfig {
        channels: 4,
        layers: 3,
        epochs: 4,
        batch: 16,
        ..SearchConfig::default()
    };
    let mut search = Search::new(config, data.classes, data.channels)?;
    let dir = std::env::temp_dir().join(format!("darts-embed-search-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| darts::DartsError::Io {
        path: dir.clone(),
        source: e,
    })?;
    let checkpoint = dir.join("checkpoint.safetensors");

    // Stop after two epochs (a user pressing a button would raise the same flag).
    let cancel = AtomicBool::new(false);
    let mut saved = Ok(());
    let outcome = search.run(&data, &cancel, &mut |event| match event {
        Event::Step(r) => eprint!(
            "\rstep {:>2} of epoch {}: train loss {:.3}",
            r.step, r.epoch, r.train_loss
        ),
        Event::Epoch(s) => {
            let r = s.history().last().expect("an epoch just ended");
            eprintln!();
            println!(
                "epoch {}: val acc {:.3}, normal cell {:?}",
                r.epoch, r.val_acc, r.genotype.normal
            );
            saved = s.save(&checkpoint);
            if s.position().0 == 2 {
                cancel.store(true, Ordering::SeqCst);
            }
        }
    })?;
    saved?;
    assert_eq!(outcome, Outcome::Cancelled);

    // Later, perhaps in another process: the checkpoint continues the search exactly.
    let mut resumed = Search::load(&checkpoint)?;
    assert_eq!(resumed.position(), (2, 0));
    resumed.run(&data, &AtomicBool::new(false), &mut |_| {})?;
    println!("searched cell:\n{}", resumed.genotype().to_python());
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
