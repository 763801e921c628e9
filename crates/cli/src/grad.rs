//! `darts grad`: forward and backward of a supernet checkpoint on one batch, in training mode.
use crate::Failure;
use autograd::Tape;
use darts::checkpoint::{load_supernet, save_tensors, TensorFile};
use darts::pass::{pass, Model, Want};
use darts::Weighting;
use std::path::{Path, PathBuf};
use tensor::Tensor;

#[derive(clap::Args)]
pub struct GradArgs {
    /// Supernet checkpoint (safetensors with the DARTS reference names, alphas included).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Batch file: safetensors with `x` f32 [N, C, H, W] and `y` i64 or i32 [N].
    #[arg(long)]
    batch: PathBuf,
    /// Where to write the gradients (safetensors, same names as the checkpoint's parameters).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = Weighting::Maxw)]
    weighting: Weighting,
    /// Print a table of per-parameter gradient norms (on stderr).
    #[arg(long)]
    stats: bool,
    /// Write the tape as Graphviz DOT to this file.
    #[arg(long)]
    dot: Option<PathBuf>,
    /// Worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

fn load_batch(
    path: &Path,
    classes: usize,
    in_channels: usize,
) -> Result<(Tensor, Vec<u32>), Failure> {
    let bad = |why: String| Failure(format!("batch {}: {why}", path.display()), 1);
    let mut f = TensorFile::open(path)?;
    let x = f
        .f32s
        .remove("x")
        .ok_or_else(|| bad("missing f32 tensor 'x' [N, C, H, W]".into()))?;
    let y = f
        .i64s
        .remove("y")
        .ok_or_else(|| bad("missing i64 or i32 tensor 'y' [N]".into()))?;
    check_batch(x, &y, classes, in_channels).map_err(bad)
}

/// Checks a batch of images `x` [N, C, H, W] with labels `y` [N] for a model of `classes` classes
/// and `in_channels`-channel images; returns the labels as class indices.
pub fn check_batch(
    x: Tensor,
    y: &[i64],
    classes: usize,
    in_channels: usize,
) -> Result<(Tensor, Vec<u32>), String> {
    let [n, c, h, w] = x.shape().nchw("x").map_err(|e| e.to_string())?;
    if y.len() != n {
        return Err(format!("{} labels for {n} images", y.len()));
    }
    if c != in_channels {
        return Err(format!(
            "images have {c} channels, the checkpoint's stem expects {in_channels}"
        ));
    }
    if h % 4 != 0 || w % 4 != 0 || n < 2 {
        return Err(format!(
            "need at least 2 images with sides divisible by 4, got {n} of {h}x{w}"
        ));
    }
    if let Some((i, l)) = y
        .iter()
        .enumerate()
        .find(|(_, &l)| l < 0 || l as usize >= classes)
    {
        return Err(format!(
            "label {l} at index {i} is out of range for {classes} classes"
        ));
    }
    Ok((x, y.iter().map(|&l| l as u32).collect()))
}

/// Refuses an `--out` that is one of the input files: writing it would destroy the input.
pub fn refuse_overwrite(out: &PathBuf, inputs: &[(&str, &PathBuf)]) -> Result<(), Failure> {
    let same = |p: &PathBuf| match (std::fs::canonicalize(p), std::fs::canonicalize(out)) {
        (Ok(x), Ok(y)) => x == y,
        _ => p == out,
    };
    for (flag, p) in inputs {
        if same(p) {
            return Err(Failure(format!("--out {} is the {flag} file; the output would overwrite it (choose another --out)", out.display()), 2));
        }
    }
    Ok(())
}

pub fn run(a: GradArgs) -> Result<u8, Failure> {
    refuse_overwrite(
        &a.out,
        &[("--checkpoint", &a.checkpoint), ("--batch", &a.batch)],
    )?;
    let (net, params, mut bns, alphas) = load_supernet(&a.checkpoint)?;
    let (x, y) = load_batch(&a.batch, net.config.classes, net.config.in_channels)?;
    let mut tape = Tape::new();
    tape.set_record_grad_stats(true);
    let m = Model {
        net: &net,
        names: &params.names,
        weights: &params.values,
        alphas: &alphas,
        weighting: a.weighting,
    };
    let out = pass(
        &mut tape,
        &m,
        &mut bns,
        &x,
        &y,
        Want {
            weights: true,
            alphas: true,
        },
        true,
    )?;
    if !out.loss.is_finite() {
        return Err(Failure(
            format!(
                "the loss is {} on this batch; no gradients written",
                out.loss
            ),
            1,
        ));
    }
    let names = params
        .names
        .iter()
        .cloned()
        .chain(["alphas_normal".to_string(), "alphas_reduce".to_string()]);
    let grads: Vec<(String, Tensor)> = names
        .zip(out.weight_grads.into_iter().chain(out.alpha_grads))
        .collect();
    save_tensors(&a.out, &grads)?;
    println!("{}", serde_json::json!({ "loss": out.loss }));
    if a.stats {
        eprintln!(
            "{:<52} {:>18} {:>12} {:>12}",
            "parameter", "shape", "grad L2", "max |grad|"
        );
        for (n, g) in &grads {
            let l2 = g
                .data()
                .iter()
                .map(|v| (*v as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            let mx = g.data().iter().fold(0.0f32, |m, v| m.max(v.abs()));
            eprintln!(
                "{n:<52} {:>18} {l2:>12.4e} {mx:>12.4e}",
                format!("{:?}", g.dims())
            );
        }
    }
    if let Some(dot) = &a.dot {
        std::fs::write(dot, tape.to_dot())
            .map_err(|e| Failure(format!("{}: {e}", dot.display()), 1))?;
    }
    Ok(0)
}
