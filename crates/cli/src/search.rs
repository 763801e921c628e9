//! `darts search`: a search with a progress bar, results written into one directory, a checkpoint
//! at every epoch end and on Ctrl-C, and `--resume DIR` to continue bit-identically.
use crate::run_dir::{print_line, refuse_existing_run, write_json, RunInfo, Session};
use crate::Failure;
use darts::checkpoint::{load_with_fallback, write_atomic};
use darts::data::{load_cifar10, load_idx, synthetic, Splits, SyntheticConfig};
use darts::optim::GradTransform;
use darts::render;
use darts::schedule::Schedule;
use darts::{Event, Order, Outcome, Search, SearchConfig, Weighting};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Defaults chosen to finish a meaningful search on the built-in data in a few minutes on 2 cores;
/// the DARTS paper's setting is `--channels 16 --layers 8 --batch 64 --epochs 50`.
const DEFAULT_CHANNELS: usize = 8;
const DEFAULT_LAYERS: usize = 5;
const DEFAULT_BATCH: usize = 16;
const DEFAULT_EPOCHS: usize = 4;
/// Images of the built-in dataset (training, test).
const SYNTHETIC_SIZE: (usize, usize) = (800, 400);

#[derive(clap::Args)]
pub struct SearchArgs {
    /// synthetic (built in), cifar10:DIR (binary batches) or idx:DIR (MNIST-style, raw or .gz).
    #[arg(long)]
    data: Option<String>,
    /// Mixture weights of each edge's ops (default maxw).
    #[arg(long, value_enum)]
    weighting: Option<Weighting>,
    /// Architecture gradient: first order, or second (unrolled) (default first).
    #[arg(long, value_enum)]
    order: Option<Order>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    layers: Option<usize>,
    #[arg(long)]
    channels: Option<usize>,
    #[arg(long)]
    batch: Option<usize>,
    /// Use only the first N training images.
    #[arg(long)]
    pub subset: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads (0 = one per core). Results do not depend on it.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Weight learning rate schedule; cosine-power is sharpDARTS's, order 2 (default cosine).
    #[arg(long = "lr-schedule", value_enum)]
    lr_schedule: Option<LrScheduleArg>,
    /// subtract-max: g <- g - max(g) per parameter buffer (default none).
    #[arg(long = "grad-transform", value_enum)]
    grad_transform: Option<GradTransform>,
    /// Output directory (default runs/search, or the --resume directory).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the search saved in this directory.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// With --resume: continue even though the data differs from what the run started on.
    #[arg(long = "accept-changed-data")]
    accept_changed_data: bool,
}

pub(crate) fn load_data(spec: &str, subset: Option<usize>, seed: u64) -> Result<Splits, Failure> {
    let mut splits = match spec.split_once(':') {
        None if spec == "synthetic" => synthetic(SyntheticConfig {
            train: SYNTHETIC_SIZE.0,
            test: SYNTHETIC_SIZE.1,
            seed,
        }),
        Some(("cifar10", dir)) => load_cifar10(Path::new(dir))?,
        Some(("idx", dir)) => load_idx(Path::new(dir))?,
        _ => {
            return Err(Failure(
                format!("--data {spec}: expected synthetic, cifar10:DIR or idx:DIR"),
                2,
            ))
        }
    };
    if let Some(n) = subset {
        if n < 4 {
            return Err(Failure(format!("--subset {n}: need at least 4 images"), 2));
        }
        splits.train.truncate(n);
    }
    Ok(splits)
}

/// The `--lr-schedule` choices.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LrScheduleArg {
    Cosine,
    CosinePower,
}

/// Rejects flags that would change a resumed run.
fn check_resume_flags(a: &SearchArgs) -> Result<(), Failure> {
    let given: Vec<&str> = [
        ("--data", a.data.is_some()),
        ("--weighting", a.weighting.is_some()),
        ("--order", a.order.is_some()),
        ("--epochs", a.epochs.is_some()),
        ("--layers", a.layers.is_some()),
        ("--channels", a.channels.is_some()),
        ("--batch", a.batch.is_some()),
        ("--subset", a.subset.is_some()),
        ("--seed", a.seed.is_some()),
        ("--lr-schedule", a.lr_schedule.is_some()),
        ("--grad-transform", a.grad_transform.is_some()),
    ]
    .iter()
    .filter(|(_, g)| *g)
    .map(|(n, _)| *n)
    .collect();
    if given.is_empty() {
        Ok(())
    } else {
        Err(Failure(format!("--resume continues the saved run as it was configured; {} cannot be changed (start a new --out instead)", given.join(", ")), 2))
    }
}

fn config_from(a: &SearchArgs) -> SearchConfig {
    let d = SearchConfig::default();
    SearchConfig {
        channels: a.channels.unwrap_or(DEFAULT_CHANNELS),
        layers: a.layers.unwrap_or(DEFAULT_LAYERS),
        epochs: a.epochs.unwrap_or(DEFAULT_EPOCHS),
        batch: a.batch.unwrap_or(DEFAULT_BATCH),
        seed: a.seed.unwrap_or(d.seed),
        weighting: a.weighting.unwrap_or(Weighting::Maxw),
        order: a.order.unwrap_or(d.order),
        schedule: match a.lr_schedule {
            None | Some(LrScheduleArg::Cosine) => Schedule::Cosine,
            Some(LrScheduleArg::CosinePower) => Schedule::CosinePower { order: 2.0 },
        },
        grad_transform: a.grad_transform.unwrap_or(d.grad_transform),
        ..d
    }
}

/// Writes every result file for the search's current state.
fn write_outputs(
    out: &Path,
    s: &Search,
    info: &RunInfo,
    seconds: f64,
    status: &str,
) -> Result<(), Failure> {
    let g = s.genotype();
    let write = |name: &str, text: &str| {
        write_atomic(&out.join(name), text.as_bytes()).map_err(Failure::from)
    };
    write("genotype.json", &g.to_json())?;
    write("genotype.py", &format!("from collections import namedtuple\nGenotype = namedtuple('Genotype', 'normal normal_concat reduce reduce_concat')\n\nSEARCHED = {}\n", g.to_python()))?;
    write("normal.dot", &render::cell_dot(&g.normal, &g.normal_concat))?;
    write("reduce.dot", &render::cell_dot(&g.reduce, &g.reduce_concat))?;
    write(
        "normal.svg",
        &render::cell_svg("normal cell", &g.normal, &g.normal_concat),
    )?;
    write(
        "reduce.svg",
        &render::cell_svg("reduction cell", &g.reduce, &g.reduce_concat),
    )?;
    write(
        "alphas.csv",
        &render::alphas_csv(s.history(), s.config().weighting),
    )?;
    write(
        "alphas.svg",
        &render::alphas_svg(s.history(), s.config().weighting),
    )?;
    let last = s.history().last();
    let summary = json!({
        "status": status,
        "epochs_completed": s.history().len(),
        "position": { "epoch": s.position().0, "step": s.position().1 },
        "config": s.config(),
        "data": info.data,
        "subset": info.subset,
        "command": info.command,
        "seed": s.config().seed,
        "parameters": s.params().numel(),
        "threads": rayon::current_num_threads(),
        "seconds_this_session": seconds,
        "final": last.map(|r| json!({ "train_loss": r.train_loss, "train_acc": r.train_acc, "val_loss": r.val_loss, "val_acc": r.val_acc })),
        "genotype": g,
        "genotype_python": g.to_python(),
        "epochs": s.history().iter().map(|r| json!({ "epoch": r.epoch, "lr": r.lr, "train_loss": r.train_loss, "train_acc": r.train_acc, "val_loss": r.val_loss, "val_acc": r.val_acc, "seconds": r.seconds, "genotype": r.genotype })).collect::<Vec<_>>(),
    });
    write_json(&out.join("summary.json"), summary)
}

/// How a `darts search` starts: a resumed search (its directory locked), or a new configuration.
enum Start {
    Resume(Box<Search>, darts::lock::DirLock),
    New(SearchConfig),
}

pub fn run(a: SearchArgs) -> Result<u8, Failure> {
    // Every check passes before anything is written into the output directory. A resumed run
    // brings its search and data spec; a new one its configuration. Either way the data is
    // loaded once, below.
    let (start, mut info, out) = match &a.resume {
        Some(dir) => {
            check_resume_flags(&a)?;
            let out = a.out.clone().unwrap_or_else(|| dir.clone());
            let lock = darts::lock::DirLock::acquire(&out)?;
            let info = RunInfo::read(dir)?;
            let (s, warning) =
                load_with_fallback(&dir.join("checkpoint.safetensors"), Search::load)?;
            if let Some(w) = warning {
                eprintln!("warning: {w}");
            }
            (Start::Resume(Box::new(s), lock), info, out)
        }
        None => {
            let config = config_from(&a);
            config.validate()?;
            let info = RunInfo::new(a.data.clone(), a.subset);
            let out = a
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("runs/search"));
            (Start::New(config), info, out)
        }
    };
    let seed = match &start {
        Start::Resume(s, _) => s.config().seed,
        Start::New(config) => config.seed,
    };
    let data = load_data(&info.data, info.subset, seed)?.train;
    let (mut search, _lock) = match start {
        Start::Resume(s, lock) => {
            info.check_data(&data.fingerprint(), a.accept_changed_data)?;
            (*s, lock)
        }
        Start::New(config) => {
            info.data_fingerprint = Some(data.fingerprint());
            crate::memory::check(
                "this search",
                crate::memory::search_bytes(
                    config.channels,
                    config.layers,
                    config.batch,
                    data.height * data.width,
                ),
            )?;
            let s = Search::new(config, data.classes, data.channels)?;
            check_steps(&s, &data)?;
            let lock = darts::lock::DirLock::acquire(&out)?;
            refuse_existing_run(&out, "search")?;
            (s, lock)
        }
    };
    check_steps(&search, &data)?;
    info.write(&out)?;

    let steps = search.steps_per_epoch(data.len());
    let total = (search.config().epochs * steps) as u64;
    let mut session = Session::start(
        &out,
        total,
        (search.position().0 * steps + search.position().1) as u64,
    )?;
    let cancel = session.cancel.clone();
    eprintln!(
        "searching: {} params, {} cells of C={}, batch {}, {} epochs x {} steps, {:?} weighting, {:?} order, {} threads -> {}",
        search.params().numel(),
        search.config().layers,
        search.config().channels,
        search.config().batch,
        search.config().epochs,
        steps,
        search.config().weighting,
        search.config().order,
        rayon::current_num_threads(),
        out.display()
    );
    let start = Instant::now();
    let ckpt = out.join("checkpoint.safetensors");
    let result = search.run(&data, &cancel, &mut |e| match e {
        Event::Step(r) => {
            session.log_step(r);
            let bar = &session.bar;
            bar.set_position((r.epoch * r.steps_per_epoch + r.step + 1) as u64);
            bar.set_message(format!("epoch {}/{} step {}/{} | train loss {:.3} acc {:.2} | val loss {:.3} acc {:.2}", r.epoch + 1, search_epochs(total, r.steps_per_epoch), r.step + 1, r.steps_per_epoch, r.train_loss, r.train_acc, r.val_loss, r.val_acc));
        }
        Event::Epoch(s) => {
            let r = s.history().last().expect("an epoch just ended");
            let line = format!("epoch {:>3}: lr {:.5}  train loss {:.4} acc {:.3}  val loss {:.4} acc {:.3}  ({:.1} s)", r.epoch + 1, r.lr, r.train_loss, r.train_acc, r.val_loss, r.val_acc, r.seconds);
            print_line(&session.bar, line);
            // Checkpoint first, then the result files, each atomically: a kill at any moment
            // leaves a resumable run whose results match its checkpoint or the one before.
            let saved = s.save(&ckpt)
                .map_err(Failure::from)
                .and_then(|()| write_outputs(&out, s, &info, start.elapsed().as_secs_f64(), "running"));
            session.check(saved);
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    let bar = &session.bar;
    if let Some(e) = session.failed_write.take() {
        bar.abandon();
        return Err(Failure(
            format!("{e}; the search stopped ({})", last_good(&ckpt)),
            1,
        ));
    }
    match result {
        Ok(outcome) => {
            bar.finish_and_clear();
            search.save(&ckpt)?;
            let status = if outcome == Outcome::Finished {
                "finished"
            } else {
                "interrupted"
            };
            write_outputs(&out, &search, &info, seconds, status)?;
            match outcome {
                Outcome::Finished => {
                    eprintln!(
                        "done in {seconds:.1} s; genotype:\n{}",
                        search.genotype().to_python()
                    );
                    eprintln!("results in {}", out.display());
                    Ok(0)
                }
                Outcome::Cancelled => {
                    eprintln!("interrupted at epoch {}, step {}: checkpoint saved; continue with `darts search --resume {}`", search.position().0, search.position().1, out.display());
                    Ok(130)
                }
            }
        }
        Err(e) => {
            bar.abandon();
            // The checkpoint on disk is the last good one (written at the last epoch end); keep it.
            Err(Failure(
                format!("{e}; the search stopped ({})", last_good(&ckpt)),
                1,
            ))
        }
    }
}

/// Refuses data too small for one batch of the train half.
fn check_steps(search: &Search, data: &darts::data::Dataset) -> Result<(), Failure> {
    if search.steps_per_epoch(data.len()) == 0 {
        return Err(Failure(format!("{} training images leave a train half of {} images, less than one batch of {} (use a smaller --batch or a larger --subset)", data.len(), data.len() / 2, search.config().batch), 2));
    }
    Ok(())
}

/// Where a stopped run can continue from: its checkpoint, if one was ever written.
pub(crate) fn last_good(ckpt: &Path) -> String {
    let prev = darts::checkpoint::previous(ckpt);
    if ckpt.exists() {
        format!("the last good checkpoint is {}", ckpt.display())
    } else if prev.exists() {
        format!("the last good checkpoint is {}", prev.display())
    } else {
        "no checkpoint was written: it stopped before its first epoch ended".into()
    }
}

fn search_epochs(total: u64, steps: usize) -> u64 {
    total / steps.max(1) as u64
}
