//! Studies over arms and seeds: does Max-W find better cells than DARTS on this data?
//!
//! A study is a grid ([`spec::StudySpec`]): search arms (weighting x gradient transform x order)
//! and baseline cells, each over the same seeds, every found cell trained from scratch with the
//! same settings and evaluated on the test split. [`plan::Plan`] turns it into plain `darts search`
//! / `darts train` runs, one directory each; executors run them ([`local`]: processes on this
//! machine; [`slurm`]: job arrays with per-task dependencies; or any scheduler through the printed
//! plan); [`report`] reads the run directories back and answers with [`stats`].
//!
//! The run directories are the only state: a re-run skips what is done and resumes what was
//! interrupted, whichever executor ran it before.
pub mod exec;
pub mod local;
pub mod plan;
pub mod report;
mod report_html;
pub mod slurm;
pub mod spec;
pub mod state;
pub mod stats;

use plan::{CellSource, Plan};
use spec::StudySpec;
use std::path::{Path, PathBuf};

/// A study error: the message (naming the file, flag or run concerned), and whether it is the
/// user's invocation that was wrong (the CLI exits 2 then, 1 otherwise).
#[derive(Debug)]
pub struct StudyError {
    pub message: String,
    pub usage: bool,
}

pub type Result<T> = std::result::Result<T, StudyError>;

impl StudyError {
    pub fn new(message: String) -> StudyError {
        StudyError {
            message,
            usage: false,
        }
    }
    pub fn usage(message: String) -> StudyError {
        StudyError {
            message,
            usage: true,
        }
    }
    /// Wraps an io::Error with the path it concerns.
    pub fn io(path: &Path) -> impl Fn(std::io::Error) -> StudyError + '_ {
        move |e| StudyError::new(format!("{}: {e}", path.display()))
    }
}

impl std::fmt::Display for StudyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StudyError {}

impl From<darts::DartsError> for StudyError {
    fn from(e: darts::DartsError) -> Self {
        StudyError::new(e.to_string())
    }
}

/// The spec file inside a study directory.
pub const SPEC_FILE: &str = "spec.json";

/// Creates (or re-opens) the study in `dir` for `spec`: writes `spec.json` and the random baseline
/// cells on first use; refuses a directory that holds a different study.
pub fn prepare(dir: &Path, spec: StudySpec) -> Result<Plan> {
    spec.validate()?;
    let path = dir.join(SPEC_FILE);
    if path.exists() {
        let old = load_spec(dir)?;
        if old != spec {
            return Err(StudyError::usage(format!(
                "{} holds a different study (its {SPEC_FILE} differs from these flags); re-run it with the flags it was started with, or choose another --out",
                dir.display()
            )));
        }
    } else {
        std::fs::create_dir_all(dir).map_err(StudyError::io(dir))?;
        let text = serde_json::to_string_pretty(&spec).expect("spec serialises");
        darts::checkpoint::write_atomic(&path, text.as_bytes())?;
    }
    let plan = Plan::new(spec, dir);
    for run in &plan.runs {
        if let Some(CellSource::Random(j)) = run.cell {
            let p = plan.random_cell_path(j);
            if !p.exists() {
                std::fs::create_dir_all(p.parent().expect("in baselines/"))
                    .map_err(StudyError::io(&p))?;
                darts::checkpoint::write_atomic(
                    &p,
                    darts::Genotype::random(j as u64).to_json().as_bytes(),
                )?;
            }
        }
    }
    Ok(plan)
}

/// The spec of the study in `dir`.
pub fn load_spec(dir: &Path) -> Result<StudySpec> {
    let path = dir.join(SPEC_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        StudyError::new(format!("{}: {e} (not a study directory?)", path.display()))
    })?;
    serde_json::from_str(&text).map_err(|e| StudyError::new(format!("{}: {e}", path.display())))
}

/// The plan of the study in `dir`.
pub fn open(dir: &Path) -> Result<Plan> {
    Ok(Plan::new(load_spec(dir)?, dir))
}

/// The study directory's lock (one `darts study` that runs or submits at a time).
pub fn lock(dir: &Path) -> Result<darts::lock::DirLock> {
    darts::lock::DirLock::acquire(dir).map_err(|e| match e {
        darts::DartsError::Locked { dir, pid } => StudyError::usage(format!(
            "another `darts study` is working in {}{}; wait for it to end",
            dir.display(),
            pid.map_or(String::new(), |p| format!(" (pid {p})"))
        )),
        e => e.into(),
    })
}

/// An absolute form of `p` (for job scripts that run elsewhere in the file tree).
pub fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(StudyError::io(p))
}
