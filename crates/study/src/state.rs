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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(dir: &Path) -> Plan {
        Plan::new(crate::spec::smallest(), dir)
    }

    fn summary(dir: &Path, status: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("summary.json"),
            format!("{{\"status\": \"{status}\"}}"),
        )
        .unwrap();
    }

    /// A run's life, read from its directory alone: pending, a partial start (cleared), a
    /// checkpoint (or only the previous one), trained but not evaluated, done, failed, running;
    /// and what is left to run at each point.
    #[test]
    fn states_and_what_remains_follow_the_directory() {
        let root = std::env::temp_dir().join(format!("darts-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let p = plan(&root);
        let (search, train) = (
            p.run("search/maxw/seed-1").unwrap(),
            p.run("train/maxw/seed-1").unwrap(),
        );
        let (fresh, resume, eval) = (
            p.fresh_args(train),
            p.resume_args(train),
            p.eval_args(train),
        );
        assert_eq!(resume[..2], ["train".to_string(), "--resume".to_string()]);
        assert_eq!(p.resume_args(search)[0], "search");

        assert_eq!(state(&p, train), RunState::Pending);
        assert_eq!(remaining(&p, train), vec![fresh.clone(), eval.clone()]);
        assert_eq!(remaining(&p, search), vec![p.fresh_args(search)]);

        // Killed before its first checkpoint: nothing to keep, cleared for a fresh start.
        std::fs::create_dir_all(&train.dir).unwrap();
        std::fs::write(train.dir.join("events.jsonl"), "{}\n").unwrap();
        clear_partial(train).unwrap();
        assert!(!train.dir.exists());
        clear_partial(train).unwrap(); // no directory: nothing to do

        // A checkpoint, or only the previous one kept beside it: resumed, and kept.
        let ckpt = train.dir.join("checkpoint.safetensors");
        for path in [ckpt.clone(), darts::checkpoint::previous(&ckpt)] {
            std::fs::create_dir_all(&train.dir).unwrap();
            std::fs::write(&path, b"").unwrap();
            assert_eq!(state(&p, train), RunState::Interrupted);
            assert_eq!(remaining(&p, train), vec![resume.clone(), eval.clone()]);
            clear_partial(train).unwrap();
            assert!(path.exists());
            std::fs::remove_file(&path).unwrap();
        }

        // Trained, not evaluated: only the evaluation is left.
        summary(&train.dir, "finished");
        assert_eq!(state(&p, train), RunState::Interrupted);
        assert_eq!(remaining(&p, train), vec![eval.clone()]);
        clear_partial(train).unwrap();
        assert!(train.dir.join("summary.json").exists());

        // A failure marker wins over everything but done.
        std::fs::create_dir_all(root.join("logs")).unwrap();
        std::fs::write(p.failed_path(train), "exit status 1\n").unwrap();
        assert_eq!(state(&p, train), RunState::Failed("exit status 1".into()));
        std::fs::write(train.dir.join("eval.json"), "{}").unwrap();
        assert_eq!(state(&p, train), RunState::Done);
        assert!(remaining(&p, train).is_empty());
        assert_eq!(
            p.log_path(train),
            root.join("logs").join("train.maxw.seed-1.log")
        );

        // A search is done when it finished (nothing to evaluate); unfinished, it is pending.
        summary(&search.dir, "running");
        assert_eq!(state(&p, search), RunState::Pending);
        summary(&search.dir, "finished");
        assert_eq!(state(&p, search), RunState::Done);
        assert!(remaining(&p, search).is_empty());

        // A live process holds the lock: running, whatever else is there.
        let lock = darts::lock::DirLock::acquire(&search.dir).unwrap();
        assert_eq!(state(&p, search), RunState::Running);
        drop(lock);
        assert_eq!(state(&p, search), RunState::Done);

        let labels = [
            RunState::Done,
            RunState::Running,
            RunState::Interrupted,
            RunState::Failed(String::new()),
            RunState::Pending,
        ]
        .map(|s| s.label());
        assert_eq!(
            labels,
            ["done", "running", "interrupted", "failed", "pending"]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
