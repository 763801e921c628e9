//! Pictures of a search: a derived cell as Graphviz DOT and as a self-drawn SVG (no Graphviz needed),
//! and every edge's mixture weights over the epochs as an SVG chart grid and a CSV table.
use crate::primitives::{edge_endpoints, Primitive, EDGES};
use crate::search::EpochRecord;
use crate::Weighting;
use std::fmt::Write;

fn node_name(i: usize) -> String {
    match i {
        0 => "c_{k-2}".into(),
        1 => "c_{k-1}".into(),
        n => (n - 2).to_string(),
    }
}

/// A cell (one half of a genotype) in the reference `plot` layout, as DOT.
pub fn cell_dot(gene: &[(Primitive, usize)], concat: &[usize]) -> String {
    let mut s = String::from("digraph cell {\n  rankdir=LR;\n  node [style=filled, shape=rect, fontname=\"Helvetica\", align=center, height=0.5, width=0.5, penwidth=2];\n  edge [fontsize=14, fontname=\"Helvetica\"];\n");
    let _ = writeln!(
        s,
        "  \"c_{{k-2}}\" [fillcolor=darkseagreen2];\n  \"c_{{k-1}}\" [fillcolor=darkseagreen2];"
    );
    for n in 0..gene.len() / 2 {
        let _ = writeln!(s, "  \"{n}\" [fillcolor=lightblue];");
    }
    for (p, (op, input)) in gene.iter().enumerate() {
        let _ = writeln!(
            s,
            "  \"{}\" -> \"{}\" [label=\"{op}\", fillcolor=gray];",
            node_name(*input),
            p / 2
        );
    }
    let _ = writeln!(s, "  \"c_{{k}}\" [fillcolor=palegoldenrod];");
    for &c in concat {
        let _ = writeln!(s, "  \"{}\" -> \"c_{{k}}\" [fillcolor=gray];", node_name(c));
    }
    s.push_str("}\n");
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The same cell drawn directly as SVG: inputs on the left, intermediate nodes left to right, the
/// output on the right; each edge a labelled curve.
pub fn cell_svg(title: &str, gene: &[(Primitive, usize)], concat: &[usize]) -> String {
    let nodes = gene.len() / 2;
    let (w, h) = (220 + 170 * (nodes + 1), 360.0f64);
    let pos = |i: usize| -> (f64, f64) {
        match i {
            0 => (60.0, 110.0),
            1 => (60.0, 250.0),
            n => (
                220.0 + 170.0 * (n - 2) as f64,
                if (n - 2) % 2 == 0 { 120.0 } else { 240.0 },
            ),
        }
    };
    let out = (220.0 + 170.0 * nodes as f64, 180.0);
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"Helvetica, Arial, sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"22\" font-size=\"16\" font-weight=\"bold\">{}</text>\n<defs><marker id=\"a\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>\n", esc(title));
    let curve = |s: &mut String,
                 (x1, y1): (f64, f64),
                 (x2, y2): (f64, f64),
                 label: &str,
                 bend: f64| {
        let (mx, my) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0 + bend);
        let _ = writeln!(s, "<path d=\"M{:.1},{:.1} Q{mx:.1},{my:.1} {:.1},{:.1}\" fill=\"none\" stroke=\"#555\" stroke-width=\"1.5\" marker-end=\"url(#a)\"/>", x1 + 28.0, y1, x2 - 28.0, y2);
        if !label.is_empty() {
            let _ = writeln!(s, "<text x=\"{mx:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#333\">{}</text>", (y1 + y2) / 2.0 + bend / 2.0 - 4.0, esc(label));
        }
    };
    for (p, (op, input)) in gene.iter().enumerate() {
        let bend = if p % 2 == 0 { -30.0 } else { 30.0 };
        curve(&mut s, pos(*input), pos(p / 2 + 2), op.name(), bend);
    }
    for &c in concat {
        curve(&mut s, pos(c), out, "", 0.0);
    }
    let boxed = |s: &mut String, (x, y): (f64, f64), label: &str, fill: &str| {
        let _ = writeln!(s, "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"56\" height=\"30\" rx=\"4\" fill=\"{fill}\" stroke=\"#333\" stroke-width=\"2\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"13\" text-anchor=\"middle\">{}</text>", x - 28.0, y - 15.0, y + 5.0, esc(label));
    };
    boxed(&mut s, pos(0), "c_{k-2}", "#c1e1c1");
    boxed(&mut s, pos(1), "c_{k-1}", "#c1e1c1");
    for n in 0..nodes {
        boxed(&mut s, pos(n + 2), &n.to_string(), "#add8e6");
    }
    boxed(&mut s, out, "c_{k}", "#eee8aa");
    s.push_str("</svg>\n");
    s
}

/// Mixture weights of one alpha matrix (as the search's weighting computes them), `[14][8]`.
pub fn mixture_weights(alphas: &[f32], weighting: Weighting) -> Vec<Vec<f32>> {
    alphas
        .chunks(Primitive::ALL.len())
        .map(|row| {
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let e: Vec<f32> = row.iter().map(|v| (v - m).exp()).collect();
            let sum: f32 = e.iter().sum();
            let p: Vec<f32> = e.iter().map(|v| v / sum).collect();
            let pmax = p.iter().fold(0.0f32, |a, &b| a.max(b));
            match weighting {
                Weighting::Softmax => p,
                Weighting::Maxw => p.iter().map(|v| 1.0 - pmax + v).collect(),
            }
        })
        .collect()
}

/// `epoch,cell,edge,from,to,primitive,alpha,weight` rows for every epoch in `history`.
pub fn alphas_csv(history: &[EpochRecord], weighting: Weighting) -> String {
    let mut s = String::from("epoch,cell,edge,from,to,primitive,alpha,weight\n");
    let ends = edge_endpoints();
    for r in history {
        for (cell, alphas) in [("normal", &r.alphas_normal), ("reduce", &r.alphas_reduce)] {
            let w = mixture_weights(alphas, weighting);
            for e in 0..EDGES {
                for (k, prim) in Primitive::ALL.iter().enumerate() {
                    let _ = writeln!(
                        s,
                        "{},{cell},{e},{},{},{prim},{},{}",
                        r.epoch,
                        ends[e].1,
                        ends[e].0 + 2,
                        alphas[e * 8 + k],
                        w[e][k]
                    );
                }
            }
        }
    }
    s
}

/// One colour per primitive.
pub const COLOURS: [&str; 8] = [
    "#999999", "#1f77b4", "#17becf", "#2ca02c", "#d62728", "#ff7f0e", "#9467bd", "#8c564b",
];

/// A grid of small charts, one per (cell type, edge), each with one line per primitive: the mixture
/// weight over the epochs.
pub fn alphas_svg(history: &[EpochRecord], weighting: Weighting) -> String {
    let (cw, ch, pad) = (150.0f64, 90.0f64, 28.0f64);
    let cols = 7usize;
    let rows_per_cell = EDGES.div_ceil(cols);
    let width = pad + cols as f64 * (cw + pad);
    let height = 70.0 + 2.0 * (rows_per_cell as f64 * (ch + pad) + 30.0);
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"Helvetica, Arial, sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{pad}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">Mixture weights ({weighting:?}) per edge over {} epoch(s)</text>\n", history.len());
    for (k, prim) in Primitive::ALL.iter().enumerate() {
        let _ = writeln!(s, "<rect x=\"{:.0}\" y=\"34\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{:.0}\" y=\"45\" font-size=\"11\">{prim}</text>", pad + k as f64 * 120.0, COLOURS[k], pad + k as f64 * 120.0 + 16.0);
    }
    let ends = edge_endpoints();
    for (ci, cell) in ["normal", "reduce"].iter().enumerate() {
        let top = 70.0 + ci as f64 * (rows_per_cell as f64 * (ch + pad) + 30.0);
        let _ = writeln!(s, "<text x=\"{pad}\" y=\"{:.0}\" font-size=\"14\" font-weight=\"bold\">{cell} cell</text>", top + 12.0);
        let series: Vec<Vec<Vec<f32>>> = history
            .iter()
            .map(|r| {
                mixture_weights(
                    if ci == 0 {
                        &r.alphas_normal
                    } else {
                        &r.alphas_reduce
                    },
                    weighting,
                )
            })
            .collect();
        let (lo, hi) = series
            .iter()
            .flatten()
            .flatten()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let span = (hi - lo).max(1e-6) as f64;
        for e in 0..EDGES {
            let (x0, y0) = (
                pad + (e % cols) as f64 * (cw + pad),
                top + 24.0 + (e / cols) as f64 * (ch + pad),
            );
            let _ = writeln!(s, "<rect x=\"{x0:.0}\" y=\"{y0:.0}\" width=\"{cw}\" height=\"{ch}\" fill=\"none\" stroke=\"#ccc\"/><text x=\"{x0:.0}\" y=\"{:.0}\" font-size=\"10\">edge {e}: {} -> {}</text>", y0 - 3.0, node_name(ends[e].1), ends[e].0);
            for k in 0..Primitive::ALL.len() {
                let pts: Vec<String> = series
                    .iter()
                    .enumerate()
                    .map(|(t, w)| {
                        let x = x0
                            + if series.len() > 1 {
                                t as f64 / (series.len() - 1) as f64 * cw
                            } else {
                                cw / 2.0
                            };
                        let y = y0 + ch - ((w[e][k] - lo) as f64 / span) * ch;
                        format!("{x:.1},{y:.1}")
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.3\"/>",
                    pts.join(" "),
                    COLOURS[k]
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

/// One chart of [`curves_svg`]: its title and two series (name, a value per epoch, colour).
type Chart<'a> = (&'a str, [(&'a str, Vec<Option<f32>>, &'a str); 2]);

/// Loss and accuracy per epoch (train and, where present, test) as two side-by-side SVG charts.
pub fn curves_svg(history: &[crate::train::TrainEpoch]) -> String {
    let (cw, ch, pad) = (420.0f64, 260.0f64, 50.0f64);
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"Helvetica, Arial, sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n", w = 2.0 * (cw + pad) + pad, h = ch + 2.0 * pad);
    let charts: [Chart; 2] = [
        (
            "loss",
            [
                (
                    "train",
                    history.iter().map(|r| Some(r.train_loss)).collect(),
                    COLOURS[1],
                ),
                (
                    "test",
                    history.iter().map(|r| r.test_loss).collect(),
                    COLOURS[4],
                ),
            ],
        ),
        (
            "accuracy",
            [
                (
                    "train",
                    history.iter().map(|r| Some(r.train_acc)).collect(),
                    COLOURS[1],
                ),
                (
                    "test",
                    history.iter().map(|r| r.test_acc).collect(),
                    COLOURS[4],
                ),
            ],
        ),
    ];
    for (ci, (title, series)) in charts.iter().enumerate() {
        let x0 = pad + ci as f64 * (cw + pad);
        let vals: Vec<f32> = series
            .iter()
            .flat_map(|(_, v, _)| v.iter().flatten().copied())
            .filter(|v| v.is_finite())
            .collect();
        let (lo, hi) = vals
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let (lo, hi) = if vals.is_empty() {
            (0.0, 1.0)
        } else {
            (lo.min(0.0), hi.max(lo + 1e-6))
        };
        let _ = writeln!(s, "<rect x=\"{x0}\" y=\"{pad}\" width=\"{cw}\" height=\"{ch}\" fill=\"none\" stroke=\"#999\"/><text x=\"{x0}\" y=\"{}\" font-size=\"14\" font-weight=\"bold\">{title} per epoch</text>", pad - 10.0);
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{hi:.3}</text><text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{lo:.3}</text>", x0 - 4.0, pad + 8.0, x0 - 4.0, pad + ch);
        for (si, (name, v, colour)) in series.iter().enumerate() {
            let pts: Vec<String> = v
                .iter()
                .enumerate()
                .filter_map(|(e, y)| {
                    let y = (*y)?;
                    let x = x0
                        + if v.len() > 1 {
                            e as f64 / (v.len() - 1) as f64 * cw
                        } else {
                            cw / 2.0
                        };
                    Some(format!(
                        "{x:.1},{:.1}",
                        pad + ch - (y - lo) as f64 / (hi - lo) as f64 * ch
                    ))
                })
                .collect();
            let _ = writeln!(s, "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/><text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"{colour}\">{name}</text>", pts.join(" "), x0 + cw - 60.0, pad + 16.0 + 14.0 * si as f64);
        }
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">epoch (1..{})</text>",
            x0 + cw / 2.0,
            pad + ch + 20.0,
            history.len()
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Genotype;

    #[test]
    fn dot_and_svg_name_every_edge() {
        let g = Genotype::from_python("Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ('dil_conv_3x3', 2), ('max_pool_3x3', 0)], normal_concat=[2, 3], reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])").unwrap();
        let dot = cell_dot(&g.normal, &g.normal_concat);
        assert!(
            dot.contains("\"c_{k-2}\" -> \"0\" [label=\"sep_conv_3x3\"")
                && dot.contains("\"0\" -> \"1\" [label=\"dil_conv_3x3\"")
        );
        let svg = cell_svg("normal", &g.normal, &g.normal_concat);
        assert!(
            svg.starts_with("<svg")
                && svg.contains("dil_conv_3x3")
                && svg.matches("marker-end").count() == 4 + 2
        );
    }

    #[test]
    fn maxw_weights_peak_at_one() {
        let w = mixture_weights(&[0.1, 0.5, -0.2, 0.0, 0.0, 0.0, 0.0, 0.0], Weighting::Maxw);
        assert_eq!(w[0][1], 1.0);
        let s: f32 = mixture_weights(
            &[0.1, 0.5, -0.2, 0.0, 0.0, 0.0, 0.0, 0.0],
            Weighting::Softmax,
        )[0]
        .iter()
        .sum();
        assert!((s - 1.0).abs() < 1e-6);
        // Known values: alpha ln 3 against seven zeros is softmax 3/10 and 1/10 each, and Max-W
        // 1 - 3/10 + p.
        let row = [3f32.ln(), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let p = &mixture_weights(&row, Weighting::Softmax)[0];
        assert!(
            (p[0] - 0.3).abs() < 1e-6 && (p[7] - 0.1).abs() < 1e-6,
            "{p:?}"
        );
        let m = &mixture_weights(&row, Weighting::Maxw)[0];
        assert!(
            (m[0] - 1.0).abs() < 1e-6 && (m[7] - 0.8).abs() < 1e-6,
            "{m:?}"
        );
    }

    /// One row per epoch, cell, edge and primitive: the edge's endpoints, the raw alpha and its
    /// mixture weight.
    #[test]
    fn alphas_csv_has_every_edge_and_primitive() {
        let mut normal = vec![0.0f32; EDGES * 8];
        normal[8 + 3] = 3f32.ln(); // edge 1, primitive 3
        let record = crate::search::EpochRecord {
            epoch: 4,
            lr: 0.0,
            train_loss: 0.0,
            train_acc: 0.0,
            val_loss: 0.0,
            val_acc: 0.0,
            alphas_normal: normal,
            alphas_reduce: vec![0.0; EDGES * 8],
            genotype: Genotype::builtin("DARTS_V2").unwrap(),
            seconds: 0.0,
        };
        let csv = alphas_csv(&[record], Weighting::Softmax);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "epoch,cell,edge,from,to,primitive,alpha,weight");
        assert_eq!(lines.len(), 1 + 2 * EDGES * 8);
        let mut row = [0.0f32; 8];
        row[3] = 3f32.ln();
        let w3 = mixture_weights(&row, Weighting::Softmax)[0][3]; // 0.3
                                                                  // Edge 1 runs from c_{k-1} (input 1) to node 2.
        assert_eq!(
            lines[1 + 8 + 3],
            format!("4,normal,1,1,2,{},{},{w3}", Primitive::ALL[3], row[3])
        );
        assert!(
            lines[1 + EDGES * 8].starts_with("4,reduce,0,0,2,"),
            "{}",
            lines[1 + EDGES * 8]
        );
    }
}
