//! `darts`: the command line over the `darts` library. Every error is printed as one line naming
//! what was wrong and where, and ends the process with a non-zero status; nothing panics on bad input.
mod bench;
#[cfg(test)]
mod fuzz;
mod grad;
mod memory;
mod replay;
mod report;
mod run_dir;
mod search;
mod study;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "darts",
    version,
    about = "DARTS / sharpDARTS Max-W differentiable architecture search on the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Search a cell on a dataset (the built-in synthetic one by default).
    Search(search::SearchArgs),
    /// Gradients of every parameter of a supernet checkpoint on one batch.
    Grad(grad::GradArgs),
    /// The search loop's step, exactly, on given batches (to check it against PyTorch or watch it).
    Replay(replay::ReplayArgs),
    /// Train the evaluation network of a genotype from scratch.
    Train(train::TrainArgs),
    /// Accuracy, per-class accuracy and confusion matrix of a trained model on the test split.
    Eval(train::EvalArgs),
    /// One self-contained HTML page per run directory.
    Report(report::ReportArgs),
    /// Does Max-W find better cells? Arms x seeds searched, trained and compared, locally or on Slurm.
    Study(study::StudyArgs),
    /// Time one search step (architecture + weight update) and report peak memory.
    Bench(bench::BenchArgs),
}

/// A CLI error: the message, and the exit status.
pub struct Failure(pub String, pub u8);

impl From<darts::DartsError> for Failure {
    fn from(e: darts::DartsError) -> Self {
        Failure(e.to_string(), 1)
    }
}

impl From<tensor::Error> for Failure {
    fn from(e: tensor::Error) -> Self {
        Failure(e.to_string(), 1)
    }
}

/// Builds the worker pool (0 threads = one per core). Commands run *inside* it (`install`), so the
/// kernels' parallel loops start from a worker thread instead of handing every call over from the
/// main thread and sleeping until it returns (a futex round trip per kernel call).
fn pool(threads: usize) -> Result<rayon::ThreadPool, Failure> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Far more threads than cores only adds hand-offs (1000 threads ran 1500x slower): cap it.
    let threads = if threads > 4 * cores {
        eprintln!("warning: --threads {threads} is more than 4x this machine's {cores} cores; using {cores} (results do not depend on it)");
        cores
    } else {
        threads
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Failure(format!("--threads {threads}: {e}"), 2))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Search(a) => a.threads,
        Command::Grad(a) => a.threads,
        Command::Replay(a) => a.threads,
        Command::Train(a) => a.threads,
        Command::Eval(a) => a.threads,
        Command::Bench(a) => a.threads,
        // The study only waits for its child processes.
        Command::Report(_) | Command::Study(_) => 1,
    };
    let result = pool(threads).and_then(|p| {
        p.install(|| match cli.command {
            Command::Search(a) => search::run(a),
            Command::Grad(a) => grad::run(a),
            Command::Replay(a) => replay::run(a),
            Command::Train(a) => train::run(a),
            Command::Eval(a) => train::eval(a),
            Command::Report(a) => report::run(a),
            Command::Bench(a) => bench::run(a),
            Command::Study(a) => study::run(a),
        })
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure(msg, code)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}
