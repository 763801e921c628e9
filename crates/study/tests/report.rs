//! The aggregation on hand-made run directories with known numbers: means, intervals, paired
//! comparison, Jaccard agreement, stability epoch, collapse share, and what is missing.
use serde_json::json;
use std::path::{Path, PathBuf};
use study::plan::Plan;
use study::plan::Stage;
use study::report::compute;
use study::spec::*;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("darts-study-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn spec() -> StudySpec {
    StudySpec {
        data: "synthetic".into(),
        subset: None,
        weightings: parse_weightings("maxw,softmax").unwrap(),
        grad_transforms: parse_grad_transforms("none").unwrap(),
        orders: parse_orders("first").unwrap(),
        seeds: vec![1, 2, 3],
        baselines: parse_baselines("DARTS_V2").unwrap(),
        search: Sizes {
            channels: 2,
            layers: 2,
            epochs: 3,
            batch: 4,
        },
        train: Sizes {
            channels: 2,
            layers: 2,
            epochs: 1,
            batch: 4,
        },
    }
}

use darts::primitives::Primitive;

const CONV: Primitive = Primitive::SepConv3x3;
const POOL: Primitive = Primitive::MaxPool3x3;

/// A genotype whose normal cell has `pools` max-pool edges (the rest sep convs), reduce all pools;
/// `alt` moves the normal cell's third edge (node 1) from input 0 to input 2.
fn cell(pools: usize, alt: bool) -> darts::Genotype {
    let normal = (0..8)
        .map(|k| {
            (
                if k < pools { POOL } else { CONV },
                if k == 2 && alt { 2 } else { k % 2 },
            )
        })
        .collect();
    darts::Genotype {
        normal,
        normal_concat: vec![2, 3, 4, 5],
        reduce: (0..8).map(|k| (POOL, k % 2)).collect(),
        reduce_concat: vec![2, 3, 4, 5],
    }
}

fn write(path: &Path, v: serde_json::Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string(&v).unwrap()).unwrap();
}

/// A finished search whose per-epoch genotypes are `per_epoch`, with final accuracies.
fn search_dir(d: &Path, per_epoch: &[darts::Genotype], train_acc: f64, val_acc: f64) {
    let epochs: Vec<_> = per_epoch
        .iter()
        .enumerate()
        .map(|(e, g)| json!({ "epoch": e, "genotype": g, "seconds": 1.0 }))
        .collect();
    write(
        &d.join("summary.json"),
        json!({ "status": "finished", "final": { "train_acc": train_acc, "val_acc": val_acc }, "epochs": epochs, "genotype": per_epoch.last() }),
    );
}

fn train_dir(d: &Path, g: &darts::Genotype, acc: f64) {
    write(
        &d.join("summary.json"),
        json!({ "kind": "train", "status": "finished", "epochs": [{ "seconds": 2.0 }] }),
    );
    write(
        &d.join("eval.json"),
        json!({ "evaluation": { "accuracy": acc } }),
    );
    std::fs::write(d.join("genotype.json"), g.to_json()).unwrap();
}

#[test]
fn known_numbers_come_out() {
    let root = dir("known");
    let plan = Plan::new(spec(), &root);
    let (a, b) = (cell(0, false), cell(2, false));
    // maxw: test 0.90 0.92 0.94; softmax: 0.88 0.89 0.93 -> differences 0.02 0.03 0.01.
    let maxw = [0.90, 0.92, 0.94];
    let softmax = [0.88, 0.89, 0.93];
    for (i, s) in [1u64, 2, 3].iter().enumerate() {
        // maxw finds cell a every time, stable from epoch 2 (epoch 1 differs);
        search_dir(
            &root.join(format!("search/maxw/seed-{s}")),
            &[b.clone(), a.clone(), a.clone()],
            0.6,
            0.5,
        );
        train_dir(&root.join(format!("train/maxw/seed-{s}")), &a, maxw[i]);
        // softmax finds cell b on seeds 1, 2 and cell(2, true) on seed 3 (one edge differs), stable at 1, 3, 1.
        let found = if *s == 3 { cell(2, true) } else { b.clone() };
        let hist = if *s == 2 {
            vec![b.clone(), a.clone(), b.clone()]
        } else {
            vec![found.clone(); 3]
        };
        search_dir(
            &root.join(format!("search/softmax/seed-{s}")),
            &hist,
            0.8,
            0.5,
        );
        train_dir(
            &root.join(format!("train/softmax/seed-{s}")),
            &found,
            softmax[i],
        );
    }
    // DARTS_V2 done for seeds 1 and 2 only; seed 3 failed.
    let v2 = darts::Genotype::builtin("DARTS_V2").unwrap();
    train_dir(&root.join("train/DARTS_V2/seed-1"), &v2, 0.95);
    train_dir(&root.join("train/DARTS_V2/seed-2"), &v2, 0.97);
    std::fs::create_dir_all(root.join("logs")).unwrap();
    std::fs::write(
        plan.failed_path(plan.run("train/DARTS_V2/seed-3").unwrap()),
        "exit status 1",
    )
    .unwrap();

    let r = compute(&plan).unwrap();
    let arm = |n: &str| r.arms.iter().find(|a| a.name == n).unwrap();
    let close = |x: f64, y: f64| assert!((x - y).abs() < 1e-9, "{x} vs {y}");

    let m = arm("maxw");
    let t = m.test_accuracy.as_ref().unwrap();
    close(t.mean, 0.92);
    close(t.std.unwrap(), 0.02);
    let half = 4.302_652_729_749_462 * 0.02 / 3f64.sqrt(); // scipy.stats.t.ppf(0.975, 2)
    close(t.ci95.unwrap().0, 0.92 - half);
    close(m.genotype_agreement.unwrap(), 1.0);
    close(m.stability_epoch.as_ref().unwrap().mean, 2.0);
    close(m.parameter_free_normal.as_ref().unwrap().mean, 0.0);
    close(m.parameter_free_reduce.as_ref().unwrap().mean, 1.0);
    close(m.train_val_gap.as_ref().unwrap().mean, 0.1);

    let s = arm("softmax");
    close(s.test_accuracy.as_ref().unwrap().mean, 0.90);
    close(s.parameter_free_normal.as_ref().unwrap().mean, 0.25);
    close(s.stability_epoch.as_ref().unwrap().mean, 5.0 / 3.0);
    close(s.train_val_gap.as_ref().unwrap().mean, 0.3);
    // b vs cell(2, true): 16 edges each, 15 shared -> 15 / 17; pairs (1,2) = 1, (1,3) = (2,3) = 15/17.
    close(
        s.genotype_agreement.unwrap(),
        (1.0 + 2.0 * 15.0 / 17.0) / 3.0,
    );

    let d = arm("DARTS_V2");
    assert_eq!((d.complete, d.planned), (2, 3));
    close(d.test_accuracy.as_ref().unwrap().mean, 0.96);
    assert!(d.genotype_agreement.is_none() && d.stability_epoch.is_none());

    assert_eq!(r.comparisons.len(), 1);
    let c = &r.comparisons[0];
    assert_eq!(
        (c.a.as_str(), c.b.as_str(), c.setting.as_str()),
        ("maxw", "softmax", "weighting")
    );
    let p = c.test_accuracy.as_ref().unwrap();
    close(p.mean_difference, 0.02);
    // Differences 0.02, 0.03, 0.01: sd 0.01, t = 3.4641, df 2 -> p = 0.0742 (scipy.stats.ttest_rel).
    assert!(
        (p.p_value.unwrap() - 0.074_179_900_1).abs() < 1e-6,
        "{:?}",
        p.p_value
    );
    assert!(!p.significant());
    assert!(c.verdict.contains("not significant"), "{}", c.verdict);

    assert_eq!(
        r.incomplete,
        vec![(
            "train/DARTS_V2/seed-3".to_string(),
            "failed: exit status 1".to_string()
        )]
    );
    let csv = study::report::to_csv(&r);
    assert_eq!(csv.lines().count(), 1 + 8);
    assert!(
        csv.contains("\nmaxw,2,,0.92,0.5,0.6,0.09999999999999998,2,0,1,\"Genotype("),
        "{csv}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn nothing_complete_is_an_error_naming_the_directory() {
    let root = dir("empty");
    let plan = Plan::new(spec(), &root);
    let e = compute(&plan).unwrap_err().to_string();
    assert!(
        e.contains("no run is complete") && e.contains("15 of 15"),
        "{e}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// `alphas.csv` rows of one search: epoch e's normal-cell edge 0 has alpha ln 3 on primitive
/// `k(e)` (softmax 3/10 there, 1/10 elsewhere), edge 1 all zeros (1/8 each); edge 2 is cut
/// short (7 values: skipped), and reduce rows and a malformed line are ignored.
fn alphas_csv(d: &Path, hot: &[usize]) {
    let mut s = String::from("epoch,cell,edge,from,to,primitive,alpha,weight\n");
    for (e, &k) in hot.iter().enumerate() {
        for (edge, n) in [(0, 8), (1, 8), (2, 7)] {
            for (j, p) in Primitive::ALL.iter().take(n).enumerate() {
                let a = if edge == 0 && j == k { 3f64.ln() } else { 0.0 };
                s += &format!("{e},normal,{edge},0,2,{p},{a},0\n");
                s += &format!("{e},reduce,{edge},0,2,{p},5,0\n");
            }
        }
        s += &format!("{e},normal,0\n");
    }
    std::fs::write(d.join("alphas.csv"), s).unwrap();
}

/// The mean softmax over edges 0 and 1 of [`alphas_csv`] with primitive k hot on edge 0.
fn expected_row(k: usize) -> Vec<f64> {
    (0..8)
        .map(|j| (if j == k { 0.3 } else { 0.1 } + 0.125) / 2.0)
        .collect()
}

/// A 2 x 2 grid (weighting x gradient transform) with a random baseline: which arms are
/// compared, which way round, each verdict (significant either way, a single shared seed), the
/// random cells' indices, the softmax(alpha) trajectories, the cost and the files written.
#[test]
fn a_grid_compares_each_pair_that_differs_in_one_setting() {
    let root = dir("grid");
    let mut s = spec();
    s.grad_transforms = parse_grad_transforms("none,subtract-max").unwrap();
    s.baselines = parse_baselines("random:2").unwrap();
    let plan = Plan::new(s, &root);
    // Test accuracy per arm and seed; maxw has only seed 1 trained.
    let acc = |arm: &str, seed: u64| -> Option<f64> {
        let i = seed as usize - 1;
        match arm {
            "maxw" => (seed == 1).then_some(0.90),
            "maxw-subtract-max" => Some([0.91, 0.935, 0.95][i]),
            "softmax" => Some([0.89, 0.90, 0.915][i]),
            "softmax-subtract-max" => Some([0.80, 0.81, 0.83][i]),
            _ => Some(0.5 + 0.01 * seed as f64),
        }
    };
    let a = cell(0, false);
    for run in &plan.runs {
        match run.stage {
            Stage::Search => {
                search_dir(&run.dir, &[a.clone(), a.clone()], 0.6, 0.5);
                // Seed s has primitive s hot in epoch 0 and 0 in epoch 1; seed 3 a third epoch.
                let mut hot = vec![run.seed as usize, 0];
                if run.seed == 3 {
                    hot.push(5);
                }
                alphas_csv(&run.dir, &hot);
            }
            Stage::Train => {
                if let Some(x) = acc(&run.arm, run.seed) {
                    train_dir(&run.dir, &a, x);
                }
            }
        }
    }
    let r = compute(&plan).unwrap();

    let got: Vec<(&str, &str, &str, Vec<u64>)> = r
        .comparisons
        .iter()
        .map(|c| {
            (
                c.a.as_str(),
                c.b.as_str(),
                c.setting.as_str(),
                c.seeds.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("maxw-subtract-max", "maxw", "gradient transform", vec![1]),
            ("maxw", "softmax", "weighting", vec![1]),
            (
                "maxw-subtract-max",
                "softmax-subtract-max",
                "weighting",
                vec![1, 2, 3]
            ),
            (
                "softmax-subtract-max",
                "softmax",
                "gradient transform",
                vec![1, 2, 3]
            ),
        ]
    );
    let v: Vec<&str> = r.comparisons.iter().map(|c| c.verdict.as_str()).collect();
    assert!(
        v[0].contains("+0.0100 test accuracy on 1 seed: one seed gives no interval"),
        "{}",
        v[0]
    );
    assert!(v[1].contains("one seed gives no interval"), "{}", v[1]);
    assert!(
        v[2].contains("significant at the 95% level; maxw-subtract-max found the better cells"),
        "{}",
        v[2]
    );
    assert!(
        v[3].contains("significant at the 95% level; softmax found the better cells"),
        "{}",
        v[3]
    );
    assert!(
        r.comparisons[3]
            .test_accuracy
            .as_ref()
            .unwrap()
            .mean_difference
            < 0.0
    );

    // The random cells: two per seed, each run knows its cell.
    let random: Vec<(u64, Option<usize>)> = r
        .runs
        .iter()
        .filter(|x| x.arm == "random")
        .map(|x| (x.seed, x.cell))
        .collect();
    assert_eq!(random.len(), 6);
    for c in [0, 1] {
        assert_eq!(random.iter().filter(|x| x.1 == Some(c)).count(), 3);
    }
    assert!(r
        .runs
        .iter()
        .filter(|x| x.arm != "random")
        .all(|x| x.cell.is_none()));

    // Trajectories: the mean over the arm's trained seeds, as many epochs as the shortest.
    let arm = |n: &str| r.arms.iter().find(|a| a.name == n).unwrap();
    let close = |x: &[f64], y: &[f64]| {
        assert_eq!(x.len(), y.len());
        for (a, b) in x.iter().zip(y) {
            assert!((a - b).abs() < 1e-12, "{x:?} vs {y:?}");
        }
    };
    let t = &arm("softmax").normal_alpha_trajectory;
    assert_eq!(t.len(), 2);
    let mean3: Vec<f64> = (0..8)
        .map(|j| (1..=3).map(|k| expected_row(k)[j]).sum::<f64>() / 3.0)
        .collect();
    close(&t[0], &mean3);
    close(&t[1], &expected_row(0));
    let t = &arm("maxw").normal_alpha_trajectory;
    close(&t[0], &expected_row(1));
    assert!(arm("random").normal_alpha_trajectory.is_empty());

    // Cost: 12 searches of two 1 s epochs, 2 s per trained run that finished.
    let cost = study::report::cost(&plan);
    assert_eq!(cost["search_seconds"], 12.0 * 2.0);
    assert_eq!(cost["train_seconds"], 2.0 * (1 + 3 + 3 + 3 + 6) as f64);
    assert_eq!(cost["total_run_seconds"], 24.0 + 32.0);
    assert_eq!(
        study::report::arm_settings(&plan, "maxw-subtract-max"),
        "maxw weighting, subtract-max transform, first order"
    );
    assert_eq!(
        study::report::arm_settings(&plan, "random"),
        "baseline cell (no search)"
    );

    study::report::write(&plan, &r, &cost).unwrap();
    for f in ["study.csv", "accuracy.svg", "alphas.svg", "report.html"] {
        assert!(root.join(f).exists(), "{f}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("study.json")).unwrap()).unwrap();
    assert_eq!(json["cost"], cost);
    assert_eq!(json["comparisons"].as_array().unwrap().len(), 4);
    std::fs::remove_dir_all(&root).unwrap();
}

/// Second order against first: the second-order arm is the treated one, whichever comes first.
#[test]
fn second_order_is_compared_against_first() {
    let root = dir("order");
    let mut s = spec();
    s.weightings = parse_weightings("softmax").unwrap();
    s.orders = parse_orders("first,second").unwrap();
    s.baselines = Vec::new();
    let plan = Plan::new(s, &root);
    let a = cell(0, false);
    for run in &plan.runs {
        match run.stage {
            Stage::Search => search_dir(&run.dir, std::slice::from_ref(&a), 0.6, 0.5),
            Stage::Train => train_dir(&run.dir, &a, 0.9 + 0.01 * run.seed as f64),
        }
    }
    let r = compute(&plan).unwrap();
    let c: Vec<(&str, &str, &str)> = r
        .comparisons
        .iter()
        .map(|c| (c.a.as_str(), c.b.as_str(), c.setting.as_str()))
        .collect();
    assert_eq!(c, [("softmax-second", "softmax", "order")]);
    std::fs::remove_dir_all(&root).unwrap();
}
