//! `darts replay`: the search loop's step, exactly, on batches you give it.
//!
//! Loads a supernet checkpoint and a file of batches `train.K.x`, `train.K.y`, `val.K.x`,
//! `val.K.y` (K = 0, 1, ...), runs [`darts::Search::update`] once per K (the architecture step on
//! val batch K, then the weight step on train batch K) with fresh optimizer state, a constant
//! learning rate and no augmentation, and writes the model afterwards: every parameter, both
//! alphas and every BN running statistic under the reference names. It is how the search loop is
//! checked against PyTorch (`scripts/golden_replay.py`), and a way to watch a few steps exactly.
use crate::grad::{check_batch, refuse_overwrite};
use crate::run_dir::tidy_json;
use crate::Failure;
use darts::checkpoint::{load_supernet, save_supernet, TensorFile};
use darts::optim::GradTransform;
use darts::{Order, Search, SearchConfig, Weighting};
use std::path::{Path, PathBuf};
use tensor::Tensor;

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Supernet checkpoint: ours (`darts search`, `darts replay`) or a PyTorch reference
    /// state_dict with the alphas, as `darts grad` reads it. Its optimizer state is not used.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Safetensors file of batches: `train.K.x`, `val.K.x` f32 [N, C, H, W] and `train.K.y`,
    /// `val.K.y` i64 or i32 [N], for K = 0, 1, ... (one step each).
    #[arg(long)]
    batches: PathBuf,
    /// Where to write the model after the last step (safetensors, reference names).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = Order::First)]
    order: Order,
    #[arg(long, value_enum, default_value_t = Weighting::Maxw)]
    weighting: Weighting,
    #[arg(long = "grad-transform", value_enum, default_value_t = GradTransform::None)]
    grad_transform: GradTransform,
    /// The weight learning rate, constant over the steps (the other hyper-parameters are the
    /// DARTS defaults of `darts search`).
    #[arg(long, default_value_t = 0.025)]
    lr: f32,
    /// Worker threads (0 = one per core). Results do not depend on it.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// One step's batches: (train x, train y), (val x, val y).
type StepBatches = ((Tensor, Vec<u32>), (Tensor, Vec<u32>));

/// Reads `train.K.*` and `val.K.*` for K = 0, 1, ... until `train.K.x` is missing; every tensor of
/// the file must belong to a step.
fn load_batches(
    path: &Path,
    classes: usize,
    in_channels: usize,
) -> Result<Vec<StepBatches>, Failure> {
    let bad = |why: String| Failure(format!("batches {}: {why}", path.display()), 1);
    let mut f = TensorFile::open(path)?;
    let mut steps = Vec::new();
    for k in 0.. {
        if !f.f32s.contains_key(&format!("train.{k}.x")) {
            break;
        }
        let mut half = |split: &str| -> Result<(Tensor, Vec<u32>), Failure> {
            let (xn, yn) = (format!("{split}.{k}.x"), format!("{split}.{k}.y"));
            let x = f
                .f32s
                .remove(&xn)
                .ok_or_else(|| bad(format!("missing f32 tensor '{xn}' [N, C, H, W]")))?;
            let y = f
                .i64s
                .remove(&yn)
                .ok_or_else(|| bad(format!("missing i64 or i32 tensor '{yn}' [N]")))?;
            check_batch(x, &y, classes, in_channels).map_err(|e| bad(format!("{split}.{k}: {e}")))
        };
        let train = half("train")?;
        let val = half("val")?;
        steps.push((train, val));
    }
    if steps.is_empty() {
        return Err(bad(
            "no batches: expected train.0.x, train.0.y, val.0.x, val.0.y, train.1.x, ...".into(),
        ));
    }
    if let Some(extra) = f.f32s.keys().chain(f.i64s.keys()).next() {
        return Err(bad(format!(
            "unexpected tensor '{extra}' after {} step(s): names are train.K.x, train.K.y, val.K.x, val.K.y with K counting from 0 without gaps",
            steps.len()
        )));
    }
    Ok(steps)
}

pub fn run(a: ReplayArgs) -> Result<u8, Failure> {
    refuse_overwrite(
        &a.out,
        &[("--checkpoint", &a.checkpoint), ("--batches", &a.batches)],
    )?;
    if !(a.lr.is_finite() && a.lr >= 0.0) {
        return Err(Failure(
            format!("--lr must be finite and >= 0, got {}", a.lr),
            2,
        ));
    }
    let (net, params, bns, alphas) = load_supernet(&a.checkpoint)?;
    let steps = load_batches(&a.batches, net.config.classes, net.config.in_channels)?;
    let config = SearchConfig {
        channels: net.config.channels,
        layers: net.config.layers,
        epochs: 1,
        batch: steps[0].0 .1.len(),
        weighting: a.weighting,
        order: a.order,
        grad_transform: a.grad_transform,
        lr: a.lr,
        lr_min: a.lr,
        augment: false,
        ..SearchConfig::default()
    };
    let mut search = Search::from_parts(config, net, params, bns, alphas);
    for (k, ((xt, yt), (xv, yv))) in steps.iter().enumerate() {
        let (arch, train, grad_norm) = search.update((xt, yt), (xv, yv), a.lr)?;
        println!(
            "{}",
            tidy_json(serde_json::json!({
                "step": k,
                "val_loss": arch.loss,
                "train_loss": train.loss,
                "grad_norm": grad_norm,
            }))
        );
    }
    save_supernet(&a.out, search.params(), search.bns(), search.alphas())?;
    Ok(0)
}
