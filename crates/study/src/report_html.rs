//! `report.html` of a study: one self-contained page (inline SVG, no scripts) in the style of
//! `darts report`: the verdicts first, then the per-arm table, the accuracy of every trained cell
//! per arm, the alpha trajectories per arm, the runs, what is missing, the spec and the cost.
use crate::plan::Plan;
use crate::report::{arm_settings, StudyReport};
use crate::stats::Summary;
use darts::primitives::Primitive;
use darts::render::COLOURS;
use serde_json::Value;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn mean_std(s: &Option<Summary>, digits: usize) -> String {
    match s {
        None => "&ndash;".into(),
        Some(s) => match s.std {
            Some(sd) => format!("{:.*} &plusmn; {:.*}", digits, s.mean, digits, sd),
            None => format!("{:.*}", digits, s.mean),
        },
    }
}

fn ci(s: &Option<Summary>) -> String {
    match s.as_ref().and_then(|s| s.ci95) {
        Some((lo, hi)) => format!("[{lo:.4}, {hi:.4}]"),
        None => "&ndash;".into(),
    }
}

/// Test accuracy per arm: one point per trained cell, the mean as a bar, the 95 % interval as a
/// whisker.
pub(crate) fn accuracy_svg(r: &StudyReport) -> String {
    let arms: Vec<&str> = r
        .arms
        .iter()
        .filter(|a| a.complete > 0)
        .map(|a| a.name.as_str())
        .collect();
    let values: Vec<f64> = r.runs.iter().map(|x| x.test_accuracy).collect();
    let mut lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let mut hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    for a in &r.arms {
        if let Some((l, h)) = a.test_accuracy.as_ref().and_then(|s| s.ci95) {
            lo = lo.min(l);
            hi = hi.max(h);
        }
    }
    let pad = ((hi - lo) * 0.1).max(0.005);
    let (lo, hi) = ((lo - pad).max(0.0), (hi + pad).min(1.0));
    let (w, h, left, top, bottom) = (
        140.0 * arms.len().max(1) as f64 + 80.0,
        300.0,
        60.0,
        20.0,
        50.0,
    );
    let y = |v: f64| top + (h - top - bottom) * (1.0 - (v - lo) / (hi - lo).max(1e-9));
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"Helvetica,Arial,sans-serif\" font-size=\"12\">\n");
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let _ = writeln!(s, "<line x1=\"{left}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.3}</text>", w - 10.0, y(v), y(v), left - 6.0, y(v) + 4.0);
    }
    let _ = writeln!(s, "<text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">test accuracy</text>", h / 2.0, h / 2.0);
    for (i, arm) in arms.iter().enumerate() {
        let cx = left + 140.0 * i as f64 + 70.0;
        let colour = COLOURS[(i + 1) % COLOURS.len()];
        let _ = writeln!(
            s,
            "<text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            h - 20.0,
            esc(arm)
        );
        let points: Vec<&crate::report::RunResult> =
            r.runs.iter().filter(|x| x.arm == *arm).collect();
        for (j, x) in points.iter().enumerate() {
            let dx = (j as f64 - (points.len() as f64 - 1.0) / 2.0) * 7.0;
            let _ = writeln!(s, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\" fill-opacity=\"0.7\"><title>seed {}{}: {:.4}</title></circle>", cx + dx, y(x.test_accuracy), x.seed, x.cell.map_or(String::new(), |c| format!(", cell {c}")), x.test_accuracy);
        }
        if let Some(a) = r
            .arms
            .iter()
            .find(|a| a.name == *arm)
            .and_then(|a| a.test_accuracy.clone())
        {
            let _ = writeln!(s, "<line x1=\"{}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\" stroke-width=\"2\"/>", cx - 30.0, cx + 30.0, y(a.mean), y(a.mean));
            if let Some((l, u)) = a.ci95 {
                let _ = writeln!(s, "<line x1=\"{}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\"/><line x1=\"{}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\"/><line x1=\"{}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>", cx + 36.0, cx + 36.0, y(l), y(u), cx + 32.0, cx + 40.0, y(l), y(l), cx + 32.0, cx + 40.0, y(u), y(u));
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Per searched arm, a small chart: the mean softmax(alpha) share of each primitive in the normal
/// cell over the search epochs (a rising pool or skip line is a collapse in the making).
pub(crate) fn trajectories_svg(r: &StudyReport) -> String {
    let arms: Vec<_> = r
        .arms
        .iter()
        .filter(|a| !a.normal_alpha_trajectory.is_empty())
        .collect();
    if arms.is_empty() {
        return String::new();
    }
    let (cw, ch, pad, cols) = (260.0f64, 170.0f64, 52.0f64, 3usize);
    let rows = arms.len().div_ceil(cols);
    let w = (cols.min(arms.len()) as f64 * (cw + pad) + pad).max(4.0 * 130.0 + pad);
    let h = rows as f64 * (ch + pad + 20.0) + 60.0;
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"Helvetica,Arial,sans-serif\" font-size=\"11\">\n");
    // One y range for all charts, fitted to the data: early in a search every share is close to
    // 1/8, and a 0-to-max axis would flatten the trends that matter.
    let values = || {
        arms.iter()
            .flat_map(|a| a.normal_alpha_trajectory.iter().flatten())
            .cloned()
    };
    let lo = values().fold(f64::INFINITY, f64::min);
    let hi = values().fold(f64::NEG_INFINITY, f64::max);
    let margin = ((hi - lo) * 0.05).max(1e-6);
    let (ymin, ymax) = (lo - margin, hi + margin);
    for (i, arm) in arms.iter().enumerate() {
        let (x0, y0) = (
            pad + (i % cols) as f64 * (cw + pad),
            20.0 + (i / cols) as f64 * (ch + pad + 20.0),
        );
        let t = &arm.normal_alpha_trajectory;
        let n = t.len();
        let px = |e: usize| {
            x0 + if n > 1 {
                cw * e as f64 / (n - 1) as f64
            } else {
                cw / 2.0
            }
        };
        let py = |v: f64| y0 + ch * (1.0 - (v - ymin) / (ymax - ymin));
        let _ = writeln!(
            s,
            "<text x=\"{x0}\" y=\"{}\" font-weight=\"bold\">{}</text>",
            y0 - 6.0,
            esc(&arm.name)
        );
        let _ = writeln!(s, "<rect x=\"{x0}\" y=\"{y0}\" width=\"{cw}\" height=\"{ch}\" fill=\"none\" stroke=\"#ccc\"/>");
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{ymax:.4}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{ymin:.4}</text>", x0 - 4.0, y0 + 8.0, x0 - 4.0, y0 + ch);
        let _ = writeln!(s, "<text x=\"{x0}\" y=\"{}\">epoch 1</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">epoch {n}</text>", y0 + ch + 14.0, x0 + cw, y0 + ch + 14.0);
        for (k, prim) in Primitive::ALL.iter().enumerate() {
            let pts: Vec<String> = (0..n)
                .map(|e| format!("{:.1},{:.1}", px(e), py(t[e][k])))
                .collect();
            let _ = writeln!(s, "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"><title>{prim}</title></polyline>", pts.join(" "), COLOURS[k]);
        }
    }
    for (k, prim) in Primitive::ALL.iter().enumerate() {
        let (lx, ly) = (
            pad + (k % 4) as f64 * 130.0,
            h - 34.0 + (k / 4) as f64 * 18.0,
        );
        let _ = writeln!(s, "<rect x=\"{lx}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{ly}\">{prim}</text>", ly - 9.0, COLOURS[k], lx + 14.0);
    }
    s.push_str("</svg>\n");
    s
}

/// The whole page.
pub fn page(plan: &Plan, r: &StudyReport, cost: &Value) -> String {
    let mut h = String::new();
    let title = format!("darts study: {}", plan.dir.display());
    let _ = write!(h, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>body{{font-family:Helvetica,Arial,sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse;margin-bottom:1em}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f4f4f4}}td.l,th.l{{text-align:left}}code,pre{{background:#f6f6f6;padding:2px 4px}}pre{{white-space:pre-wrap}}svg{{max-width:100%;height:auto}}.v{{font-size:1.05em}}</style></head><body>\n<h1>{t}</h1>\n", t = esc(&title));
    let planned_units = plan
        .runs
        .iter()
        .filter(|x| x.stage == crate::plan::Stage::Train)
        .count();
    let _ = writeln!(
        h,
        "<p>Data <code>{}</code>, seeds {:?}; {} of {} trained cells complete.</p>",
        esc(&plan.spec.data),
        plan.spec.seeds,
        r.runs.len(),
        planned_units
    );
    if !r.comparisons.is_empty() {
        h.push_str("<h2>Paired comparisons (same seeds)</h2>\n<ul>\n");
        for c in &r.comparisons {
            let _ = writeln!(
                h,
                "<li class=\"v\"><b>{}</b> ({} differs): {}</li>",
                esc(&format!("{} vs {}", c.a, c.b)),
                esc(&c.setting),
                esc(&c.verdict)
            );
        }
        h.push_str("</ul>\n");
    }
    h.push_str("<h2>Per arm</h2>\n<table><tr><th class=\"l\">arm</th><th class=\"l\">setting</th><th>cells</th><th>test accuracy (mean &plusmn; std)</th><th>95% CI</th><th>search val acc</th><th>train &minus; val gap</th><th>stable from epoch</th><th>parameter-free ops, normal</th><th>&hellip; reduce</th><th>agreement across seeds (Jaccard)</th></tr>\n");
    for a in &r.arms {
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.name),
            esc(&arm_settings(plan, &a.name)),
            a.complete,
            a.planned,
            mean_std(&a.test_accuracy, 4),
            ci(&a.test_accuracy),
            mean_std(&a.search_val_accuracy, 4),
            mean_std(&a.train_val_gap, 4),
            mean_std(&a.stability_epoch, 1),
            mean_std(&a.parameter_free_normal, 2),
            mean_std(&a.parameter_free_reduce, 2),
            a.genotype_agreement.map_or("&ndash;".into(), |j| format!("{j:.3}"))
        );
    }
    h.push_str("</table>\n<p>Stable from epoch: the first search epoch (from 1) from which the derived genotype no longer changed. Parameter-free ops: the share of a cell's 8 edges that are pools or skip connections (DARTS's collapse drives it up). Agreement: the mean pairwise Jaccard index of the cells' (op, input, node) edges across seeds (1 = every seed found the same cell).</p>\n");
    let _ = writeln!(
        h,
        "<h2>Test accuracy of every trained cell</h2>\n{}",
        accuracy_svg(r)
    );
    let traj = trajectories_svg(r);
    if !traj.is_empty() {
        let _ = writeln!(h, "<h2>Alpha trajectories (normal cell)</h2><p>Mean softmax(&alpha;) of each primitive over the normal cell's 14 edges and the arm's seeds, per search epoch.</p>\n{traj}");
    }
    h.push_str("<h2>Runs</h2>\n<table><tr><th class=\"l\">arm</th><th>seed</th><th>cell</th><th>test acc</th><th>search val acc</th><th>gap</th><th>stable from</th><th class=\"l\">genotype</th></tr>\n");
    let opt = |v: Option<f64>| v.map_or("&ndash;".into(), |v| format!("{v:.4}"));
    for x in &r.runs {
        let _ = writeln!(h, "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\"><code>{}</code></td></tr>", esc(&x.arm), x.seed, x.cell.map_or("&ndash;".into(), |c| c.to_string()), x.test_accuracy, opt(x.search_val_accuracy), opt(x.train_val_gap), x.stability_epoch.map_or("&ndash;".into(), |e| e.to_string()), esc(&x.genotype.to_python()));
    }
    h.push_str("</table>\n");
    if !r.incomplete.is_empty() {
        h.push_str("<h2>Not complete (left out of the statistics)</h2>\n<ul>\n");
        for (id, st) in &r.incomplete {
            let _ = writeln!(h, "<li><code>{}</code>: {}</li>", esc(id), esc(st));
        }
        h.push_str("</ul>\n");
    }
    let _ = writeln!(h, "<h2>Study</h2><pre>{}</pre>\n<p>Run time of the runs (sum over processes): {}</p>\n</body></html>", esc(&serde_json::to_string_pretty(&plan.spec).unwrap_or_default()), esc(&cost.to_string()));
    h
}
