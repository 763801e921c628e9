//! `darts train`: train the evaluation network of a genotype from scratch; and `darts eval`.
use crate::run_dir::{print_line, refuse_existing_run, tidy_json, write_json, RunInfo, Session};
use crate::search::{last_good, load_data};
use crate::Failure;
use darts::checkpoint::{load_model, load_with_fallback, save_model, write_atomic};
use darts::evalnet::EvalNet;
use darts::render;
use darts::train::{TrainConfig, TrainEvent, Trainer};
use darts::{Genotype, Outcome};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Defaults that train meaningfully on the built-in data in a few minutes on 2 cores; `--paper`
/// selects the DARTS CIFAR-10 setting (20 cells, C=36, batch 96, 600 epochs).
const QUICK: (usize, usize, usize, usize) = (8, 16, 8, 32); // layers, channels, epochs, batch

#[derive(clap::Args)]
pub struct TrainArgs {
    /// genotype.json, a file in the reference Genotype(...) syntax, or a built-in name (DARTS_V1, DARTS_V2).
    #[arg(long)]
    genotype: Option<String>,
    /// synthetic (built in), cifar10:DIR or idx:DIR.
    #[arg(long)]
    data: Option<String>,
    #[arg(long)]
    layers: Option<usize>,
    #[arg(long)]
    channels: Option<usize>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch: Option<usize>,
    #[arg(long = "auxiliary-weight")]
    auxiliary_weight: Option<f32>,
    #[arg(long = "drop-path")]
    drop_path: Option<f32>,
    #[arg(long)]
    cutout: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Use only the first N training images.
    #[arg(long)]
    subset: Option<usize>,
    /// The DARTS paper's setting: 20 cells, 36 channels, batch 96, 600 epochs (flags still override).
    #[arg(long)]
    paper: bool,
    /// Print the network's summary (cells, shapes, parameter counts) as JSON and stop.
    #[arg(long = "dry-run")]
    dry_run: bool,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    resume: Option<PathBuf>,
    /// With --resume: continue even though the data differs from what the run started on.
    #[arg(long = "accept-changed-data")]
    accept_changed_data: bool,
}

fn config_from(a: &TrainArgs) -> TrainConfig {
    let d = TrainConfig::default();
    let (layers, channels, epochs, batch) = if a.paper {
        (d.layers, d.channels, d.epochs, d.batch)
    } else {
        QUICK
    };
    TrainConfig {
        layers: a.layers.unwrap_or(layers),
        channels: a.channels.unwrap_or(channels),
        epochs: a.epochs.unwrap_or(epochs),
        batch: a.batch.unwrap_or(batch),
        auxiliary_weight: a.auxiliary_weight.unwrap_or(d.auxiliary_weight),
        drop_path: a.drop_path.unwrap_or(d.drop_path),
        cutout: a.cutout.unwrap_or(d.cutout),
        seed: a.seed.unwrap_or(d.seed),
        ..d
    }
}

fn dry_run(
    cfg: &TrainConfig,
    genotype: &Genotype,
    classes: usize,
    in_channels: usize,
    side: usize,
) -> Result<u8, Failure> {
    let t = Trainer::new(cfg.clone(), genotype, classes, in_channels)?;
    let p = &t.model().params;
    let aux = EvalNet::aux_params(p);
    let summary = json!({
        "genotype": genotype.to_python(),
        "config": cfg,
        "input": [in_channels, side, side],
        "cells": t.model().net.cell_summaries(side),
        "parameters": p.numel(),
        "parameters_without_auxiliary": p.numel() - aux,
        "auxiliary_parameters": aux,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&tidy_json(summary)).expect("json")
    );
    Ok(0)
}

/// How a `darts train` starts: a resumed run (its directory locked), or a new genotype and
/// configuration.
enum Start {
    Resume(Box<Trainer>, darts::lock::DirLock),
    New(TrainConfig, Genotype),
}

pub fn run(a: TrainArgs) -> Result<u8, Failure> {
    // Every check passes before anything is written into the output directory. A resumed run
    // brings its trainer and data spec; a new one its genotype and configuration. Either way the
    // data is loaded once, below.
    let (start, mut info, out) = match &a.resume {
        Some(dir) => {
            if a.genotype.is_some()
                || a.data.is_some()
                || a.layers.is_some()
                || a.channels.is_some()
                || a.epochs.is_some()
                || a.batch.is_some()
                || a.subset.is_some()
                || a.seed.is_some()
                || a.paper
                || a.dry_run
            {
                return Err(Failure("--resume continues the saved run as it was configured; only --threads and --out may be given with it".into(), 2));
            }
            let out = a.out.clone().unwrap_or_else(|| dir.clone());
            let lock = darts::lock::DirLock::acquire(&out)?;
            let info = RunInfo::read(dir)?;
            let (t, warning) =
                load_with_fallback(&dir.join("checkpoint.safetensors"), Trainer::load)?;
            if let Some(w) = warning {
                eprintln!("warning: {w}");
            }
            (Start::Resume(Box::new(t), lock), info, out)
        }
        None => {
            let spec = a.genotype.as_deref().ok_or_else(|| Failure("--genotype FILE|NAME is required (e.g. --genotype DARTS_V2 or runs/search/genotype.json)".into(), 2))?;
            let genotype = Genotype::load(spec)?;
            let cfg = config_from(&a);
            cfg.validate()?;
            let info = RunInfo::new(a.data.clone(), a.subset);
            let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs/train"));
            (Start::New(cfg, genotype), info, out)
        }
    };
    let seed = match &start {
        Start::Resume(t, _) => t.config().seed,
        Start::New(cfg, _) => cfg.seed,
    };
    let splits = load_data(&info.data, info.subset, seed)?;
    let (mut trainer, _lock) = match start {
        Start::Resume(t, lock) => {
            info.check_data(&fingerprint(&splits), a.accept_changed_data)?;
            (*t, lock)
        }
        Start::New(cfg, genotype) => {
            info.data_fingerprint = Some(fingerprint(&splits));
            crate::memory::check(
                "this network",
                crate::memory::train_bytes(
                    cfg.channels,
                    cfg.layers,
                    cfg.batch,
                    splits.train.height * splits.train.width,
                ),
            )?;
            if a.dry_run {
                return dry_run(
                    &cfg,
                    &genotype,
                    splits.train.classes,
                    splits.train.channels,
                    splits.train.height,
                );
            }
            let t = Trainer::new(cfg, &genotype, splits.train.classes, splits.train.channels)?;
            let lock = darts::lock::DirLock::acquire(&out)?;
            refuse_existing_run(&out, "train")?;
            (t, lock)
        }
    };
    info.write(&out)?;
    write_atomic(
        &out.join("genotype.json"),
        trainer.model().net.genotype.to_json().as_bytes(),
    )?;
    let steps = trainer.steps_per_epoch(splits.train.len());
    let mut session = Session::start(
        &out,
        (trainer.config().epochs * steps) as u64,
        (trainer.position().0 * steps + trainer.position().1) as u64,
    )?;
    let cancel = session.cancel.clone();
    eprintln!(
        "training: {} params, {} cells of C={}, batch {}, {} epochs x {} steps, {} threads -> {}",
        trainer.model().params.numel(),
        trainer.config().layers,
        trainer.config().channels,
        trainer.config().batch,
        trainer.config().epochs,
        steps,
        rayon::current_num_threads(),
        out.display()
    );
    let ckpt = out.join("checkpoint.safetensors");
    let start = Instant::now();
    let result = trainer.run(&splits.train, splits.test.as_ref(), &cancel, &mut |e| match e {
        TrainEvent::Step(r) => {
            session.log_step(r);
            let bar = &session.bar;
            bar.set_position((r.epoch * r.steps_per_epoch + r.step + 1) as u64);
            bar.set_message(format!("epoch {} step {}/{} | loss {:.3} acc {:.2}", r.epoch + 1, r.step + 1, r.steps_per_epoch, r.loss, r.train_acc));
        }
        TrainEvent::Epoch(t) => {
            let r = t.history().last().expect("an epoch just ended");
            let test = match (r.test_loss, r.test_acc) {
                (Some(l), Some(a)) => format!("test loss {l:.4} acc {a:.3}"),
                _ => "no test split".into(),
            };
            let line = format!("epoch {:>3}: lr {:.5}  drop-path {:.3}  train loss {:.4} acc {:.3}  {test}  ({:.1} s)", r.epoch + 1, r.lr, r.drop_path, r.train_loss, r.train_acc, r.seconds);
            print_line(&session.bar, line);
            let saved = t.save(&ckpt)
                .map_err(Failure::from)
                .and_then(|()| write_outputs(&out, t, &info, start.elapsed().as_secs_f64(), "running"));
            session.check(saved);
        }
    });
    let bar = &session.bar;
    if let Some(e) = session.failed_write.take() {
        bar.abandon();
        return Err(Failure(
            format!("{e}; training stopped ({})", last_good(&ckpt)),
            1,
        ));
    }
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            bar.abandon();
            return Err(Failure(
                format!("{e}; training stopped ({})", last_good(&ckpt)),
                1,
            ));
        }
    };
    bar.finish_and_clear();
    trainer.save(&ckpt)?;
    let m = &trainer.model();
    save_model(&out.join("model.safetensors"), &m.net, &m.params, &m.bns)?;
    let status = if outcome == Outcome::Finished {
        "finished"
    } else {
        "interrupted"
    };
    write_outputs(&out, &trainer, &info, start.elapsed().as_secs_f64(), status)?;
    let last = trainer.history().last();
    match outcome {
        Outcome::Finished => {
            eprintln!(
                "done: test accuracy {}; model in {}",
                last.and_then(|r| r.test_acc)
                    .map_or("n/a".into(), |a| format!("{a:.4}")),
                out.join("model.safetensors").display()
            );
            Ok(0)
        }
        Outcome::Cancelled => {
            eprintln!("interrupted at epoch {}, step {}: checkpoint saved; continue with `darts train --resume {}`", trainer.position().0, trainer.position().1, out.display());
            Ok(130)
        }
    }
}

/// The fingerprint of both splits a training reads.
fn fingerprint(s: &darts::data::Splits) -> String {
    let test = s.test.as_ref().map_or(String::new(), |t| t.fingerprint());
    format!("{}{test}", s.train.fingerprint())
}

/// Writes `curves.svg` and `summary.json` for the trainer's current state.
fn write_outputs(
    out: &Path,
    trainer: &Trainer,
    info: &RunInfo,
    seconds: f64,
    status: &str,
) -> Result<(), Failure> {
    write_atomic(
        &out.join("curves.svg"),
        render::curves_svg(trainer.history()).as_bytes(),
    )?;
    let m = &trainer.model();
    let last = trainer.history().last();
    let aux = EvalNet::aux_params(&m.params);
    let summary = json!({
        "kind": "train",
        "status": status,
        "genotype": m.net.genotype,
        "genotype_python": m.net.genotype.to_python(),
        "config": trainer.config(),
        "data": info.data,
        "subset": info.subset,
        "command": info.command,
        "seed": trainer.config().seed,
        "threads": rayon::current_num_threads(),
        "parameters": m.params.numel(),
        "parameters_without_auxiliary": m.params.numel() - aux,
        "epochs_completed": trainer.history().len(),
        "train_accuracy": last.map(|r| r.train_acc),
        "test_accuracy": last.and_then(|r| r.test_acc),
        "seconds_this_session": seconds,
        "seconds_total": trainer.history().iter().map(|r| r.seconds).sum::<f64>(),
        "epochs": trainer.history(),
    });
    write_json(&out.join("summary.json"), summary)
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// A `darts train` output directory (with model.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Data to evaluate on (default: the data the model was trained on); its test split is used.
    #[arg(long)]
    data: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

pub fn eval(a: EvalArgs) -> Result<u8, Failure> {
    let mut model = load_model(&a.model.join("model.safetensors"))?;
    let spec = match &a.data {
        Some(d) => d.clone(),
        None => {
            RunInfo::read(&a.model)
                .map_err(|Failure(m, c)| Failure(format!("{m} (or give --data)"), c))?
                .data
        }
    };
    let seed = read_seed(&a.model);
    let splits = load_data(&spec, None, seed)?;
    let test = splits
        .test
        .ok_or_else(|| Failure(format!("--data {spec} has no test split to evaluate on"), 1))?;
    let c = &model.net.config;
    if test.classes != c.classes || test.channels != c.in_channels {
        return Err(Failure(
            format!(
                "the data has {} classes of {}-channel images, the model expects {} and {}",
                test.classes, test.channels, c.classes, c.in_channels
            ),
            1,
        ));
    }
    let e = model.evaluate(&test, 64)?;
    let j = tidy_json(json!({ "model": a.model, "data": spec, "evaluation": e }));
    write_json(&a.model.join("eval.json"), j.clone())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&j).expect("json"));
        return Ok(0);
    }
    println!(
        "test images {}  loss {:.4}  accuracy {:.4}",
        e.images, e.loss, e.accuracy
    );
    println!("\nper-class accuracy:");
    for (k, acc) in e.per_class_accuracy.iter().enumerate() {
        println!("  class {k:>3}: {acc:.4}");
    }
    println!("\nconfusion matrix (rows: true class, columns: predicted):");
    print!("      ");
    for k in 0..e.confusion.len() {
        print!("{k:>6}");
    }
    println!();
    for (k, row) in e.confusion.iter().enumerate() {
        print!("{k:>6}");
        for v in row {
            print!("{v:>6}");
        }
        println!();
    }
    Ok(0)
}

/// The seed the built-in data of a run was generated from (summary.json), 0 if unknown.
fn read_seed(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("summary.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["seed"].as_u64())
        .unwrap_or(0)
}
