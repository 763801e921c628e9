//! Running one run to its end: its remaining `darts` commands in sequence, output appended to its
//! log, a failure written down beside it. The local executor calls this from its job threads; a
//! Slurm array task calls it through `darts study task`.
use crate::plan::{Plan, Run};
use crate::state::{clear_partial, remaining, state, RunState};
use crate::{Result, StudyError};
use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// How an execution ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    Done,
    /// Stopped by Ctrl-C / SIGTERM (exit status 130): its checkpoint continues it next time.
    Interrupted,
    Failed(String),
}

/// The pids of the `darts` processes running now, so a cancel can be forwarded to them.
#[derive(Default)]
pub struct Children(Mutex<Vec<u32>>);

impl Children {
    fn add(&self, pid: u32) {
        self.0.lock().expect("children").push(pid);
    }
    fn remove(&self, pid: u32) {
        self.0.lock().expect("children").retain(|&p| p != pid);
    }
    /// Sends SIGINT to every running child (each saves its checkpoint and exits with 130).
    pub fn interrupt_all(&self) {
        for &pid in self.0.lock().expect("children").iter() {
            // SAFETY: kill(2) with a pid this process spawned and has not yet reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGINT);
            }
        }
    }
}

/// Makes the child get SIGINT when the thread that started it dies (Linux `PR_SET_PDEATHSIG`):
/// a study killed with `kill -9` does not leave its runs going on unowned; each saves its
/// checkpoint and stops, and the next `darts study` resumes it.
fn interrupt_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT);
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Runs what is left of `run` with `darts` (the binary) at `threads` threads per process.
pub fn execute(
    plan: &Plan,
    run: &Run,
    darts: &Path,
    threads: usize,
    children: &Children,
    cancel: &AtomicBool,
) -> Result<Ended> {
    if let Some(dep) = plan.dependency(run) {
        if state(plan, dep) != RunState::Done {
            return Ok(Ended::Failed(format!(
                "its search {} has not finished",
                dep.id
            )));
        }
    }
    let logs = plan.dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(StudyError::io(&logs))?;
    let failed = plan.failed_path(run);
    if failed.exists() {
        std::fs::remove_file(&failed).map_err(StudyError::io(&failed))?;
    }
    clear_partial(run).map_err(StudyError::io(&run.dir))?;
    let log_path = plan.log_path(run);
    for args in remaining(plan, run) {
        if cancel.load(Ordering::SeqCst) {
            return Ok(Ended::Interrupted);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(StudyError::io(&log_path))?;
        let err = log.try_clone().map_err(StudyError::io(&log_path))?;
        let mut cmd = Command::new(darts);
        interrupt_with_parent(&mut cmd);
        let mut child = cmd
            .args(&args)
            .arg("--threads")
            .arg(threads.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| StudyError::new(format!("cannot start {}: {e}", darts.display())))?;
        children.add(child.id());
        let status = child.wait();
        children.remove(child.id());
        let status = status.map_err(|e| StudyError::new(format!("waiting for {}: {e}", run.id)))?;
        match status.code() {
            Some(0) => {}
            Some(130) => return Ok(Ended::Interrupted),
            code => {
                let why = format!(
                    "`darts {}` exited with {} (log: {})",
                    args[0],
                    code.map_or("a signal".to_string(), |c| format!("status {c}")),
                    log_path.display()
                );
                std::fs::write(&failed, &why).map_err(StudyError::io(&failed))?;
                return Ok(Ended::Failed(why));
            }
        }
    }
    Ok(Ended::Done)
}
