//! `darts bench`: the median wall time of one DARTS search step (architecture step on a val batch,
//! then weight step on a train batch) on random data after a warm-up step, and peak memory.
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

pub fn run(a: BenchArgs) -> Result<u8, Failure> {
    if a.steps == 0 {
        return Err(Failure("--steps must be at least 1".into(), 2));
    }
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
    }
    Ok(0)
}

/// The flag value of an option enum (`maxw`, `second`).
fn name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_string())
}
