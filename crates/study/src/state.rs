//! Where each run stands, read from its directory (the only truth: the executors keep no other
//! state), and what is left to do for it.
use crate::plan::{Plan, Run, Stage};
use serde_json::Value;
use std::path::Path;

/// A run's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Finished (a train run: trained and evaluated).
    Done,
    /// A live process holds the run directory's lock.
    Running,
    /// Stopped with a checkpoint: the next execution resumes it.
    Interrupted,
    /// The last attempt failed; the text is its exit status and where its log is.
    Failed(String),
    /// Not started (or started but killed before its first checkpoint).
    Pending,
}

impl RunState {
    pub fn label(&self) -> &'static str {
        match self {
            RunState::Done => "done",
            RunState::Running => "running",
            RunState::Interrupted => "interrupted",
            RunState::Failed(_) => "failed",
            RunState::Pending => "pending",
        }
    }
}

/// `DIR/summary.json`, if present and parseable.
pub fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether the run saved a checkpoint (the latest, or the previous one kept beside it).
fn has_checkpoint(dir: &Path) -> bool {
    let ckpt = dir.join("checkpoint.safetensors");
    ckpt.exists() || darts::checkpoint::previous(&ckpt).exists()
}

fn finished(dir: &Path) -> bool {
    read_json(&dir.join("summary.json")).is_some_and(|s| s["status"] == "finished")
}

/// The state of `run`.
pub fn state(plan: &Plan, run: &Run) -> RunState {
    if darts::lock::is_locked(&run.dir) {
        return RunState::Running;
    }
    let evaluated = run.stage == Stage::Search || run.dir.join("eval.json").exists();
    if finished(&run.dir) && evaluated {
        return RunState::Done;
    }
    if let Ok(why) = std::fs::read_to_string(plan.failed_path(run)) {
        return RunState::Failed(why.trim().to_string());
    }
    if has_checkpoint(&run.dir) || finished(&run.dir) {
        return RunState::Interrupted;
    }
    RunState::Pending
}

/// What is left to run for `run`, as `darts` argument lists (without `--threads`): nothing when it
/// is done; resume + eval, or eval alone, for an interrupted train run; the fresh command otherwise.
/// A directory with no checkpoint holds no progress (a run killed before its first epoch end):
/// `clear_partial` empties it so the fresh command may start there.
pub fn remaining(plan: &Plan, run: &Run) -> Vec<Vec<String>> {
    let dir = &run.dir;
    let mut todo = Vec::new();
    if !finished(dir) {
        if has_checkpoint(dir) {
            todo.push(plan.resume_args(run));
        } else {
            todo.push(plan.fresh_args(run));
        }
    }
    if run.stage == Stage::Train && !dir.join("eval.json").exists() {
        todo.push(plan.eval_args(run));
    }
    todo
}

/// Removes a run directory that holds no checkpoint and no finished summary (nothing to lose), so
/// a fresh start is not refused for overwriting a run.
pub fn clear_partial(run: &Run) -> std::io::Result<()> {
    let dir = &run.dir;
    if dir.exists() && !has_checkpoint(dir) && !finished(dir) {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}
