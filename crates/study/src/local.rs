//! The local executor: up to `jobs` `darts` processes at a time on this machine, a train run
//! started as soon as its search is done. Ctrl-C (or SIGTERM) is forwarded to the running
//! processes, which save their checkpoints; nothing new starts and the executor returns.
use crate::exec::{execute, Children, Ended};
use crate::plan::{Plan, Run};
use crate::state::{state, RunState};
use crate::Result;
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// What a local execution did.
#[derive(Debug, Default)]
pub struct LocalOutcome {
    pub done: Vec<String>,
    pub skipped_done: usize,
    pub failed: Vec<(String, String)>,
    /// Runs not started because a run they wait for failed.
    pub blocked: Vec<String>,
    pub interrupted: bool,
}

/// Runs every unfinished run of `plan`, `jobs` at a time, each with `threads` threads.
/// `progress` hears each run as it starts and ends.
pub fn run_local(
    plan: &Plan,
    darts: &Path,
    jobs: usize,
    threads: usize,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&str),
) -> Result<LocalOutcome> {
    let mut out = LocalOutcome::default();
    let mut todo: Vec<&Run> = Vec::new();
    for run in &plan.runs {
        match state(plan, run) {
            RunState::Done => out.skipped_done += 1,
            RunState::Running => progress(&format!(
                "{}: running in another process, left alone",
                run.id
            )),
            _ => todo.push(run),
        }
    }
    let children = Children::default();
    let (tx, rx) = mpsc::channel::<(String, Result<Ended>)>();
    let mut running: HashSet<String> = HashSet::new();
    std::thread::scope(|scope| -> Result<()> {
        loop {
            let cancelled = cancel.load(Ordering::SeqCst);
            if cancelled {
                // Every poll, so a child started just as the cancel came is reached too (a
                // second SIGINT only raises a run's flag again).
                children.interrupt_all();
            }
            // Start what is ready, in plan order (searches first: they unlock trainings).
            let mut i = 0;
            while !cancelled && running.len() < jobs.max(1) && i < todo.len() {
                let run = todo[i];
                let dep = plan.dependency(run).map(|d| (d, state(plan, d)));
                match dep {
                    Some((_, RunState::Done)) | None => {}
                    Some((d, RunState::Failed(_))) => {
                        out.blocked
                            .push(format!("{} (its search {} failed)", run.id, d.id));
                        todo.remove(i);
                        continue;
                    }
                    Some((d, _))
                        if todo.iter().any(|r| r.id == d.id) || running.contains(&d.id) =>
                    {
                        i += 1; // waits for its search
                        continue;
                    }
                    Some((d, _)) => {
                        out.blocked
                            .push(format!("{} (its search {} is not done)", run.id, d.id));
                        todo.remove(i);
                        continue;
                    }
                }
                todo.remove(i);
                running.insert(run.id.clone());
                progress(&format!("start {}", run.id));
                let tx = tx.clone();
                let children = &children;
                scope.spawn(move || {
                    let ended = execute(plan, run, darts, threads, children, cancel);
                    let _ = tx.send((run.id.clone(), ended));
                });
            }
            if running.is_empty() {
                break;
            }
            if let Ok((id, ended)) = rx.recv_timeout(Duration::from_millis(100)) {
                running.remove(&id);
                match ended? {
                    Ended::Done => {
                        progress(&format!("done  {id}"));
                        out.done.push(id);
                    }
                    Ended::Interrupted => out.interrupted = true,
                    Ended::Failed(why) => {
                        progress(&format!("FAILED {id}: {why}"));
                        out.failed.push((id, why));
                    }
                }
            }
        }
        Ok(())
    })?;
    out.interrupted |= cancel.load(Ordering::SeqCst);
    Ok(out)
}
