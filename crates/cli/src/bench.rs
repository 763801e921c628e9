//! `darts bench`: the median wall time of one DARTS search step (architecture step on a val batch,
//! then weight step on a train batch) on random data after a warm-up step, and peak memory.
//! `--roofline` also profiles the timed steps per op family and sets each family's time against
//! the lower bound this machine's measured sgemm and memcpy peaks give its work.
use crate::Failure;
use darts::data::Dataset;
use darts::{Order, Search, SearchConfig, Weighting};
use serde_json::json;
use std::time::Instant;
use tensor::{Rng, Tensor};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// tiny: C 8, 5 layers, batch 16; standard: C 16, 8 layers, batch 64 (DARTS's search). 32x32, 10 classes.
    #[arg(long, value_parser = ["tiny", "standard"], default_value = "tiny")]
    preset: String,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[arg(long, value_enum, default_value_t = Weighting::Maxw)]
    weighting: Weighting,
    #[arg(long, value_enum, default_value_t = Order::First)]
    order: Order,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Per op family: time, FLOPs, bytes, achieved rates and the bound from this machine's peaks
    /// (with --json, also each op's forward and backward seconds per step).
    #[arg(long)]
    roofline: bool,
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

/// Resets this process's peak resident memory (`VmHWM`) to its present size (Linux
/// `clear_refs` 5); false where that is not possible.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

pub fn run(a: BenchArgs) -> Result<u8, Failure> {
    if a.steps == 0 {
        return Err(Failure("--steps must be at least 1".into(), 2));
    }
    // The peaks move with the minute on a shared machine: with --roofline they are measured
    // before and after the steps and the better of each rate kept (the bound the step is set
    // against is then the lowest either measurement gives). The first measurement's buffers
    // must not count in the reported peak memory: it runs only where that peak can be reset.
    let before = (a.roofline && reset_peak_rss())
        .then(|| {
            let p = kernels::peak::measure(3);
            reset_peak_rss().then_some(p)
        })
        .flatten();
    let (channels, layers, batch) = if a.preset == "tiny" {
        (8, 5, 16)
    } else {
        (16, 8, 64)
    };
    // Enough images that the timed steps never reach the end of an epoch (no evaluation pass).
    let n = 2 * batch * (a.steps + 2);
    let mut rng = Rng::new(7);
    let x = Tensor::randn([n, 3, 32, 32], 1.0, &mut rng);
    let labels: Vec<u32> = (0..n).map(|_| rng.below(10) as u32).collect();
    let data = Dataset::from_tensors(&x, labels, 10)?;
    let cfg = SearchConfig {
        channels,
        layers,
        batch,
        epochs: 1,
        weighting: a.weighting,
        order: a.order,
        augment: false,
        ..Default::default()
    };
    let mut search = Search::new(cfg, 10, 3)?;
    search.step(&data)?; // warm-up: buffers allocated, pages touched
    search.set_profiling(a.roofline);
    let mut times: Vec<f64> = (0..a.steps)
        .map(|_| {
            let t = Instant::now();
            search.step(&data).map(|_| t.elapsed().as_secs_f64())
        })
        .collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    let median = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };
    let rss = peak_rss();
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let roofline = a.roofline.then(|| {
        let after = kernels::peak::measure(3);
        let measured: Vec<_> = before.into_iter().chain([after]).collect();
        Roofline::new(&search.take_profile(), a.steps, measured)
    });
    let j = json!({
        "engine": "darts-maxw",
        "preset": a.preset,
        "weighting": a.weighting,
        "order": a.order,
        "threads": rayon::current_num_threads(),
        "steps": a.steps,
        "median_step_seconds": median,
        "step_seconds": times,
        "peak_rss_bytes": rss,
        "parameters": search.params().numel(),
        "roofline": roofline.as_ref().map(|r| r.to_json(median, mean)),
    });
    if a.json {
        println!("{j}");
    } else {
        println!(
            "{} preset, {} weighting, {} order, {} threads: median step {:.3} s over {} steps (min {:.3}, max {:.3}); peak RSS {}",
            a.preset,
            name(a.weighting),
            name(a.order),
            rayon::current_num_threads(),
            median,
            a.steps,
            times[0],
            times[times.len() - 1],
            rss.map_or("unknown".into(), |b| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64))
        );
        if let Some(r) = &roofline {
            print!("{}", r.table(median, mean));
        }
    }
    Ok(0)
}

/// The op families of a search step, and which op names belong to each.
const FAMILIES: [(&str, &[&str]); 7] = [
    ("dense conv", &["conv2d", "conv2d_bn", "factorized_reduce"]),
    // The sep and dil convs' blocks: depthwise, 1x1 conv and BN fused into one node.
    (
        "depthwise + 1x1",
        &["depthwise_conv2d", "separable_conv", "separable_conv_bn"],
    ),
    ("pools", &["max_pool2d", "avg_pool2d"]),
    // Stand-alone BNs, and the mixed ops with their edges' BNs folded in.
    ("BN + mixed op", &["batch_norm", "weighted_sum_bn"]),
    ("Max-W", &["maxw", "softmax"]),
    ("optimizer", &["sgd_step", "adam_step"]),
    ("elementwise", &[]), // every other op: adds, ReLU, copies, layout, loss
];

/// One family's totals per step.
#[derive(Default)]
struct Family {
    seconds: f64,
    flops: f64,
    bytes: f64,
    /// Sum over its ops of max(flops / compute peak, bytes / bandwidth peak).
    bound: f64,
}

/// One op at one shape: calls, forward and backward seconds, per step.
struct OpShape {
    op: &'static str,
    shape: String,
    calls: f64,
    forward: f64,
    backward: f64,
}

/// How many of the slowest op shapes the table lists (the JSON has them all).
const SHAPES_LISTED: usize = 12;

/// A step's time per op family against the bounds of this machine's peaks, and per op.
struct Roofline {
    families: Vec<(&'static str, Family)>,
    /// Every op's forward and backward seconds per step, in op name order (JSON only: to find,
    /// say, which ops gain least from a second thread).
    ops: Vec<(&'static str, f64, f64)>,
    /// Every op at every shape it ran at ([`autograd::OpProfile::shapes`]), slowest first.
    shapes: Vec<OpShape>,
    /// The better of each rate over `measured`.
    peaks: kernels::peak::Peaks,
    /// The peaks as measured: before the steps (where possible) and after them.
    measured: Vec<kernels::peak::Peaks>,
}

impl Roofline {
    fn new(
        profile: &autograd::Profile,
        steps: usize,
        measured: Vec<kernels::peak::Peaks>,
    ) -> Roofline {
        let peaks = measured[1..]
            .iter()
            .fold(measured[0], |best, p| best.best(p));
        let (gflops, gbs) = (peaks.gflops() * 1e9, peaks.gbs() * 1e9);
        let mut families: Vec<(&str, Family)> = FAMILIES
            .iter()
            .map(|(n, _)| (*n, Family::default()))
            .collect();
        let per_step = 1.0 / steps as f64;
        let ops = profile
            .iter()
            .map(|(op, p)| {
                let (fwd, bwd) = (p.forward_seconds, p.backward_seconds);
                (*op, fwd * per_step, bwd * per_step)
            })
            .collect();
        let mut shapes: Vec<OpShape> = profile
            .iter()
            .flat_map(|(op, p)| {
                p.shapes.iter().map(|(shape, s)| OpShape {
                    op,
                    shape: shape.clone(),
                    calls: s.calls as f64 * per_step,
                    forward: s.forward_seconds * per_step,
                    backward: s.backward_seconds * per_step,
                })
            })
            .collect();
        shapes.sort_by(|a, b| (b.forward + b.backward).total_cmp(&(a.forward + a.backward)));
        for (op, p) in profile {
            let at = FAMILIES
                .iter()
                .position(|(_, ops)| ops.contains(op))
                .unwrap_or(FAMILIES.len() - 1);
            let f = &mut families[at].1;
            let (flops, bytes) = (
                p.forward.flops + p.backward.flops,
                p.forward.bytes + p.backward.bytes,
            );
            f.seconds += (p.forward_seconds + p.backward_seconds) * per_step;
            f.flops += flops * per_step;
            f.bytes += bytes * per_step;
            // Forward and backward are separate passes: each bounded on its own.
            let bound = |w: autograd::Work| (w.flops / gflops).max(w.bytes / gbs);
            f.bound += (bound(p.forward) + bound(p.backward)) * per_step;
        }
        Roofline {
            families,
            ops,
            shapes,
            peaks,
            measured,
        }
    }

    fn bound(&self) -> f64 {
        self.families.iter().map(|(_, f)| f.bound).sum()
    }

    /// The table; family times are per step over all timed steps, so their shares are of the
    /// `mean` step; X/Y sets the `median` step (the figure `darts bench` reports) against Y.
    fn table(&self, median: f64, mean: f64) -> String {
        let p = &self.peaks;
        let each = |f: fn(&kernels::peak::Peaks) -> f64| {
            let v: Vec<String> = self
                .measured
                .iter()
                .map(|m| format!("{:.1}", f(m)))
                .collect();
            v.join(" / ")
        };
        let mut s = format!(
            "\nthis machine: sgemm {:.1} GFLOP/s (1 thread {:.1}), memcpy {:.1} GB/s (1 thread {:.1}), {} threads\n",
            p.gflops(), p.gflops_1, p.gbs(), p.gbs_1, p.threads
        );
        s += &format!(
            "(the better of {} measurements, {}: sgemm {} GFLOP/s, memcpy {} GB/s)\n\n",
            self.measured.len(),
            if self.measured.len() > 1 {
                "before / after the steps"
            } else {
                "after the steps"
            },
            each(kernels::peak::Peaks::gflops),
            each(kernels::peak::Peaks::gbs),
        );
        s += "| family | time s | of mean step | GFLOP | GB | GFLOP/s | GB/s | bound s | time / bound |\n";
        s += "|---|---|---|---|---|---|---|---|---|\n";
        for (name, f) in &self.families {
            s += &format!(
                "| {name} | {:.4} | {:.1} % | {:.3} | {:.3} | {:.1} | {:.1} | {:.4} | {:.1} |\n",
                f.seconds,
                100.0 * f.seconds / mean,
                f.flops / 1e9,
                f.bytes / 1e9,
                f.flops / f.seconds.max(1e-12) / 1e9,
                f.bytes / f.seconds.max(1e-12) / 1e9,
                f.bound,
                f.seconds / f.bound.max(1e-12),
            );
        }
        s += &format!(
            "\nthe {SHAPES_LISTED} slowest op shapes (first input -> output), per step:\n\n"
        );
        s += "| op | shape | calls | forward s | backward s | of mean step |\n";
        s += "|---|---|---|---|---|---|\n";
        for o in self.shapes.iter().take(SHAPES_LISTED) {
            s += &format!(
                "| {} | {} | {} | {:.4} | {:.4} | {:.1} % |\n",
                o.op,
                o.shape,
                o.calls,
                o.forward,
                o.backward,
                100.0 * (o.forward + o.backward) / mean,
            );
        }
        let profiled: f64 = self.families.iter().map(|(_, f)| f.seconds).sum();
        s += &format!(
            "\nstep {median:.3} s (median; mean {mean:.3} s, of which ops and optimizer {profiled:.3} s), bound {:.3} s, X/Y {:.2}\n",
            self.bound(),
            median / self.bound()
        );
        s
    }

    fn to_json(&self, median: f64, mean: f64) -> serde_json::Value {
        let families: serde_json::Map<String, serde_json::Value> = self
            .families
            .iter()
            .map(|(n, f)| {
                let v = json!({"seconds": f.seconds, "flops": f.flops, "bytes": f.bytes, "bound_seconds": f.bound});
                (n.to_string(), v)
            })
            .collect();
        let ops: serde_json::Map<String, serde_json::Value> = self
            .ops
            .iter()
            .map(|&(n, fwd, bwd)| {
                let v = json!({"forward_seconds": fwd, "backward_seconds": bwd});
                (n.to_string(), v)
            })
            .collect();
        let shapes: Vec<serde_json::Value> = self
            .shapes
            .iter()
            .map(|o| {
                json!({"op": o.op, "shape": o.shape, "calls": o.calls,
                    "forward_seconds": o.forward, "backward_seconds": o.backward})
            })
            .collect();
        let measured: Vec<serde_json::Value> = self
            .measured
            .iter()
            .map(|m| json!({"gflops": m.gflops(), "gbs": m.gbs()}))
            .collect();
        json!({
            "peak_gflops": self.peaks.gflops(),
            "peak_gbs": self.peaks.gbs(),
            "peaks_measured": measured,
            "families": families,
            "ops": ops,
            "shapes": shapes,
            "step_seconds": median,
            "mean_step_seconds": mean,
            "bound_seconds": self.bound(),
            "step_over_bound": median / self.bound(),
        })
    }
}

/// The flag value of an option enum (`maxw`, `second`).
fn name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_string())
}
