//! `darts study report`: reads every finished run directory of a study and writes `study.json`,
//! `study.csv` and `report.html` (inline SVG, no scripts). Runs that are missing or failed are
//! listed; the statistics use what is complete.
//!
//! Per arm: test accuracy of the trained cells (mean, std, 95 % t interval), and for searched
//! arms the search's final validation accuracy, its train - val accuracy gap (overfitting), the
//! stability epoch (the first epoch from which the derived genotype no longer changes), the share
//! of parameter-free ops in the cells (collapse) and the mean pairwise Jaccard agreement of the
//! cells across seeds. Arms that differ in one setting only are compared paired over their seeds.
use crate::plan::{flag_value, CellSource, Plan, Run, Stage};
use crate::state::{read_json, state, RunState};
use crate::stats::{self, Paired, Summary};
use crate::{Result, StudyError};
use darts::primitives::Primitive;
use darts::Genotype;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// The numbers of one trained cell (and of the search that found it).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunResult {
    pub arm: String,
    pub seed: u64,
    /// Random baseline cell index.
    pub cell: Option<usize>,
    pub test_accuracy: f64,
    pub search_val_accuracy: Option<f64>,
    pub search_train_accuracy: Option<f64>,
    /// Final-epoch search training accuracy minus validation accuracy.
    pub train_val_gap: Option<f64>,
    pub stability_epoch: Option<usize>,
    pub parameter_free_normal: f64,
    pub parameter_free_reduce: f64,
    pub genotype: Genotype,
    /// Per search epoch, the mean softmax(alpha) of each primitive over the normal cell's edges.
    #[serde(skip)]
    pub normal_trajectory: Vec<Vec<f64>>,
}

/// One arm's statistics over its complete runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ArmReport {
    pub name: String,
    pub searched: bool,
    pub complete: usize,
    pub planned: usize,
    pub test_accuracy: Option<Summary>,
    pub search_val_accuracy: Option<Summary>,
    pub train_val_gap: Option<Summary>,
    pub stability_epoch: Option<Summary>,
    pub parameter_free_normal: Option<Summary>,
    pub parameter_free_reduce: Option<Summary>,
    /// Mean pairwise Jaccard index of the searched cells across seeds.
    pub genotype_agreement: Option<f64>,
    /// Per search epoch (from 1), the mean over seeds and normal-cell edges of softmax(alpha) per
    /// primitive, in `Primitive::ALL` order.
    pub normal_alpha_trajectory: Vec<Vec<f64>>,
}

/// A paired comparison of two searched arms that differ in one setting.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub setting: String,
    pub seeds: Vec<u64>,
    pub test_accuracy: Option<Paired>,
    pub verdict: String,
}

/// What `study.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StudyReport {
    pub spec: crate::spec::StudySpec,
    pub arms: Vec<ArmReport>,
    pub comparisons: Vec<Comparison>,
    pub runs: Vec<RunResult>,
    /// Runs that are not done, with their state.
    pub incomplete: Vec<(String, String)>,
}

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn load_genotype(path: &Path) -> Option<Genotype> {
    Genotype::from_json(&std::fs::read_to_string(path).ok()?).ok()
}

/// Mean softmax(alpha) per primitive over the normal cell's edges, per epoch, from `alphas.csv`.
fn normal_trajectory(dir: &Path) -> Vec<Vec<f64>> {
    let Ok(text) = std::fs::read_to_string(dir.join("alphas.csv")) else {
        return Vec::new();
    };
    // (epoch, edge) -> alphas in primitive order.
    let mut rows: BTreeMap<(usize, usize), Vec<f64>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        if c.len() < 8 || c[1] != "normal" {
            continue;
        }
        if let (Ok(e), Ok(edge), Ok(a)) = (c[0].parse(), c[2].parse(), c[6].parse::<f64>()) {
            rows.entry((e, edge)).or_default().push(a);
        }
    }
    let epochs = rows.keys().map(|k| k.0 + 1).max().unwrap_or(0);
    let mut out = vec![vec![0.0; Primitive::ALL.len()]; epochs];
    let mut counts = vec![0usize; epochs];
    for ((e, _), alphas) in rows {
        if alphas.len() != Primitive::ALL.len() {
            continue;
        }
        let m = alphas.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let exp: Vec<f64> = alphas.iter().map(|a| (a - m).exp()).collect();
        let sum: f64 = exp.iter().sum();
        for (k, v) in exp.iter().enumerate() {
            out[e][k] += v / sum;
        }
        counts[e] += 1;
    }
    for (row, n) in out.iter_mut().zip(counts) {
        row.iter_mut().for_each(|v| *v /= n.max(1) as f64);
    }
    out
}

/// The result of a done train run (and its search), or why it cannot be read.
fn result_of(plan: &Plan, train: &Run) -> std::result::Result<RunResult, String> {
    let eval = read_json(&train.dir.join("eval.json")).ok_or("eval.json unreadable")?;
    let test_accuracy = f(&eval["evaluation"]["accuracy"]).ok_or("eval.json has no accuracy")?;
    let genotype =
        load_genotype(&train.dir.join("genotype.json")).ok_or("genotype.json unreadable")?;
    let mut r = RunResult {
        arm: train.arm.clone(),
        seed: train.seed,
        cell: match train.cell {
            Some(CellSource::Random(j)) => Some(j),
            _ => None,
        },
        test_accuracy,
        search_val_accuracy: None,
        search_train_accuracy: None,
        train_val_gap: None,
        stability_epoch: None,
        parameter_free_normal: stats::parameter_free_share(&genotype.normal),
        parameter_free_reduce: stats::parameter_free_share(&genotype.reduce),
        genotype,
        normal_trajectory: Vec::new(),
    };
    if let Some(search) = plan.dependency(train) {
        let s = read_json(&search.dir.join("summary.json"))
            .ok_or("the search's summary.json is unreadable")?;
        let fin = &s["final"];
        let (tr, va) = (f(&fin["train_acc"]), f(&fin["val_acc"]));
        r.search_val_accuracy = va;
        r.search_train_accuracy = tr;
        r.train_val_gap = tr.zip(va).map(|(t, v)| t - v);
        let per_epoch: Vec<Genotype> = s["epochs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| serde_json::from_value(e["genotype"].clone()).ok())
                    .collect()
            })
            .unwrap_or_default();
        r.stability_epoch = stats::stability_epoch(&per_epoch);
        r.normal_trajectory = normal_trajectory(&search.dir);
    }
    Ok(r)
}

fn summarize_of(rs: &[&RunResult], pick: impl Fn(&RunResult) -> Option<f64>) -> Option<Summary> {
    let xs: Vec<f64> = rs.iter().filter_map(|r| pick(r)).collect();
    stats::summarize(&xs)
}

fn mean_trajectory(rs: &[&RunResult]) -> Vec<Vec<f64>> {
    let with: Vec<&Vec<Vec<f64>>> = rs
        .iter()
        .map(|r| &r.normal_trajectory)
        .filter(|t| !t.is_empty())
        .collect();
    let epochs = with.iter().map(|t| t.len()).min().unwrap_or(0);
    (0..epochs)
        .map(|e| {
            (0..Primitive::ALL.len())
                .map(|k| with.iter().map(|t| t[e][k]).sum::<f64>() / with.len() as f64)
                .collect()
        })
        .collect()
}

/// The one setting in which search arms `x` and `y` differ, as (setting, treatment, baseline):
/// Max-W against softmax, subtract-max against none, second order against first.
fn one_difference<'a>(plan: &Plan, x: &'a str, y: &'a str) -> Option<(String, &'a str, &'a str)> {
    let get = |n: &str| {
        plan.arms
            .iter()
            .find(|a| a.name == n)
            .and_then(|a| a.search)
    };
    let (wx, tx, ox) = get(x)?;
    let (wy, ty, oy) = get(y)?;
    let diffs = [
        (wx != wy, "weighting", wx == darts::Weighting::Maxw),
        (
            tx != ty,
            "gradient transform",
            tx != darts::optim::GradTransform::None,
        ),
        (ox != oy, "order", ox == darts::Order::Second),
    ];
    let mut differing = diffs.iter().filter(|d| d.0);
    let (_, setting, x_treated) = *differing.next()?;
    if differing.next().is_some() {
        return None;
    }
    let (a, b) = if x_treated { (x, y) } else { (y, x) };
    Some((setting.to_string(), a, b))
}

fn verdict(a: &str, b: &str, p: &Option<Paired>) -> String {
    match p {
        None => format!("no seed has both {a} and {b} complete: no comparison"),
        Some(p) if p.ci95.is_none() => format!(
            "{a} - {b} = {:+.4} test accuracy on {} seed: one seed gives no interval; run more seeds",
            p.mean_difference, p.n
        ),
        Some(p) => {
            let (lo, hi) = p.ci95.expect("checked");
            let pv = p.p_value.map_or("n/a".into(), |v| format!("{v:.3}"));
            if p.significant() {
                format!(
                    "{a} - {b} = {:+.4} test accuracy over {} seeds (95% CI {lo:+.4} to {hi:+.4}, paired t p = {pv}): significant at the 95% level; {} found the better cells on these seeds",
                    p.mean_difference,
                    p.n,
                    if p.mean_difference > 0.0 { a } else { b }
                )
            } else {
                format!(
                    "{a} - {b} = {:+.4} test accuracy over {} seeds (95% CI {lo:+.4} to {hi:+.4}, paired t p = {pv}): not significant; the interval contains 0, so these seeds cannot tell the two apart",
                    p.mean_difference, p.n
                )
            }
        }
    }
}

/// Reads the study's run directories and computes the report. Fails only when no run is complete.
pub fn compute(plan: &Plan) -> Result<StudyReport> {
    let mut runs = Vec::new();
    let mut incomplete = Vec::new();
    for run in &plan.runs {
        let st = state(plan, run);
        if st != RunState::Done {
            let label = match &st {
                RunState::Failed(why) => format!("failed: {why}"),
                s => s.label().to_string(),
            };
            incomplete.push((run.id.clone(), label));
            continue;
        }
        if run.stage == Stage::Train {
            let dep_done = plan
                .dependency(run)
                .is_none_or(|d| state(plan, d) == RunState::Done);
            if !dep_done {
                continue; // listed under its search
            }
            match result_of(plan, run) {
                Ok(r) => runs.push(r),
                Err(why) => incomplete.push((run.id.clone(), format!("unreadable: {why}"))),
            }
        }
    }
    if runs.is_empty() {
        return Err(StudyError::new(format!(
            "{}: no run is complete yet ({} of {} runs not done); nothing to report",
            plan.dir.display(),
            incomplete.len(),
            plan.runs.len()
        )));
    }
    let arms: Vec<ArmReport> = plan
        .arms
        .iter()
        .map(|arm| {
            let rs: Vec<&RunResult> = runs.iter().filter(|r| r.arm == arm.name).collect();
            let searched = arm.search.is_some();
            let genotypes: Vec<Genotype> = rs.iter().map(|r| r.genotype.clone()).collect();
            ArmReport {
                name: arm.name.clone(),
                searched,
                complete: rs.len(),
                planned: plan
                    .runs
                    .iter()
                    .filter(|r| r.arm == arm.name && r.stage == Stage::Train)
                    .count(),
                test_accuracy: summarize_of(&rs, |r| Some(r.test_accuracy)),
                search_val_accuracy: summarize_of(&rs, |r| r.search_val_accuracy),
                train_val_gap: summarize_of(&rs, |r| r.train_val_gap),
                stability_epoch: summarize_of(&rs, |r| r.stability_epoch.map(|e| e as f64)),
                parameter_free_normal: summarize_of(&rs, |r| Some(r.parameter_free_normal)),
                parameter_free_reduce: summarize_of(&rs, |r| Some(r.parameter_free_reduce)),
                genotype_agreement: if searched {
                    stats::mean_pairwise_jaccard(&genotypes)
                } else {
                    None
                },
                normal_alpha_trajectory: mean_trajectory(&rs),
            }
        })
        .collect();
    let mut comparisons = Vec::new();
    let searched: Vec<&str> = plan
        .arms
        .iter()
        .filter(|a| a.search.is_some())
        .map(|a| a.name.as_str())
        .collect();
    for (i, &x) in searched.iter().enumerate() {
        for &y in &searched[i + 1..] {
            let Some((setting, a, b)) = one_difference(plan, x, y) else {
                continue;
            };
            let by_seed = |arm: &str| -> BTreeMap<u64, f64> {
                runs.iter()
                    .filter(|r| r.arm == arm)
                    .map(|r| (r.seed, r.test_accuracy))
                    .collect()
            };
            let (ma, mb) = (by_seed(a), by_seed(b));
            let seeds: Vec<u64> = ma.keys().filter(|s| mb.contains_key(s)).cloned().collect();
            let va: Vec<f64> = seeds.iter().map(|s| ma[s]).collect();
            let vb: Vec<f64> = seeds.iter().map(|s| mb[s]).collect();
            let p = stats::paired(&va, &vb);
            comparisons.push(Comparison {
                a: a.into(),
                b: b.into(),
                setting,
                verdict: verdict(a, b, &p),
                seeds,
                test_accuracy: p,
            });
        }
    }
    Ok(StudyReport {
        spec: plan.spec.clone(),
        arms,
        comparisons,
        runs,
        incomplete,
    })
}

/// One row per trained cell; numbers written in Rust's shortest round-trip form.
pub fn to_csv(r: &StudyReport) -> String {
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    let mut s = String::from("arm,seed,cell,test_accuracy,search_val_accuracy,search_train_accuracy,train_val_gap,stability_epoch,parameter_free_normal,parameter_free_reduce,genotype\n");
    for x in &r.runs {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},\"{}\"",
            x.arm,
            x.seed,
            x.cell.map_or(String::new(), |c| c.to_string()),
            x.test_accuracy,
            opt(x.search_val_accuracy),
            opt(x.search_train_accuracy),
            opt(x.train_val_gap),
            x.stability_epoch.map_or(String::new(), |e| e.to_string()),
            x.parameter_free_normal,
            x.parameter_free_reduce,
            x.genotype.to_python().replace('"', "\"\"")
        );
    }
    s
}

/// Writes `study.json`, `study.csv`, `report.html` and its two figures (`accuracy.svg`,
/// `alphas.svg`) into the study directory.
pub fn write(plan: &Plan, r: &StudyReport, cost: &Value) -> Result<()> {
    let mut json = serde_json::to_value(r).expect("report serialises");
    json["cost"] = cost.clone();
    let w = |name: &str, text: String| -> Result<()> {
        Ok(darts::checkpoint::write_atomic(
            &plan.dir.join(name),
            text.as_bytes(),
        )?)
    };
    w(
        "study.json",
        serde_json::to_string_pretty(&json).expect("json"),
    )?;
    w("study.csv", to_csv(r))?;
    w("accuracy.svg", crate::report_html::accuracy_svg(r))?;
    let alphas = crate::report_html::trajectories_svg(r);
    if !alphas.is_empty() {
        w("alphas.svg", alphas)?;
    }
    w("report.html", crate::report_html::page(plan, r, cost))
}

/// Seconds spent by the study's runs (from their summaries): total and per stage. Kept apart from
/// the results, which are bit-identical whatever executor or thread count produced them.
pub fn cost(plan: &Plan) -> Value {
    let mut per: BTreeMap<&str, f64> = BTreeMap::new();
    for run in &plan.runs {
        let Some(s) = read_json(&run.dir.join("summary.json")) else {
            continue;
        };
        let secs = s["epochs"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["seconds"].as_f64()).sum::<f64>())
            .unwrap_or(0.0);
        *per.entry(match run.stage {
            Stage::Search => "search_seconds",
            Stage::Train => "train_seconds",
        })
        .or_default() += secs;
    }
    let total: f64 = per.values().sum();
    serde_json::json!({ "search_seconds": per.get("search_seconds").copied().unwrap_or(0.0), "train_seconds": per.get("train_seconds").copied().unwrap_or(0.0), "total_run_seconds": total })
}

/// The arm name's settings in words, for tables.
pub fn arm_settings(plan: &Plan, name: &str) -> String {
    match plan
        .arms
        .iter()
        .find(|a| a.name == name)
        .and_then(|a| a.search)
    {
        Some((w, t, o)) => format!(
            "{} weighting, {} transform, {} order",
            flag_value(&w),
            flag_value(&t),
            flag_value(&o)
        ),
        None => "baseline cell (no search)".into(),
    }
}
