//! `darts report DIR...`: one self-contained HTML page per run (search or training), written as
//! DIR/report.html: the cells drawn, alphas over time or training curves (inline SVG), the numbers,
//! the exact command and seed. No scripts, no external files: it opens offline in any browser.
use crate::Failure;
use darts::checkpoint::write_atomic;
use darts::render;
use darts::Genotype;
use serde_json::Value;
use std::fmt::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Run directories written by `darts search` or `darts train`.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fmt_num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if v.is_f64() => format!("{f:.4}"),
        _ => esc(v.to_string().trim_matches('"')),
    }
}

/// The inline SVG of `file` in `dir`, if it exists.
fn svg(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .filter(|s| s.trim_start().starts_with("<svg"))
}

pub(crate) fn page(dir: &Path) -> Result<String, Failure> {
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Failure(format!("{}: {e} (not a run directory?)", path.display()), 1))?;
    let s: Value =
        serde_json::from_str(&text).map_err(|e| Failure(format!("{}: {e}", path.display()), 1))?;
    let kind = if s["kind"] == "train" {
        "training"
    } else {
        "search"
    };
    let genotype: Option<Genotype> = serde_json::from_value(s["genotype"].clone()).ok();
    let mut h = String::new();
    let title = format!("darts {kind}: {}", dir.display());
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\n<style>body{{font-family:Helvetica,Arial,sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f4f4f4}}code,pre{{background:#f6f6f6;padding:2px 4px}}pre{{white-space:pre-wrap}}svg{{max-width:100%;height:auto}}</style></head><body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    let command = s["command"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let _ = write!(h, "<p>Status: <b>{}</b>. Seed: <code>{}</code>. Data: <code>{}</code>. Threads: {}. Parameters: {}.</p>\n<p>Command:</p><pre>{}</pre>\n", fmt_num(&s["status"]), fmt_num(&s["seed"]), fmt_num(&s["data"]), fmt_num(&s["threads"]), fmt_num(&s["parameters"]), esc(&command));
    if let Some(g) = &genotype {
        let _ = write!(
            h,
            "<h2>Cells</h2><pre>{}</pre>\n{}\n{}\n",
            esc(&g.to_python()),
            render::cell_svg("normal cell", &g.normal, &g.normal_concat),
            render::cell_svg("reduction cell", &g.reduce, &g.reduce_concat)
        );
    }
    let epochs = s["epochs"].as_array().cloned().unwrap_or_default();
    if let Some(first) = epochs.first().and_then(Value::as_object) {
        // Scalar columns only (a search's epochs also carry their genotype).
        let cols: Vec<&String> = first
            .iter()
            .filter(|(_, v)| !v.is_object() && !v.is_array())
            .map(|(k, _)| k)
            .collect();
        let _ = writeln!(
            h,
            "<h2>Per epoch</h2><table><tr>{}</tr>",
            cols.iter()
                .map(|c| format!("<th>{}</th>", esc(c)))
                .collect::<String>()
        );
        for e in &epochs {
            let _ = writeln!(
                h,
                "<tr>{}</tr>",
                cols.iter()
                    .map(|c| match (c.as_str(), e[c.as_str()].as_u64()) {
                        // Epochs are counted from 1, as the terminal shows them.
                        ("epoch", Some(k)) => format!("<td>{}</td>", k + 1),
                        _ => format!("<td>{}</td>", fmt_num(&e[c.as_str()])),
                    })
                    .collect::<String>()
            );
        }
        h.push_str("</table>\n");
    }
    let charts = if kind == "search" {
        ["alphas.svg"].as_slice()
    } else {
        ["curves.svg"].as_slice()
    };
    for c in charts {
        if let Some(svg) = svg(dir, c) {
            let _ = write!(
                h,
                "<h2>{}</h2>\n{svg}\n",
                if *c == "alphas.svg" {
                    "Mixture weights over the epochs"
                } else {
                    "Training curves"
                }
            );
        }
    }
    if let Ok(ev) = std::fs::read_to_string(dir.join("eval.json")) {
        if let Ok(v) = serde_json::from_str::<Value>(&ev) {
            let e = &v["evaluation"];
            let _ = write!(
                h,
                "<h2>Evaluation</h2><p>Test accuracy {} on {} images.</p><table>",
                fmt_num(&e["accuracy"]),
                fmt_num(&e["images"])
            );
            for (k, row) in e["confusion"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let _ = write!(
                    h,
                    "<tr><th>{k}</th>{}</tr>",
                    row.as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|v| format!("<td>{v}</td>"))
                        .collect::<String>()
                );
            }
            h.push_str("</table>\n");
        }
    }
    let _ = write!(
        h,
        "<h2>Configuration</h2><pre>{}</pre>\n</body></html>\n",
        esc(&serde_json::to_string_pretty(&s["config"]).unwrap_or_default())
    );
    Ok(h)
}

pub fn run(a: ReportArgs) -> Result<u8, Failure> {
    for dir in &a.dirs {
        let html = page(dir)?;
        let out = dir.join("report.html");
        write_atomic(&out, html.as_bytes())?;
        println!("{}", out.display());
    }
    Ok(0)
}
