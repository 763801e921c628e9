//! The Slurm executor: one job array per stage. Searches form one array; the trainings of their
//! cells a second one whose task k waits for search task k (`--dependency=aftercorr`, and
//! `--kill-on-invalid-dep=yes` so the training of a failed search is cancelled, not left pending);
//! baselines and trainings whose search is already done a third with no dependency. Each array task
//! runs `darts study task DIR --list FILE --index $SLURM_ARRAY_TASK_ID`, which skips, resumes or
//! starts its run exactly as the local executor does (so a requeued task continues).
//!
//! No accounting database is needed: while jobs live, `squeue` says where they are; results are
//! read from the run directories.
use crate::plan::{path_arg, shell_quote, Plan, Run, Stage};
use crate::state::{state, RunState};
use crate::{Result, StudyError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One submitted job array and the runs of its tasks, in task order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayJob {
    pub job_id: String,
    pub name: String,
    pub runs: Vec<String>,
}

fn slurm_dir(plan: &Plan) -> PathBuf {
    plan.dir.join("slurm")
}

fn missing_slurm(tool: &str) -> StudyError {
    StudyError::new(format!(
        "`{tool}` is not on PATH: --executor slurm needs a Slurm cluster's client commands (for a one-node cluster on this machine run `sudo scripts/slurm-local.sh start`; see the README's \"Does Max-W help?\" section), or use `darts study plan` with another scheduler"
    ))
}

fn run_tool(tool: &str, args: &[String]) -> Result<std::process::Output> {
    Command::new(tool).args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            missing_slurm(tool)
        } else {
            StudyError::new(format!("cannot run {tool}: {e}"))
        }
    })
}

/// The array jobs of every earlier submission of this study.
pub fn submissions(plan: &Plan) -> Vec<ArrayJob> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(slurm_dir(plan))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| serde_json::from_str::<Vec<ArrayJob>>(&t).ok())
        .flatten()
        .collect()
}

/// The live tasks of `job_id` as (array index, Slurm state); empty once the job has left the queue.
fn live_tasks(job_id: &str) -> Result<Vec<(usize, String)>> {
    let out = run_tool(
        "squeue",
        &[
            "-h".into(),
            "-r".into(),
            "-j".into(),
            job_id.into(),
            "-o".into(),
            "%i %T".into(),
        ],
    )?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("Invalid job id") {
            return Ok(Vec::new()); // already purged from the controller: ended
        }
        return Err(StudyError::new(format!(
            "squeue -j {job_id}: {}",
            err.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (id, st) = l.trim().split_once(' ')?;
            let idx = id.split_once('_')?.1.parse().ok()?;
            Some((idx, st.to_string()))
        })
        .collect())
}

/// Each queued or running run of an earlier submission, with its Slurm state.
pub fn queued(plan: &Plan) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for job in submissions(plan) {
        for (idx, st) in live_tasks(&job.job_id)? {
            if let Some(run) = job.runs.get(idx) {
                m.insert(run.clone(), st);
            }
        }
    }
    Ok(m)
}

/// Submits every unfinished run. `darts` is the binary the tasks run (an absolute path every node
/// can reach); `extra` goes to every sbatch as given (`--slurm-args`).
pub fn submit(
    plan: &Plan,
    darts: &Path,
    threads: usize,
    extra: &[String],
) -> Result<Vec<ArrayJob>> {
    let queued = queued(plan)?;
    if !queued.is_empty() {
        return Err(StudyError::usage(format!(
            "{} runs of an earlier submission are still queued or running ({}, ...); wait for them (`darts study status {}`) or scancel them first",
            queued.len(),
            queued.keys().next().expect("non-empty"),
            plan.dir.display()
        )));
    }
    let open = |r: &Run| !matches!(state(plan, r), RunState::Done | RunState::Running);
    let searches: Vec<&Run> = plan
        .runs
        .iter()
        .filter(|r| r.stage == Stage::Search && open(r))
        .collect();
    let after_search: Vec<&Run> = searches
        .iter()
        .map(|s| {
            plan.runs
                .iter()
                .find(|t| plan.dependency(t).is_some_and(|d| d.id == s.id))
                .expect("every search is followed by a training")
        })
        .collect();
    let free: Vec<&Run> = plan
        .runs
        .iter()
        .filter(|r| r.stage == Stage::Train && open(r))
        .filter(|r| {
            plan.dependency(r)
                .is_none_or(|d| state(plan, d) == RunState::Done)
        })
        .collect();
    let dir = slurm_dir(plan);
    std::fs::create_dir_all(&dir).map_err(StudyError::io(&dir))?;
    std::fs::create_dir_all(plan.dir.join("logs")).map_err(StudyError::io(&plan.dir))?;
    let n = submissions_count(&dir);
    let mut jobs: Vec<ArrayJob> = Vec::new();
    let mut search_job: Option<String> = None;
    for (name, runs) in [
        ("search", &searches),
        ("train", &after_search),
        ("baseline", &free),
    ] {
        if runs.is_empty() {
            continue;
        }
        let list = dir.join(format!("submission-{n:03}-{name}.txt"));
        let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
        darts::checkpoint::write_atomic(&list, (ids.join("\n") + "\n").as_bytes())?;
        let task = format!(
            "{} study task {} --list {} --index $SLURM_ARRAY_TASK_ID --threads {threads}",
            shell_quote(&path_arg(darts)),
            shell_quote(&path_arg(&plan.dir)),
            shell_quote(&path_arg(&list))
        );
        let mut args: Vec<String> = vec![
            "--parsable".into(),
            format!("--array=0-{}", runs.len() - 1),
            format!("--job-name=darts-{name}"),
            format!(
                "--output={}",
                path_arg(&plan.dir.join("logs").join("slurm-%A_%a.out"))
            ),
            format!("--cpus-per-task={threads}"),
        ];
        if let Ok(cwd) = std::env::current_dir() {
            args.push(format!("--chdir={}", path_arg(&cwd)));
        }
        if name == "train" {
            let id = search_job.as_ref().expect("searches were submitted first");
            args.push(format!("--dependency=aftercorr:{id}"));
            args.push("--kill-on-invalid-dep=yes".into());
        }
        args.extend(extra.iter().cloned());
        args.push("--wrap".into());
        args.push(task);
        let out = run_tool("sbatch", &args)?;
        if !out.status.success() {
            return Err(StudyError::new(format!(
                "sbatch ({name} array) failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let job_id = stdout.trim().split(';').next().unwrap_or("").to_string();
        if job_id.is_empty() || !job_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(StudyError::new(format!(
                "sbatch printed no job id: {stdout:?}"
            )));
        }
        if name == "search" {
            search_job = Some(job_id.clone());
        }
        jobs.push(ArrayJob {
            job_id,
            name: name.into(),
            runs: ids,
        });
        // Recorded after each array, so a failure part-way leaves the submitted ones known.
        let record = dir.join(format!("submission-{n:03}.json"));
        darts::checkpoint::write_atomic(
            &record,
            serde_json::to_string_pretty(&jobs)
                .expect("json")
                .as_bytes(),
        )?;
    }
    Ok(jobs)
}

fn submissions_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}

/// Blocks until every task of `jobs` has left the queue (as `sbatch --wait` does), polling squeue.
pub fn wait(jobs: &[ArrayJob], cancel: &std::sync::atomic::AtomicBool) -> Result<bool> {
    loop {
        let mut live = 0;
        for j in jobs {
            live += live_tasks(&j.job_id)?.len();
        }
        if live == 0 {
            return Ok(true);
        }
        if cancel.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The run of task `index` in a submitted list file.
pub fn task_run<'p>(plan: &'p Plan, list: &Path, index: usize) -> Result<&'p Run> {
    let text = std::fs::read_to_string(list).map_err(StudyError::io(list))?;
    let id = text.lines().nth(index).ok_or_else(|| {
        StudyError::usage(format!(
            "{}: no task {index} (it lists {} runs)",
            list.display(),
            text.lines().count()
        ))
    })?;
    plan.run(id).ok_or_else(|| {
        StudyError::new(format!(
            "{}: run '{id}' is not in the study",
            list.display()
        ))
    })
}
