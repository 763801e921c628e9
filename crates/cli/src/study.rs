//! `darts study`: the grid of arms x seeds, searched, trained and compared (crates/study does the
//! work; this module parses flags, installs the Ctrl-C / SIGTERM handler and prints).
use crate::Failure;
use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use study::spec::{self, Sizes, StudySpec};
use study::{local, report, slurm, state, StudyError};

impl From<StudyError> for Failure {
    fn from(e: StudyError) -> Self {
        Failure(e.message, if e.usage { 2 } else { 1 })
    }
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct StudyArgs {
    #[command(subcommand)]
    command: Option<StudyCommand>,
    #[command(flatten)]
    grid: GridArgs,
}

// Parsed once per process: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum StudyCommand {
    /// Print every run as a plain `darts` command with its dependency, for any scheduler (writes
    /// DIR/spec.json so `status` and `report` work on the results).
    Plan {
        #[command(flatten)]
        grid: GridArgs,
        /// Only this stage's commands, one a line, no comments (run all searches before trainings).
        #[arg(long, value_enum)]
        stage: Option<StageArg>,
    },
    /// What is done, running, interrupted, failed or pending (and queued, under Slurm).
    Status { dir: PathBuf },
    /// Write study.json, study.csv and report.html from the finished runs.
    Report { dir: PathBuf },
    /// Run one run of a submitted list (what a Slurm array task executes).
    #[command(hide = true)]
    Task {
        dir: PathBuf,
        #[arg(long)]
        list: PathBuf,
        #[arg(long)]
        index: usize,
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StageArg {
    Search,
    Train,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Executor {
    Local,
    Slurm,
}

#[derive(Args, Clone)]
pub struct GridArgs {
    /// Study directory.
    #[arg(long, default_value = "runs/study")]
    out: PathBuf,
    /// Search weightings to compare (comma list of maxw, softmax).
    #[arg(long, default_value = "maxw,softmax")]
    weighting: String,
    /// Gradient transforms (comma list of none, subtract-max).
    #[arg(long = "grad-transform", default_value = "none")]
    grad_transform: String,
    /// Architecture gradient orders (comma list of first, second).
    #[arg(long, default_value = "first")]
    order: String,
    /// A count N (seeds 1..=N) or a comma list of seeds.
    #[arg(long, default_value = "3")]
    seeds: String,
    /// Cells trained without a search: random:K (K random cells), DARTS_V1, DARTS_V2, or none.
    #[arg(long, default_value = "random:1,DARTS_V2")]
    baselines: String,
    /// synthetic (built in), cifar10:DIR or idx:DIR.
    #[arg(long, default_value = "synthetic")]
    data: String,
    /// Use only the first N training images.
    #[arg(long)]
    subset: Option<usize>,
    /// Epochs of every search.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Cells of every search's supernet.
    #[arg(long, default_value_t = 5)]
    layers: usize,
    /// Initial channels of every search's supernet.
    #[arg(long, default_value_t = 8)]
    channels: usize,
    /// Batch size of every search.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Epochs of every training (searched cells and baselines alike).
    #[arg(long = "train-epochs", default_value_t = 6)]
    train_epochs: usize,
    /// Cells of every trained network.
    #[arg(long = "train-layers", default_value_t = 6)]
    train_layers: usize,
    /// Initial channels of every trained network.
    #[arg(long = "train-channels", default_value_t = 12)]
    train_channels: usize,
    /// Batch size of every training.
    #[arg(long = "train-batch", default_value_t = 32)]
    train_batch: usize,
    /// Threads of each run (results do not depend on it).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Runs at once with the local executor (default: the cores / --threads).
    #[arg(long)]
    jobs: Option<usize>,
    /// Where the runs execute: processes on this machine, or Slurm job arrays.
    #[arg(long, value_enum, default_value = "local")]
    executor: Executor,
    /// Extra sbatch arguments for every job array, split at spaces (e.g. "--partition=gpu --time=2:00:00").
    #[arg(long = "slurm-args", allow_hyphen_values = true)]
    slurm_args: Option<String>,
    /// With --executor slurm: block until every job has ended, then write the report.
    #[arg(long)]
    wait: bool,
}

impl GridArgs {
    fn spec(&self) -> Result<StudySpec, Failure> {
        let spec = StudySpec {
            data: self.data.clone(),
            subset: self.subset,
            weightings: spec::parse_weightings(&self.weighting)?,
            grad_transforms: spec::parse_grad_transforms(&self.grad_transform)?,
            orders: spec::parse_orders(&self.order)?,
            seeds: spec::parse_seeds(&self.seeds)?,
            baselines: spec::parse_baselines(&self.baselines)?,
            search: Sizes {
                channels: self.channels,
                layers: self.layers,
                epochs: self.epochs,
                batch: self.batch,
            },
            train: Sizes {
                channels: self.train_channels,
                layers: self.train_layers,
                epochs: self.train_epochs,
                batch: self.train_batch,
            },
        };
        spec.validate()?;
        if self.threads == 0 {
            return Err(Failure("--threads must be at least 1 per run".into(), 2));
        }
        Ok(spec)
    }
}

fn darts_exe() -> Result<PathBuf, Failure> {
    std::env::current_exe().map_err(|e| Failure(format!("cannot locate the darts binary: {e}"), 1))
}

/// A flag raised by Ctrl-C or SIGTERM.
fn cancel_flag() -> Result<Arc<AtomicBool>, Failure> {
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|e| Failure(format!("cannot install the Ctrl-C handler: {e}"), 1))?;
    Ok(cancel)
}

pub fn run(a: StudyArgs) -> Result<u8, Failure> {
    match a.command {
        None => run_grid(a.grid),
        Some(StudyCommand::Plan { grid, stage }) => plan(grid, stage),
        Some(StudyCommand::Status { dir }) => status(&dir),
        Some(StudyCommand::Report { dir }) => write_report(&study::open(&dir)?).map(|_| 0),
        Some(StudyCommand::Task {
            dir,
            list,
            index,
            threads,
        }) => task(&dir, &list, index, threads),
    }
}

fn plan(g: GridArgs, stage: Option<StageArg>) -> Result<u8, Failure> {
    let spec = g.spec()?;
    let plan = study::prepare(&g.out, spec)?;
    let darts = darts_exe()?.to_string_lossy().into_owned();
    let only = stage.map(|s| match s {
        StageArg::Search => study::plan::Stage::Search,
        StageArg::Train => study::plan::Stage::Train,
    });
    print!("{}", plan.to_shell(&darts, g.threads, only));
    if only.is_none() {
        println!("# then: {darts} study report {}", g.out.display());
    }
    Ok(0)
}

fn run_grid(g: GridArgs) -> Result<u8, Failure> {
    let spec = g.spec()?;
    let dir = match g.executor {
        Executor::Local => g.out.clone(),
        // Array tasks may start in another directory: give them absolute paths.
        Executor::Slurm => study::absolute(&g.out)?,
    };
    if g.executor == Executor::Local && (g.slurm_args.is_some() || g.wait) {
        return Err(Failure(
            "--slurm-args and --wait need --executor slurm".into(),
            2,
        ));
    }
    let _lock = study::lock(&dir)?;
    let plan = study::prepare(&dir, spec)?;
    let cancel = cancel_flag()?;
    let darts = darts_exe()?;
    let start = Instant::now();
    match g.executor {
        Executor::Local => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let jobs = g.jobs.unwrap_or((cores / g.threads).max(1));
            if jobs == 0 {
                return Err(Failure("--jobs must be at least 1".into(), 2));
            }
            eprintln!(
                "study {}: {} arms x {} seeds = {} runs, {jobs} at a time x {} threads",
                dir.display(),
                plan.arms.len(),
                plan.spec.seeds.len(),
                plan.runs.len(),
                g.threads
            );
            let out = local::run_local(
                &plan,
                &darts,
                jobs,
                g.threads,
                &cancel,
                &mut |line: &str| {
                    eprintln!("[{:>6.0} s] {line}", start.elapsed().as_secs_f64());
                },
            )?;
            eprintln!("{} runs done now, {} were done before, {} failed, {} not started ({:.0} s; {} runs in the study)", out.done.len(), out.skipped_done, out.failed.len(), out.blocked.len(), start.elapsed().as_secs_f64(), plan.runs.len());
            for b in &out.blocked {
                eprintln!("not started: {b}");
            }
            if out.interrupted {
                eprintln!("interrupted: running runs saved their checkpoints; run the same command again to continue");
                return Ok(130);
            }
            finish(&plan, !out.failed.is_empty() || !out.blocked.is_empty())
        }
        Executor::Slurm => {
            let extra: Vec<String> = g
                .slurm_args
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .map(String::from)
                .collect();
            let jobs = slurm::submit(&plan, &darts, g.threads, &extra)?;
            if jobs.is_empty() {
                eprintln!("every run is already done");
                return finish(&plan, false);
            }
            for j in &jobs {
                eprintln!(
                    "submitted {} array job {} ({} tasks)",
                    j.name,
                    j.job_id,
                    j.runs.len()
                );
            }
            if !g.wait {
                eprintln!("follow it with `darts study status {}`; when it has ended, `darts study report {}`", dir.display(), dir.display());
                return Ok(0);
            }
            if !slurm::wait(&jobs, &cancel)? {
                eprintln!(
                    "stopped waiting (the jobs go on); `darts study status {}` follows them",
                    dir.display()
                );
                return Ok(130);
            }
            eprintln!(
                "every job has ended ({:.0} s)",
                start.elapsed().as_secs_f64()
            );
            let failed = plan
                .runs
                .iter()
                .any(|r| state::state(&plan, r) != state::RunState::Done);
            finish(&plan, failed)
        }
    }
}

/// Writes the report after an execution; status 1 when some run did not finish.
fn finish(plan: &study::plan::Plan, some_failed: bool) -> Result<u8, Failure> {
    write_report(plan)?;
    if some_failed {
        eprintln!("some runs did not finish (see `darts study status {}`); the report covers the complete ones", plan.dir.display());
        return Ok(1);
    }
    Ok(0)
}

fn write_report(plan: &study::plan::Plan) -> Result<(), Failure> {
    let r = report::compute(plan)?;
    report::write(plan, &r, &report::cost(plan))?;
    for a in &r.arms {
        if let Some(t) = &a.test_accuracy {
            let ci = t.ci95.map_or(String::new(), |(lo, hi)| {
                format!(", 95% CI [{lo:.4}, {hi:.4}]")
            });
            println!(
                "{:<24} test accuracy {:.4}{} over {} cells",
                a.name, t.mean, ci, t.n
            );
        }
    }
    for c in &r.comparisons {
        println!("{}", c.verdict);
    }
    if !r.incomplete.is_empty() {
        println!(
            "{} runs not complete, left out (listed in report.html)",
            r.incomplete.len()
        );
    }
    println!("{}", plan.dir.join("report.html").display());
    Ok(())
}

fn status(dir: &Path) -> Result<u8, Failure> {
    let plan = study::open(dir)?;
    let queued = if slurm::submissions(&plan).is_empty() {
        Default::default()
    } else {
        slurm::queued(&plan).unwrap_or_else(|e| {
            eprintln!("note: {e}");
            Default::default()
        })
    };
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for run in &plan.runs {
        let st = state::state(&plan, run);
        let label = match (&st, queued.get(&run.id)) {
            (state::RunState::Done | state::RunState::Running, _) => st.label().to_string(),
            (_, Some(q)) => format!("queued ({})", q.to_lowercase()),
            _ => st.label().to_string(),
        };
        match &st {
            state::RunState::Failed(why) => println!("{label:<20} {}  {why}", run.id),
            _ => println!("{label:<20} {}", run.id),
        }
        *counts
            .entry(label.split(' ').next().unwrap_or("").to_string())
            .or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!("{} runs: {}", plan.runs.len(), summary.join(", "));
    Ok(0)
}

fn task(dir: &Path, list: &Path, index: usize, threads: usize) -> Result<u8, Failure> {
    let plan = study::open(dir)?;
    let run = slurm::task_run(&plan, list, index)?;
    let cancel = cancel_flag()?;
    eprintln!("{}: {}", run.id, state::state(&plan, run).label());
    let ended = study::exec::execute(
        &plan,
        run,
        &darts_exe()?,
        threads,
        &Default::default(),
        &cancel,
    )?;
    eprintln!("{}: {ended:?}", run.id);
    Ok(match ended {
        study::exec::Ended::Done => 0,
        study::exec::Ended::Interrupted => 130,
        study::exec::Ended::Failed(_) => 1,
    })
}
