//! Looking inside a tape: per-node summaries and a Graphviz DOT drawing.
use crate::Tape;
use std::fmt::Write;

/// Summary statistics of a buffer (computed in f64).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Smallest value.
    pub min: f32,
    /// Largest value.
    pub max: f32,
    /// Mean value.
    pub mean: f32,
    /// Euclidean norm.
    pub l2: f32,
    /// Count of NaN and infinite values.
    pub non_finite: usize,
}

impl Stats {
    /// The statistics of `data` (zeros for an empty slice).
    pub fn of(data: &[f32]) -> Stats {
        let (mut min, mut max, mut sum, mut sq, mut bad) =
            (f32::INFINITY, f32::NEG_INFINITY, 0.0f64, 0.0f64, 0);
        for &v in data {
            if !v.is_finite() {
                bad += 1;
                continue;
            }
            min = min.min(v);
            max = max.max(v);
            sum += v as f64;
            sq += v as f64 * v as f64;
        }
        let n = (data.len() - bad).max(1) as f64;
        Stats {
            min,
            max,
            mean: (sum / n) as f32,
            l2: sq.sqrt() as f32,
            non_finite: bad,
        }
    }
}

/// One node as [`Tape::nodes`] reports it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// Position on the tape (the node's `Var` index).
    pub index: usize,
    /// The op that made it (`leaf` for inputs and parameters).
    pub op: &'static str,
    /// Shape of its value.
    pub shape: Vec<usize>,
    /// Tape indices of its inputs.
    pub inputs: Vec<usize>,
    /// The scope it was recorded in (`cells.3._ops.7`), if any.
    pub scope: Option<String>,
    /// Its name, for named leaves (parameters).
    pub name: Option<String>,
    /// Whether a gradient flows to it.
    pub requires_grad: bool,
    /// Statistics of its value.
    pub value: Stats,
    /// The gradient's statistics: recorded during backward (see [`Tape::set_record_grad_stats`]) or,
    /// for nodes that kept their gradient, computed from it.
    pub grad: Option<Stats>,
}

impl Tape {
    /// Every node in execution order, with value and gradient statistics.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        (0..self.len())
            .map(|i| {
                let (node, value) = (self.node(i), self.raw_value(i));
                NodeInfo {
                    index: i,
                    op: node.op,
                    shape: value.dims().to_vec(),
                    inputs: node.inputs.iter().map(|v| v.index()).collect(),
                    scope: node.scope.clone(),
                    name: node.name.clone(),
                    requires_grad: node.requires_grad,
                    value: Stats::of(value.data()),
                    grad: self
                        .raw_grad(i)
                        .map(|g| Stats::of(g.data()))
                        .or(node.grad_stats),
                }
            })
            .collect()
    }

    /// A plain-text table of [`Tape::nodes`], one line per node.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{:>5}  {:<14} {:<18} {:<28} {:>11} {:>11}\n",
            "node", "op", "shape", "scope/name", "|value|", "|grad|"
        );
        for n in self.nodes() {
            let label = n.name.clone().or(n.scope.clone()).unwrap_or_default();
            let grad = n.grad.map_or("-".to_string(), |g| format!("{:.4e}", g.l2));
            let _ = writeln!(
                s,
                "{:>5}  {:<14} {:<18} {:<28} {:>11.4e} {:>11}",
                n.index,
                n.op,
                format!("{:?}", n.shape),
                label,
                n.value.l2,
                grad
            );
        }
        s
    }

    /// The tape as a Graphviz digraph: leaves as ellipses (parameters named), ops as boxes labelled
    /// with op, shape and scope; nodes of one scope grouped in a cluster. Edges run input -> output.
    pub fn to_dot(&self) -> String {
        let mut s = String::from(
            "digraph tape {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n",
        );
        let nodes = self.nodes();
        let mut clusters: Vec<(String, Vec<usize>)> = Vec::new();
        for n in &nodes {
            let shape = if n.op == "leaf" { "ellipse" } else { "box" };
            let title = n.name.clone().unwrap_or_else(|| n.op.to_string());
            let grad = n
                .grad
                .map_or(String::new(), |g| format!("\\n|grad| {:.3e}", g.l2));
            let fill = if n.requires_grad {
                "#dbe9f6"
            } else {
                "#eeeeee"
            };
            let _ = writeln!(s, "  n{} [shape={shape}, style=filled, fillcolor=\"{fill}\", label=\"#{} {}\\n{:?}{grad}\"];", n.index, n.index, escape(&title), n.shape);
            if let Some(scope) = &n.scope {
                match clusters.iter_mut().find(|(name, _)| name == scope) {
                    Some((_, members)) => members.push(n.index),
                    None => clusters.push((scope.clone(), vec![n.index])),
                }
            }
        }
        for (k, (scope, members)) in clusters.iter().enumerate() {
            let _ = write!(
                s,
                "  subgraph cluster_{k} {{ label=\"{}\"; style=dashed;",
                escape(scope)
            );
            for m in members {
                let _ = write!(s, " n{m};");
            }
            s.push_str(" }\n");
        }
        for n in &nodes {
            for i in &n.inputs {
                let _ = writeln!(s, "  n{i} -> n{};", n.index);
            }
        }
        s.push_str("}\n");
        s
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
