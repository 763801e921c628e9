//! What `search` and `train` share about a run directory: refusing to overwrite a run,
//! `run.json` (where the data came from, so `--resume` reloads the same data), the Ctrl-C / SIGTERM
//! flag, the progress bar and the step log.
use crate::Failure;
use darts::checkpoint::write_atomic;
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::File;
use std::io::IsTerminal;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Where a run's data came from, and the command that started it (`run.json`).
#[derive(serde::Serialize, serde::Deserialize, Clone)]
pub(crate) struct RunInfo {
    pub data: String,
    pub subset: Option<usize>,
    pub command: Vec<String>,
    /// `Dataset::fingerprint` of the data the run started on (absent in runs of older versions).
    #[serde(default)]
    pub data_fingerprint: Option<String>,
}

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Failure + '_ {
    move |e| Failure(format!("{}: {e}", path.display()), 1)
}

impl RunInfo {
    /// A new run's info: `--data` (default synthetic), `--subset`, and this process's command line.
    pub fn new(data: Option<String>, subset: Option<usize>) -> RunInfo {
        RunInfo {
            data: data.unwrap_or_else(|| "synthetic".into()),
            subset,
            command: std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            data_fingerprint: None,
        }
    }

    /// Refuses to resume on data that differs from what the run started on, unless `accept`.
    pub fn check_data(&self, fingerprint: &str, accept: bool) -> Result<(), Failure> {
        match &self.data_fingerprint {
            Some(f) if f != fingerprint && !accept => Err(Failure(
                format!(
                    "the data {} is not what this run started on (fingerprint {fingerprint}, recorded {f}); resuming would mix two datasets. Restore the data, or pass --accept-changed-data to resume anyway",
                    self.data
                ),
                2,
            )),
            _ => Ok(()),
        }
    }

    pub fn read(dir: &Path) -> Result<RunInfo, Failure> {
        let path = dir.join("run.json");
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        serde_json::from_str(&text).map_err(|e| Failure(format!("{}: {e}", path.display()), 1))
    }

    /// Creates `out` and writes `out/run.json`.
    pub fn write(&self, out: &Path) -> Result<(), Failure> {
        std::fs::create_dir_all(out).map_err(io_err(out))?;
        let text = serde_json::to_string_pretty(self).expect("run info serialises");
        Ok(write_atomic(&out.join("run.json"), text.as_bytes())?)
    }
}

/// `value` with every number that came from an f32 printed as the f32 it is (`0.999`, not
/// `0.9990000128746033`): a value equal to an f32 is replaced by the shortest decimal that reads
/// back as that f32. Every JSON file and JSON output of the CLI goes through it, so they agree.
pub(crate) fn tidy_json(mut value: serde_json::Value) -> serde_json::Value {
    fn tidy(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => {
                let x = n.as_f64().expect("f64");
                let f = x as f32;
                if f as f64 == x && f.is_finite() {
                    if let Some(m) = format!("{f}")
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                    {
                        *n = m;
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(tidy),
            serde_json::Value::Object(o) => o.values_mut().for_each(tidy),
            _ => {}
        }
    }
    tidy(&mut value);
    value
}

/// Writes [`tidy_json`]`(value)`, pretty, to `path` (atomically).
pub(crate) fn write_json(path: &Path, value: serde_json::Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(&tidy_json(value)).expect("json");
    Ok(write_atomic(path, text.as_bytes())?)
}

/// Refuses to start a new run in a directory that already holds one (its configuration would be
/// overwritten); such a directory is continued with `--resume`.
pub(crate) fn refuse_existing_run(dir: &Path, command: &str) -> Result<(), Failure> {
    let held = ["run.json", "checkpoint.safetensors", "summary.json"]
        .iter()
        .find(|f| dir.join(f).exists());
    match held {
        Some(f) => Err(Failure(
            format!(
                "{} already holds a run ({f}); continue it with `darts {command} --resume {}` or choose another --out",
                dir.display(),
                dir.display()
            ),
            2,
        )),
        None => Ok(()),
    }
}

/// A long-running command's plumbing.
pub(crate) struct Session {
    /// Raised by Ctrl-C or SIGTERM, or by a failed write; the run stops after the current step.
    pub cancel: Arc<AtomicBool>,
    pub bar: ProgressBar,
    /// `out/log.jsonl`, opened for appending (a resumed run continues it).
    log: File,
    log_path: PathBuf,
    /// The first write that failed (log, checkpoint, result files), if any.
    pub failed_write: Option<String>,
}

impl Session {
    /// Installs the Ctrl-C / SIGTERM handler, opens the log and shows a bar of `total` steps at `position`.
    pub fn start(out: &Path, total: u64, position: u64) -> Result<Session, Failure> {
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::SeqCst))
            .map_err(|e| Failure(format!("cannot install the Ctrl-C handler: {e}"), 1))?;
        let log_path = out.join("log.jsonl");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err(&log_path))?;
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise} ETA {eta}] {bar:30} {pos}/{len} {msg}",
            )
            .expect("template"),
        );
        bar.set_position(position);
        Ok(Session {
            cancel,
            bar,
            log,
            log_path,
            failed_write: None,
        })
    }

    /// Appends one step's record to `log.jsonl`.
    pub fn log_step<T: serde::Serialize>(&mut self, record: &T) {
        let line = serde_json::to_string(record).expect("records serialise");
        let written = writeln!(self.log, "{line}").map_err(io_err(&self.log_path));
        self.check(written);
    }

    /// Keeps the first failed write and raises the cancel flag: the run stops after this step
    /// instead of going on without its log or checkpoint.
    pub fn check(&mut self, written: Result<(), Failure>) {
        if let Err(Failure(msg, _)) = written {
            self.failed_write.get_or_insert(msg);
            self.cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// Prints a line above the progress bar, or plainly when stderr is not a terminal (the bar is
/// hidden there and would swallow it).
pub(crate) fn print_line(bar: &ProgressBar, line: String) {
    if std::io::stderr().is_terminal() {
        bar.println(line)
    } else {
        eprintln!("{line}")
    }
}
