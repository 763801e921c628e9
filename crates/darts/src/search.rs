//! The search loop (SPEC section 1, "Search procedure"): per step, an architecture update on a
//! validation batch (Adam on the alphas), then a weight update on a training batch (SGD with
//! momentum, weight decay and clipping), with the weight learning rate scheduled per epoch.
//!
//! Everything random is a pure function of (seed, epoch, step): the data order of an epoch and the
//! augmentation of a batch are drawn from generators derived from them. A search stopped after any
//! step and resumed from its checkpoint therefore continues bit for bit as if never stopped.
use crate::architect::{self, Batch, VirtualStep};
use crate::checkpoint::{fill_model, no_leftovers, Checkpoint, TensorFile, ALPHA_NAMES};
use crate::data::{stream, Dataset};
use crate::meter::Progress;
use crate::model::{NetConfig, Supernet};
use crate::optim::{AdamState, GradTransform, SgdState};
use crate::params::{BnStore, ParamStore};
use crate::pass::{pass, Model, PassOut, Want};
use crate::schedule::{LrSchedule, Schedule};
use crate::{DartsError, Genotype, Result, Weighting};
use autograd::{Profile, Tape, Work};
use kernels::optim::Adam;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use tensor::{Rng, Tensor};

/// First-order (DARTS default) or second-order (unrolled) architecture gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// The gradient of the validation loss at the current weights (the DARTS default).
    First,
    /// The one-step unrolled approximation (SPEC, second order).
    Second,
}

/// Every setting of a search. `Default` is the DARTS paper's search setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchConfig {
    /// Initial channels C.
    pub channels: usize,
    /// Number of cells.
    pub layers: usize,
    /// Epochs to run.
    pub epochs: usize,
    /// Images per batch (train and validation alike).
    pub batch: usize,
    /// Seed of every random choice (init, data order, augmentation).
    pub seed: u64,
    /// How alphas become mixture weights.
    pub weighting: Weighting,
    /// First- or second-order architecture gradient.
    pub order: Order,
    /// The weights' learning-rate schedule.
    pub schedule: Schedule,
    /// Initial weight learning rate.
    pub lr: f32,
    /// Final weight learning rate.
    pub lr_min: f32,
    /// Epochs of linear warm-up.
    pub warmup_epochs: usize,
    /// SGD momentum.
    pub momentum: f32,
    /// SGD L2 weight decay.
    pub weight_decay: f32,
    /// Global gradient-norm limit for the weights.
    pub grad_clip: f32,
    /// Adam learning rate for the alphas.
    pub arch_lr: f32,
    /// Adam (beta1, beta2) for the alphas.
    pub arch_betas: (f32, f32),
    /// Adam L2 weight decay for the alphas.
    pub arch_weight_decay: f32,
    /// Optional gradient transform on every updated buffer.
    pub grad_transform: GradTransform,
    /// Random crop (padding 4) and horizontal flip on both halves of the training set, as the
    /// reference applies its train transform to the data both halves are drawn from.
    pub augment: bool,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            channels: 16,
            layers: 8,
            epochs: 50,
            batch: 64,
            seed: 2,
            weighting: Weighting::Maxw,
            order: Order::First,
            schedule: Schedule::Cosine,
            lr: 0.025,
            lr_min: 0.001,
            warmup_epochs: 0,
            momentum: 0.9,
            weight_decay: 3e-4,
            grad_clip: 5.0,
            arch_lr: 3e-4,
            arch_betas: (0.5, 0.999),
            arch_weight_decay: 1e-3,
            grad_transform: GradTransform::None,
            augment: true,
        }
    }
}

impl SearchConfig {
    /// The weights' learning-rate schedule over the search's epochs.
    pub fn lr_schedule(&self) -> LrSchedule {
        LrSchedule {
            schedule: self.schedule,
            max_lr: self.lr,
            min_lr: self.lr_min,
            epochs: self.epochs,
            warmup_epochs: self.warmup_epochs,
        }
    }

    /// Refuses settings a search cannot run, naming the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(DartsError::Config(why));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch < 2 {
            return bad(format!(
                "batch must be at least 2 (batch norm needs two samples), got {}",
                self.batch
            ));
        }
        if !(self.lr > 0.0 && self.lr_min >= 0.0 && self.lr_min <= self.lr) {
            return bad(format!(
                "learning rates must satisfy 0 <= min ({}) <= max ({}), max > 0",
                self.lr_min, self.lr
            ));
        }
        if self.warmup_epochs >= self.epochs {
            return bad(format!(
                "warm-up ({} epochs) must be shorter than the search ({} epochs)",
                self.warmup_epochs, self.epochs
            ));
        }
        Ok(())
    }
}

/// One step's numbers, as written to `log.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Step within the epoch (0-based).
    pub step: usize,
    /// Steps in an epoch.
    pub steps_per_epoch: usize,
    /// The weights' learning rate.
    pub lr: f32,
    /// Training loss of the weight step.
    pub train_loss: f32,
    /// Training accuracy of the weight step's batch.
    pub train_acc: f32,
    /// Validation loss of the architecture step.
    pub val_loss: f32,
    /// Validation accuracy of the architecture step's batch.
    pub val_acc: f32,
    /// The weights' gradient norm before clipping.
    pub grad_norm: f32,
    /// Wall time of the step.
    pub seconds: f64,
}

/// The state at the end of an epoch: metrics, the alphas and the genotype they give.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch (0-based).
    pub epoch: usize,
    /// The weights' learning rate.
    pub lr: f32,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f32,
    /// Mean training accuracy over the epoch's steps.
    pub train_acc: f32,
    /// Accuracy of the whole validation half in eval mode (running BN statistics).
    pub val_loss: f32,
    /// Its accuracy.
    pub val_acc: f32,
    /// alphas_normal at the end of the epoch, row-major [14, 8].
    pub alphas_normal: Vec<f32>,
    /// alphas_reduce at the end of the epoch.
    pub alphas_reduce: Vec<f32>,
    /// The genotype those alphas give.
    pub genotype: Genotype,
    /// Wall time of the epoch, its evaluation included.
    pub seconds: f64,
}

/// What the progress callback hears: each finished step, and the whole search after each finished
/// epoch (its record is `history.last()`; a good moment to save a checkpoint).
pub enum Event<'a> {
    /// A step finished.
    Step(&'a StepRecord),
    /// An epoch finished (the search, between two steps).
    Epoch(&'a Search),
}

/// How a [`Search::run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every epoch ran.
    Finished,
    /// The cancel flag was raised; the state is consistent (between two steps) and can be saved.
    Cancelled,
}

/// A search in progress: the model, both optimizers, the position and the history so far. Its
/// state is read through accessors and changed only by stepping; [`Search::save`] and
/// [`Search::load`] write and read all of it.
pub struct Search {
    config: SearchConfig,
    net: Supernet,
    params: ParamStore,
    bns: BnStore,
    /// alphas_normal and alphas_reduce.
    alphas: [Tensor; 2],
    sgd: SgdState,
    adam: AdamState,
    /// Position, the current epoch's sums, the finished epochs' records.
    progress: Progress<EpochRecord>,
    tape: Tape,
    /// While profiling: the optimizer steps' totals (the tape keeps the ops').
    optimizer_profile: Option<Profile>,
}

/// The metadata `format` of a search checkpoint.
const FORMAT: &str = "darts-maxw-search-v1";

impl Search {
    /// A new search for `config` on data with `classes` classes of `in_channels`-channel images.
    pub fn new(config: SearchConfig, classes: usize, in_channels: usize) -> Result<Search> {
        config.validate()?;
        let net_cfg = NetConfig {
            channels: config.channels,
            layers: config.layers,
            classes,
            in_channels,
        };
        let mut rng = Rng::new(config.seed);
        let init = Supernet::init(net_cfg, &mut rng)?;
        Ok(Self::from_parts(
            config,
            init.net,
            init.params,
            init.bns,
            init.alphas,
        ))
    }

    /// Assembles a search around existing tensors (fresh optimizer state, position 0).
    pub fn from_parts(
        config: SearchConfig,
        net: Supernet,
        params: ParamStore,
        bns: BnStore,
        alphas: [Tensor; 2],
    ) -> Search {
        let sgd = SgdState::new(
            &params.values,
            config.momentum,
            config.weight_decay,
            config.grad_clip,
        );
        let hyper = Adam {
            lr: config.arch_lr,
            beta1: config.arch_betas.0,
            beta2: config.arch_betas.1,
            eps: 1e-8,
            weight_decay: config.arch_weight_decay,
        };
        let adam = AdamState::new(&alphas, hyper);
        Search {
            config,
            net,
            params,
            bns,
            alphas,
            sgd,
            adam,
            progress: Progress::default(),
            tape: Tape::new(),
            optimizer_profile: None,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &SearchConfig {
        &self.config
    }

    /// The supernet's structure.
    pub fn net(&self) -> &Supernet {
        &self.net
    }

    /// The weights.
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// The BN running statistics.
    pub fn bns(&self) -> &BnStore {
        &self.bns
    }

    /// alphas_normal and alphas_reduce, each [14, 8].
    pub fn alphas(&self) -> &[Tensor; 2] {
        &self.alphas
    }

    /// The next step to run: (epoch, step within it).
    pub fn position(&self) -> (usize, usize) {
        (self.progress.epoch, self.progress.step)
    }

    /// One record per finished epoch.
    pub fn history(&self) -> &[EpochRecord] {
        &self.progress.history
    }

    /// Saves the whole state: the model under the reference names (weights, BN buffers, alphas),
    /// both optimizers' buffers, and in the metadata the configuration, the position, the
    /// current epoch's sums and the history. Written atomically; the file it replaces is kept as
    /// [`crate::checkpoint::previous`]`(path)`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut c = Checkpoint::new(FORMAT);
        c.supernet(&self.params, &self.bns, &self.alphas);
        self.sgd.save(&self.params.names, &mut c);
        self.adam.save(&ALPHA_NAMES, &mut c);
        c.meta("config", &self.config);
        c.meta("net", &self.net.config);
        self.progress.save(&mut c);
        c.meta(
            "rng",
            &format!("derived from seed {} per (epoch, step)", self.config.seed),
        );
        c.write_rotating(path)
    }

    /// Loads a search [`Search::save`] wrote, ready to continue exactly where it stopped.
    pub fn load(path: &Path) -> Result<Search> {
        let mut f = TensorFile::open(path)?;
        f.expect_format(FORMAT, "search checkpoint")?;
        let config: SearchConfig = f.meta("config")?;
        let mut init = Supernet::init(f.meta("net")?, &mut Rng::new(0))?;
        fill_model(&mut f, &mut init.params, &mut init.bns, &mut init.alphas)?;
        let mut s = Search::from_parts(config, init.net, init.params, init.bns, init.alphas);
        s.sgd.load(&s.params.names, &mut f)?;
        s.adam.load(&ALPHA_NAMES, &mut f)?;
        no_leftovers(&f)?;
        s.progress = Progress::load(&f)?;
        Ok(s)
    }

    /// Times every op of every pass and both optimizer steps from now on, for
    /// [`Search::take_profile`]. Off by default: then nothing is timed.
    pub fn set_profiling(&mut self, on: bool) {
        self.tape.set_profiling(on);
        self.optimizer_profile = on.then(Profile::new);
    }

    /// Per op (`conv2d_bn`, `leaf`, ..., and the optimizers `sgd_step`, `adam_step`): calls, time
    /// and work since profiling was switched on or last taken.
    pub fn take_profile(&mut self) -> Profile {
        let mut p = self.tape.take_profile();
        if let Some(o) = &mut self.optimizer_profile {
            p.append(o);
        }
        p
    }

    /// Runs `f` and, while profiling, adds its time and `work` to optimizer entry `name`.
    fn timed<R>(&mut self, name: &'static str, work: Work, f: impl FnOnce(&mut Search) -> R) -> R {
        let start = std::time::Instant::now();
        let r = f(self);
        if let Some(p) = &mut self.optimizer_profile {
            let seconds = start.elapsed().as_secs_f64();
            p.entry(name).or_default().add_forward(seconds, work);
        }
        r
    }

    /// Whether every epoch ran.
    pub fn is_finished(&self) -> bool {
        self.progress.epoch >= self.config.epochs
    }

    /// The genotype the current alphas give.
    pub fn genotype(&self) -> Genotype {
        Genotype::derive(&self.alphas[0], &self.alphas[1])
    }

    /// One pass of the current model on a batch.
    fn run_pass(&mut self, x: &Tensor, y: &[u32], want: Want, train_bn: bool) -> Result<PassOut> {
        let m = Model {
            net: &self.net,
            names: &self.params.names,
            weights: &self.params.values,
            alphas: &self.alphas,
            weighting: self.config.weighting,
        };
        pass(&mut self.tape, &m, &mut self.bns, x, y, want, train_bn)
    }

    /// Steps per epoch for a training set of `n` images: the train half in whole batches.
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        (n / 2) / self.config.batch
    }

    /// Runs until the last epoch ends or `cancel` is raised, reporting every step and epoch.
    pub fn run(
        &mut self,
        data: &Dataset,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(Event),
    ) -> Result<Outcome> {
        self.check_data(data)?;
        while !self.is_finished() {
            if cancel.load(Ordering::SeqCst) {
                return Ok(Outcome::Cancelled);
            }
            let rec = self.step(data)?;
            progress(Event::Step(&rec));
            if self.progress.step == 0 {
                progress(Event::Epoch(self));
            }
        }
        Ok(Outcome::Finished)
    }

    fn check_data(&self, data: &Dataset) -> Result<()> {
        let c = &self.net.config;
        if data.classes != c.classes || data.channels != c.in_channels {
            return Err(DartsError::Config(format!(
                "the data has {} classes of {}-channel images, the model expects {} and {}",
                data.classes, data.channels, c.classes, c.in_channels
            )));
        }
        if self.steps_per_epoch(data.len()) == 0 {
            return Err(DartsError::Config(format!(
                "{} training images give a train half of {} < one batch of {}",
                data.len(),
                data.len() / 2,
                self.config.batch
            )));
        }
        if !data.height.is_multiple_of(4) || !data.width.is_multiple_of(4) {
            return Err(DartsError::Config(format!(
                "image size {}x{} must be divisible by 4 (two reduction cells)",
                data.height, data.width
            )));
        }
        Ok(())
    }

    /// The training-half and validation-half index orders of `epoch`.
    fn epoch_order(&self, n: usize) -> (Vec<usize>, Vec<usize>) {
        let mut rng = stream(self.config.seed, self.progress.epoch, usize::MAX);
        let half = n / 2;
        let mut train: Vec<usize> = (0..half).collect();
        let mut val: Vec<usize> = (half..n).collect();
        rng.shuffle(&mut train);
        rng.shuffle(&mut val);
        (train, val)
    }

    fn non_finite(&self, what: &str) -> DartsError {
        DartsError::NonFinite {
            epoch: self.progress.epoch,
            step: self.progress.step,
            what: what.into(),
        }
    }

    /// Runs the next step (and the end-of-epoch evaluation if it was the epoch's last).
    pub fn step(&mut self, data: &Dataset) -> Result<StepRecord> {
        let start = std::time::Instant::now();
        let b = self.config.batch;
        let steps = self.steps_per_epoch(data.len());
        let (train_idx, val_idx) = self.epoch_order(data.len());
        let vs = self.progress.step % (val_idx.len() / b).max(1);
        let mut aug = stream(self.config.seed, self.progress.epoch, self.progress.step);
        let augment = self.config.augment;
        let (xt, yt) = data.batch(
            &train_idx[self.progress.step * b..][..b],
            augment.then_some(&mut aug),
        );
        let (xv, yv) = data.batch(&val_idx[vs * b..][..b], augment.then_some(&mut aug));
        let lr = self.config.lr_schedule().lr(self.progress.epoch);
        let (arch, train, grad_norm) = self.update((&xt, &yt), (&xv, &yv), lr)?;

        let train_acc = train.correct as f32 / b as f32;
        self.progress
            .meter
            .add(train.loss, train_acc, start.elapsed().as_secs_f64());
        let record = StepRecord {
            epoch: self.progress.epoch,
            step: self.progress.step,
            steps_per_epoch: steps,
            lr,
            train_loss: train.loss,
            train_acc,
            val_loss: arch.loss,
            val_acc: arch.correct as f32 / b as f32,
            grad_norm,
            seconds: start.elapsed().as_secs_f64(),
        };
        self.progress.step += 1;
        if self.progress.step == steps {
            self.end_epoch(data, &val_idx, lr)?;
        }
        Ok(record)
    }

    /// One search step on given batches: the architecture update on the validation batch, then
    /// the weight update on the training batch at learning rate `lr`. Returns the validation pass
    /// (its alpha gradients used), the training pass and the weights' gradient norm before
    /// clipping. [`Search::step`] draws the batches and the rate; `darts replay` passes its own.
    pub fn update(
        &mut self,
        (xt, yt): (&Tensor, &[u32]),
        (xv, yv): (&Tensor, &[u32]),
        lr: f32,
    ) -> Result<(PassOut, PassOut, f32)> {
        // Architecture step on the validation batch.
        let arch = match self.config.order {
            Order::First => self.run_pass(
                xv,
                yv,
                Want {
                    weights: false,
                    alphas: true,
                },
                true,
            )?,
            Order::Second => {
                let v = VirtualStep {
                    lr,
                    momentum: self.config.momentum,
                    weight_decay: self.config.weight_decay,
                    momentum_buffers: &self.sgd.momentum,
                };
                let (tape, bns) = (&mut self.tape, &mut self.bns);
                let mut scratch = bns.clone();
                let mut eval = |w: &[Tensor], batch: Batch, want: Want, scratch_stats: bool| {
                    let m = Model {
                        net: &self.net,
                        names: &self.params.names,
                        weights: w,
                        alphas: &self.alphas,
                        weighting: self.config.weighting,
                    };
                    let (x, y) = if batch == Batch::Train {
                        (xt, yt)
                    } else {
                        (xv, yv)
                    };
                    pass(
                        tape,
                        &m,
                        if scratch_stats {
                            &mut scratch
                        } else {
                            &mut *bns
                        },
                        x,
                        y,
                        want,
                        true,
                    )
                };
                architect::unrolled_alpha_grads(&mut eval, &self.params.values, v)?
            }
        };
        if !arch.loss.is_finite() {
            return Err(self.non_finite("validation loss"));
        }
        let grads: Vec<&[f32]> = arch.alpha_grads.iter().map(Tensor::data).collect();
        let n = self.alphas.iter().map(Tensor::numel).sum::<usize>() as f64;
        // Adam reads a, g, m, v and writes a, m, v: about 12 operations per value.
        self.timed("adam_step", Work::new(12.0 * n, 7.0 * n), |s| {
            s.adam.step(s.config.grad_transform, &mut s.alphas, &grads)
        });

        // Weight step on the training batch.
        let train = self.run_pass(
            xt,
            yt,
            Want {
                weights: true,
                alphas: false,
            },
            true,
        )?;
        if !train.loss.is_finite() {
            return Err(self.non_finite("training loss"));
        }
        let grads: Vec<&[f32]> = train.weight_grads.iter().map(Tensor::data).collect();
        let n = self.params.numel() as f64;
        // The norm pass reads g; the update reads w, g, v and writes w, v: 9 operations per value.
        let grad_norm = self.timed("sgd_step", Work::new(9.0 * n, 6.0 * n), |s| {
            s.sgd
                .step(lr, s.config.grad_transform, &mut s.params.values, &grads)
        });
        if !self
            .params
            .values
            .iter()
            .all(|p| p.data().iter().all(|v| v.is_finite()))
            || !self
                .alphas
                .iter()
                .all(|a| a.data().iter().all(|v| v.is_finite()))
        {
            return Err(self.non_finite("parameter after the update"));
        }

        Ok((arch, train, grad_norm))
    }

    fn end_epoch(&mut self, data: &Dataset, val_idx: &[usize], lr: f32) -> Result<()> {
        let eval_start = std::time::Instant::now();
        let (val_loss, val_acc) = self.evaluate(data, val_idx)?;
        let record = EpochRecord {
            epoch: self.progress.epoch,
            lr,
            train_loss: self.progress.meter.mean_loss(),
            train_acc: self.progress.meter.mean_accuracy(),
            val_loss,
            val_acc,
            alphas_normal: self.alphas[0].data().to_vec(),
            alphas_reduce: self.alphas[1].data().to_vec(),
            genotype: self.genotype(),
            // Every step's time plus this end-of-epoch evaluation (after the last step was counted).
            seconds: self.progress.meter.seconds() + eval_start.elapsed().as_secs_f64(),
        };
        self.progress.end_epoch(record);
        Ok(())
    }

    /// Loss and accuracy over `indices` of `data` in eval mode (running BN statistics, no tape
    /// gradients), in batches of the search's batch size.
    pub fn evaluate(&mut self, data: &Dataset, indices: &[usize]) -> Result<(f32, f32)> {
        let (mut loss, mut correct) = (0.0f64, 0usize);
        for chunk in indices.chunks(self.config.batch) {
            let (x, y) = data.batch(chunk, None);
            let out = self.run_pass(
                &x,
                &y,
                Want {
                    weights: false,
                    alphas: false,
                },
                false,
            )?;
            loss += out.loss as f64 * chunk.len() as f64;
            correct += out.correct;
        }
        let n = indices.len().max(1) as f64;
        Ok(((loss / n) as f32, (correct as f64 / n) as f32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `SearchConfig::default()` is the DARTS paper's search setting (Liu et al. 2019, section
    /// A.1.1: 50 epochs, batch 64, 8 cells of C=16; SGD lr 0.025 cosine to 0.001, momentum 0.9,
    /// weight decay 3e-4, clip 5; Adam 3e-4, betas (0.5, 0.999), weight decay 1e-3).
    #[test]
    fn default_is_the_darts_paper_setting() {
        let c = SearchConfig::default();
        assert_eq!((c.epochs, c.batch, c.layers, c.channels), (50, 64, 8, 16));
        assert_eq!(
            (c.lr, c.lr_min, c.momentum, c.weight_decay, c.grad_clip),
            (0.025, 0.001, 0.9, 3e-4, 5.0)
        );
        assert_eq!(
            (c.arch_lr, c.arch_betas, c.arch_weight_decay),
            (3e-4, (0.5, 0.999), 1e-3)
        );
        assert_eq!(
            (c.schedule, c.order, c.warmup_epochs),
            (Schedule::Cosine, Order::First, 0)
        );
        assert!(c.augment);
    }

    /// Each rule of `validate`, on its own, with the boundary it draws.
    #[test]
    fn validate_refuses_each_bad_setting() {
        let ok = SearchConfig::default();
        ok.validate().unwrap();
        let fails = |c: SearchConfig, words: &str| {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(words), "{e}");
        };
        fails(
            SearchConfig {
                epochs: 0,
                ..ok.clone()
            },
            "epochs must be at least 1",
        );
        fails(
            SearchConfig {
                batch: 1,
                ..ok.clone()
            },
            "batch must be at least 2",
        );
        SearchConfig {
            batch: 2,
            ..ok.clone()
        }
        .validate()
        .unwrap();
        fails(
            SearchConfig {
                lr: 0.0,
                lr_min: 0.0,
                ..ok.clone()
            },
            "learning rates",
        );
        fails(
            SearchConfig {
                lr_min: -0.001,
                ..ok.clone()
            },
            "learning rates",
        );
        fails(
            SearchConfig {
                lr_min: 0.03,
                ..ok.clone()
            },
            "learning rates",
        );
        SearchConfig {
            lr_min: 0.025,
            ..ok.clone()
        }
        .validate()
        .unwrap();
        SearchConfig {
            lr_min: 0.0,
            ..ok.clone()
        }
        .validate()
        .unwrap();
        fails(
            SearchConfig {
                warmup_epochs: 50,
                ..ok.clone()
            },
            "warm-up (50 epochs)",
        );
        SearchConfig {
            warmup_epochs: 49,
            ..ok
        }
        .validate()
        .unwrap();
    }

    /// `n` random 3-channel `side` x `side` images of 3 classes (label = index mod 3).
    fn tiny_data(n: usize, side: usize) -> Dataset {
        let x = Tensor::randn([n, 3, side, side], 1.0, &mut Rng::new(7));
        Dataset::from_tensors(&x, (0..n).map(|i| (i % 3) as u32).collect(), 3).unwrap()
    }

    fn tiny_config() -> SearchConfig {
        SearchConfig {
            channels: 2,
            layers: 2,
            epochs: 2,
            batch: 2,
            augment: false,
            ..SearchConfig::default()
        }
    }

    /// `run` reports every step and epoch in order, ends finished, and each epoch's record
    /// averages its steps.
    #[test]
    fn run_records_every_step_and_every_epoch() {
        let data = tiny_data(20, 8);
        let mut s = Search::new(tiny_config(), 3, 3).unwrap();
        assert_eq!(
            (
                s.steps_per_epoch(20),
                s.steps_per_epoch(23),
                s.steps_per_epoch(3)
            ),
            (5, 5, 0)
        );
        let (mut steps, mut epochs) = (Vec::new(), Vec::new());
        let out = s
            .run(&data, &AtomicBool::new(false), &mut |e| match e {
                Event::Step(r) => steps.push(r.clone()),
                Event::Epoch(s) => {
                    epochs.push((s.progress.epoch, s.progress.step, s.progress.history.len()))
                }
            })
            .unwrap();
        assert_eq!(out, Outcome::Finished);
        assert!(s.is_finished());
        assert_eq!(
            (s.progress.epoch, s.progress.step, s.progress.meter),
            (2, 0, crate::meter::EpochMeter::default())
        );
        assert_eq!(epochs, vec![(1, 0, 1), (2, 0, 2)]);
        let order: Vec<(usize, usize, usize)> = steps
            .iter()
            .map(|r| (r.epoch, r.step, r.steps_per_epoch))
            .collect();
        let want: Vec<(usize, usize, usize)> = (0..2)
            .flat_map(|e| (0..5).map(move |k| (e, k, 5)))
            .collect();
        assert_eq!(order, want);
        for r in &steps {
            for acc in [r.train_acc, r.val_acc] {
                assert!(
                    [0.0, 0.5, 1.0].contains(&acc),
                    "accuracy {acc} of a batch of 2"
                );
            }
            assert!(r.seconds > 0.0 && r.grad_norm > 0.0);
        }
        assert!(
            steps.iter().any(|r| r.train_acc > 0.0),
            "some batch is right"
        );
        for (e, h) in s.progress.history.iter().enumerate() {
            let mine: Vec<&StepRecord> = steps.iter().filter(|r| r.epoch == e).collect();
            let mean = |f: fn(&StepRecord) -> f32| {
                (mine.iter().map(|r| f(r) as f64).sum::<f64>() / 5.0) as f32
            };
            assert_eq!(h.epoch, e);
            assert_eq!(h.train_loss, mean(|r| r.train_loss));
            assert_eq!(h.train_acc, mean(|r| r.train_acc));
            assert_eq!(h.lr, s.config.lr_schedule().lr(e));
            assert!(mine.iter().all(|r| r.lr == h.lr));
            let step_seconds: f64 = mine.iter().map(|r| r.seconds).sum();
            assert!(
                h.seconds >= step_seconds * 0.999,
                "{} < {step_seconds}",
                h.seconds
            );
        }
        assert_eq!(s.progress.history[1].alphas_normal, s.alphas[0].data());
        assert_eq!(s.progress.history[1].genotype, s.genotype());

        // The epoch's validation numbers: the val half in eval mode, here against one image at
        // a time (eval-mode BN makes every image's loss independent of its batch).
        let val: Vec<usize> = (10..20).collect();
        let (loss, acc) = s.evaluate(&data, &val).unwrap();
        let (mut sum, mut correct) = (0.0f64, 0);
        for &i in &val {
            let (x, y) = data.batch(&[i], None);
            let none = Want {
                weights: false,
                alphas: false,
            };
            let out = s.run_pass(&x, &y, none, false).unwrap();
            sum += out.loss as f64;
            correct += out.correct;
        }
        assert!(
            (loss as f64 - sum / 10.0).abs() < 1e-5,
            "{loss} vs {}",
            sum / 10.0
        );
        assert_eq!(acc, correct as f32 / 10.0);
        assert!((s.progress.history[1].val_loss - loss).abs() < 1e-5);
        assert_eq!(s.progress.history[1].val_acc, acc);
    }

    /// `step` is `update` on the epoch's k-th train and val batches at the epoch's rate.
    #[test]
    fn step_updates_on_the_kth_batches_of_the_epoch_order() {
        let data = tiny_data(20, 8);
        let (mut a, mut b) = (
            Search::new(tiny_config(), 3, 3).unwrap(),
            Search::new(tiny_config(), 3, 3).unwrap(),
        );
        let (train, val) = b.epoch_order(data.len());
        let sorted = |v: &[usize]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        assert_eq!(
            sorted(&train),
            (0..10).collect::<Vec<_>>(),
            "the train half, each once"
        );
        assert_eq!(
            sorted(&val),
            (10..20).collect::<Vec<_>>(),
            "the val half, each once"
        );
        let mut val_right = 0;
        for k in 0..5 {
            let rec = a.step(&data).unwrap();
            let xt = data.batch(&train[k * 2..][..2], None);
            let xv = data.batch(&val[k * 2..][..2], None);
            let lr = b.config.lr_schedule().lr(0);
            let (arch, tr, norm) = b.update((&xt.0, &xt.1), (&xv.0, &xv.1), lr).unwrap();
            assert_eq!(
                (rec.train_loss, rec.val_loss, rec.grad_norm, rec.lr),
                (tr.loss, arch.loss, norm, lr)
            );
            assert_eq!(
                (rec.train_acc, rec.val_acc),
                (tr.correct as f32 / 2.0, arch.correct as f32 / 2.0),
                "accuracy = correct / batch"
            );
            val_right += arch.correct;
            let bits = |s: &Search| -> Vec<u32> {
                s.params
                    .values
                    .iter()
                    .chain(&s.alphas)
                    .flat_map(|t| t.data().iter().map(|v| v.to_bits()))
                    .collect()
            };
            assert_eq!(bits(&a), bits(&b), "step {k}");
        }
        assert!(
            val_right > 0,
            "some validation batch is right (else accuracy goes untested)"
        );
        let mut later = Search::new(tiny_config(), 3, 3).unwrap();
        later.progress.epoch = 1;
        assert_ne!(
            later.epoch_order(20).0,
            train,
            "each epoch has its own order"
        );
    }

    #[test]
    fn data_that_does_not_fit_the_model_is_refused() {
        let s = Search::new(tiny_config(), 3, 3).unwrap();
        let refused = |d: Dataset, words: &str| {
            let e = s.check_data(&d).unwrap_err().to_string();
            assert!(e.contains(words), "{e}");
        };
        s.check_data(&tiny_data(20, 8)).unwrap();
        let x = Tensor::randn([20, 3, 8, 8], 1.0, &mut Rng::new(1));
        refused(
            Dataset::from_tensors(&x, vec![0; 20], 4).unwrap(),
            "4 classes of 3-channel images, the model expects 3 and 3",
        );
        let x1 = Tensor::randn([20, 1, 8, 8], 1.0, &mut Rng::new(1));
        refused(
            Dataset::from_tensors(&x1, vec![0; 20], 3).unwrap(),
            "3 classes of 1-channel images",
        );
        refused(tiny_data(3, 8), "train half of 1 < one batch of 2");
        let x = Tensor::randn([20, 3, 8, 6], 1.0, &mut Rng::new(1));
        refused(
            Dataset::from_tensors(&x, vec![0; 20], 3).unwrap(),
            "image size 8x6 must be divisible by 4",
        );
    }

    /// A step whose update overflows the weights stops at once, naming the step.
    #[test]
    fn an_overflowing_update_is_reported_at_its_step() {
        let data = tiny_data(20, 8);
        let cfg = SearchConfig {
            lr: 3e38,
            lr_min: 3e38,
            grad_clip: 1e30,
            ..tiny_config()
        };
        let mut s = Search::new(cfg, 3, 3).unwrap();
        let e = s.step(&data).unwrap_err().to_string();
        assert_eq!(
            e,
            "non-finite parameter after the update at epoch 0, step 0"
        );
    }
}
