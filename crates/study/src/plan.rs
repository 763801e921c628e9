//! The grid as runs: every (search arm, seed) is a search run followed by a train run of the cell
//! it found; every (baseline cell, seed) a train run alone. Each run is a plain `darts search` or
//! `darts train` (+ `darts eval`) invocation into its own run directory under the study directory:
//!
//! ```text
//! DIR/spec.json                          the study (StudySpec)
//! DIR/search/<arm>/seed-<s>/             darts search --out
//! DIR/train/<arm>/seed-<s>/              darts train --out (then darts eval --model)
//! DIR/train/random/cell-<j>/seed-<s>/    a random baseline cell j
//! DIR/baselines/random-<j>.json          the random cells, written down
//! DIR/logs/<run>.log, <run>.failed       each run's output; a failed run's exit status
//! ```
use crate::spec::{Baseline, StudySpec};
use darts::optim::GradTransform;
use darts::{Order, Weighting};
use std::path::{Path, PathBuf};

/// Which command a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Search,
    Train,
}

/// The genotype a train run trains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CellSource {
    /// The `genotype.json` of search run `runs[i]`.
    Search(usize),
    /// Random baseline cell j, written to `DIR/baselines/random-j.json`.
    Random(usize),
    /// A built-in genotype by name.
    Named(String),
}

/// An arm: a search setting, or a baseline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arm {
    pub name: String,
    /// The search setting; `None` for a baseline.
    pub search: Option<(Weighting, GradTransform, Order)>,
}

/// One `darts` invocation of the study.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// `search/maxw/seed-1`, `train/random/cell-0/seed-2`: also its directory under the study.
    pub id: String,
    pub stage: Stage,
    pub arm: String,
    pub seed: u64,
    pub dir: PathBuf,
    /// For train runs: the cell trained.
    pub cell: Option<CellSource>,
}

/// The study directory, its spec and every run, searches first.
#[derive(Clone, Debug)]
pub struct Plan {
    pub dir: PathBuf,
    pub spec: StudySpec,
    pub arms: Vec<Arm>,
    pub runs: Vec<Run>,
}

/// The flag value darts uses for an enum (its serde name).
pub fn flag_value<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("a unit enum serialises as a string")
}

/// `maxw`, `softmax-subtract-max`, `maxw-second`: the weighting plus what differs from the default.
pub fn arm_name(w: Weighting, t: GradTransform, o: Order) -> String {
    let mut name = flag_value(&w);
    if t != GradTransform::None {
        name += &format!("-{}", flag_value(&t));
    }
    if o != Order::First {
        name += &format!("-{}", flag_value(&o));
    }
    name
}

impl Plan {
    pub fn new(spec: StudySpec, dir: &Path) -> Plan {
        let mut arms = Vec::new();
        for &w in &spec.weightings {
            for &t in &spec.grad_transforms {
                for &o in &spec.orders {
                    arms.push(Arm {
                        name: arm_name(w, t, o),
                        search: Some((w, t, o)),
                    });
                }
            }
        }
        for b in &spec.baselines {
            arms.push(Arm {
                name: match b {
                    Baseline::Random { .. } => "random".into(),
                    Baseline::Named { name } => name.clone(),
                },
                search: None,
            });
        }
        let mut runs = Vec::new();
        let mut add = |id: String, stage, arm: &str, seed, cell| {
            runs.push(Run {
                dir: dir.join(&id),
                id,
                stage,
                arm: arm.to_string(),
                seed,
                cell,
            });
            runs.len() - 1
        };
        let mut searched = Vec::new();
        for arm in arms.iter().filter(|a| a.search.is_some()) {
            for &s in &spec.seeds {
                let i = add(
                    format!("search/{}/seed-{s}", arm.name),
                    Stage::Search,
                    &arm.name,
                    s,
                    None,
                );
                searched.push((arm.name.clone(), s, i));
            }
        }
        for (arm, s, i) in searched {
            add(
                format!("train/{arm}/seed-{s}"),
                Stage::Train,
                &arm,
                s,
                Some(CellSource::Search(i)),
            );
        }
        for b in &spec.baselines {
            for &s in &spec.seeds {
                match b {
                    Baseline::Random { cells } => {
                        for j in 0..*cells {
                            add(
                                format!("train/random/cell-{j}/seed-{s}"),
                                Stage::Train,
                                "random",
                                s,
                                Some(CellSource::Random(j)),
                            );
                        }
                    }
                    Baseline::Named { name } => {
                        add(
                            format!("train/{name}/seed-{s}"),
                            Stage::Train,
                            name,
                            s,
                            Some(CellSource::Named(name.clone())),
                        );
                    }
                }
            }
        }
        Plan {
            dir: dir.to_path_buf(),
            spec,
            arms,
            runs,
        }
    }

    pub fn run(&self, id: &str) -> Option<&Run> {
        self.runs.iter().find(|r| r.id == id)
    }

    /// The run `run` waits for (a train run's search).
    pub fn dependency(&self, run: &Run) -> Option<&Run> {
        match run.cell {
            Some(CellSource::Search(i)) => Some(&self.runs[i]),
            _ => None,
        }
    }

    /// The file of random baseline cell j.
    pub fn random_cell_path(&self, j: usize) -> PathBuf {
        self.dir.join("baselines").join(format!("random-{j}.json"))
    }

    /// The `--genotype` argument of a train run.
    fn genotype_arg(&self, cell: &CellSource) -> String {
        match cell {
            CellSource::Search(i) => path_arg(&self.runs[*i].dir.join("genotype.json")),
            CellSource::Random(j) => path_arg(&self.random_cell_path(*j)),
            CellSource::Named(n) => n.clone(),
        }
    }

    /// The `darts` arguments that start `run` from scratch (without `--threads`).
    pub fn fresh_args(&self, run: &Run) -> Vec<String> {
        let spec = &self.spec;
        let (mut a, sizes) = match run.stage {
            Stage::Search => {
                let arm = self
                    .arms
                    .iter()
                    .find(|a| a.name == run.arm)
                    .expect("run of a known arm");
                let (w, t, o) = arm.search.expect("a search arm");
                let head = [
                    "search",
                    "--weighting",
                    &flag_value(&w),
                    "--grad-transform",
                    &flag_value(&t),
                    "--order",
                    &flag_value(&o),
                ];
                (head.map(String::from).to_vec(), &spec.search)
            }
            Stage::Train => {
                let cell = run.cell.as_ref().expect("a train run has a cell");
                let head = ["train", "--genotype", &self.genotype_arg(cell)];
                (head.map(String::from).to_vec(), &spec.train)
            }
        };
        let mut push = |k: &str, v: String| {
            a.push(k.to_string());
            a.push(v);
        };
        push("--data", spec.data.clone());
        if let Some(n) = spec.subset {
            push("--subset", n.to_string());
        }
        push("--channels", sizes.channels.to_string());
        push("--layers", sizes.layers.to_string());
        push("--epochs", sizes.epochs.to_string());
        push("--batch", sizes.batch.to_string());
        push("--seed", run.seed.to_string());
        push("--out", path_arg(&run.dir));
        a
    }

    /// The `darts` arguments that continue an interrupted `run` from its checkpoint.
    pub fn resume_args(&self, run: &Run) -> Vec<String> {
        let cmd = match run.stage {
            Stage::Search => "search",
            Stage::Train => "train",
        };
        vec![cmd.into(), "--resume".into(), path_arg(&run.dir)]
    }

    /// The `darts` arguments that evaluate a trained run (writes `eval.json`).
    pub fn eval_args(&self, run: &Run) -> Vec<String> {
        vec![
            "eval".into(),
            "--model".into(),
            path_arg(&run.dir),
            "--json".into(),
        ]
    }

    /// The run's log and failure marker under `DIR/logs`.
    pub fn log_path(&self, run: &Run) -> PathBuf {
        self.dir
            .join("logs")
            .join(format!("{}.log", run.id.replace('/', ".")))
    }

    pub fn failed_path(&self, run: &Run) -> PathBuf {
        self.dir
            .join("logs")
            .join(format!("{}.failed", run.id.replace('/', ".")))
    }

    /// Every run as plain shell commands with its dependency, for any other scheduler: a search
    /// line, or a train line followed by `&& darts eval ...`, then `# after: <run>` where the run
    /// waits for another. With `only`, that stage's lines alone, without comments (one command a
    /// line, for `parallel` or an indexed job).
    pub fn to_shell(&self, darts: &str, threads: usize, only: Option<Stage>) -> String {
        let mut out = String::new();
        for stage in [Stage::Search, Stage::Train] {
            let runs: Vec<&Run> = self.runs.iter().filter(|r| r.stage == stage).collect();
            if runs.is_empty() || only.is_some_and(|o| o != stage) {
                continue;
            }
            if only.is_none() {
                out += &match stage {
                    Stage::Search => format!("# stage 1: {} searches (independent)\n", runs.len()),
                    Stage::Train => format!("# stage 2: {} trainings, each then evaluated (a searched cell's after its search)\n", runs.len()),
                };
            }
            for r in runs {
                let mut line = command_line(darts, &self.fresh_args(r), threads);
                if r.stage == Stage::Train {
                    line += " && ";
                    line += &command_line(darts, &self.eval_args(r), threads);
                    line += " > /dev/null";
                }
                if let (Some(dep), None) = (self.dependency(r), only) {
                    line += &format!("  # after: {}", dep.id);
                }
                out += &line;
                out.push('\n');
            }
        }
        out
    }
}

/// A path as a command-line argument (lossy only for non-UTF-8 names, which `darts` refuses anyway).
pub fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Quotes `s` for a POSIX shell where it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `darts ARGS --threads T` as one shell line.
pub fn command_line(darts: &str, args: &[String], threads: usize) -> String {
    let mut words: Vec<String> = std::iter::once(darts.to_string())
        .chain(args.iter().cloned())
        .collect();
    words.push("--threads".into());
    words.push(threads.to_string());
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::*;

    pub fn spec() -> StudySpec {
        StudySpec {
            data: "synthetic".into(),
            subset: Some(64),
            weightings: vec![Weighting::Maxw, Weighting::Softmax],
            grad_transforms: vec![GradTransform::None, GradTransform::SubtractMax],
            orders: vec![Order::First],
            seeds: vec![1, 2],
            baselines: vec![
                Baseline::Random { cells: 2 },
                Baseline::Named {
                    name: "DARTS_V2".into(),
                },
            ],
            search: Sizes {
                channels: 2,
                layers: 2,
                epochs: 1,
                batch: 4,
            },
            train: Sizes {
                channels: 4,
                layers: 2,
                epochs: 1,
                batch: 8,
            },
        }
    }

    #[test]
    fn the_grid_crosses_arms_and_seeds() {
        let p = Plan::new(spec(), Path::new("S"));
        let names: Vec<&str> = p.arms.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "maxw",
                "maxw-subtract-max",
                "softmax",
                "softmax-subtract-max",
                "random",
                "DARTS_V2"
            ]
        );
        // 4 arms x 2 seeds searches + as many trains + (2 random cells + DARTS_V2) x 2 seeds.
        assert_eq!(p.runs.len(), 8 + 8 + 6);
        assert!(p.runs[..8].iter().all(|r| r.stage == Stage::Search));
        let t = p.run("train/softmax-subtract-max/seed-2").unwrap();
        assert_eq!(
            p.dependency(t).unwrap().id,
            "search/softmax-subtract-max/seed-2"
        );
        assert!(p
            .dependency(p.run("train/random/cell-1/seed-1").unwrap())
            .is_none());
        let ids: std::collections::BTreeSet<&str> = p.runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids.len(), p.runs.len(), "run ids are unique");
    }

    #[test]
    fn commands_carry_every_setting() {
        let p = Plan::new(spec(), Path::new("S"));
        let s = p
            .fresh_args(p.run("search/softmax-subtract-max/seed-2").unwrap())
            .join(" ");
        assert_eq!(s, "search --weighting softmax --grad-transform subtract-max --order first --data synthetic --subset 64 --channels 2 --layers 2 --epochs 1 --batch 4 --seed 2 --out S/search/softmax-subtract-max/seed-2");
        let t = p
            .fresh_args(p.run("train/random/cell-1/seed-1").unwrap())
            .join(" ");
        assert_eq!(t, "train --genotype S/baselines/random-1.json --data synthetic --subset 64 --channels 4 --layers 2 --epochs 1 --batch 8 --seed 1 --out S/train/random/cell-1/seed-1");
        let shell = p.to_shell("darts", 1, None);
        assert!(shell.contains("--out S/train/maxw/seed-1 --threads 1 && darts eval --model S/train/maxw/seed-1 --json --threads 1 > /dev/null  # after: search/maxw/seed-1\n"), "{shell}");
        assert_eq!(
            shell.lines().filter(|l| !l.starts_with('#')).count(),
            p.runs.len()
        );
        // One stage alone: its command lines only, no comments.
        for (stage, word, n) in [
            (Stage::Search, "darts search ", 8),
            (Stage::Train, "darts train ", 14),
        ] {
            let only = p.to_shell("darts", 1, Some(stage));
            assert_eq!(only.lines().count(), n, "{only}");
            assert!(
                only.lines()
                    .all(|l| l.starts_with(word) && !l.contains('#')),
                "{only}"
            );
        }
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("a/b-c.json"), "a/b-c.json");
        assert_eq!(shell_quote("it's here"), "'it'\\''s here'");
        assert_eq!(shell_quote(""), "''");
    }
}
