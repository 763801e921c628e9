//! Training the evaluation network from scratch (SPEC section 5): SGD with momentum, weight decay and
//! gradient clipping, cosine learning rate, drop-path scaled linearly with the epoch, the auxiliary
//! loss, and crop / flip / cutout augmentation. Like the search, everything random derives from
//! (seed, epoch, step), so stop-and-resume and any thread count give the same bits.
use crate::checkpoint::{fill_params, no_leftovers, Checkpoint, TensorFile};
use crate::data::{augment_into, cutout, stream, Dataset};
use crate::evalnet::{DropPath, EvalConfig, EvalNet};
use crate::forward::{count_correct, Logits, Weights};
use crate::meter::Progress;
use crate::optim::{GradTransform, SgdState};
use crate::params::{BnStore, ParamStore};
use crate::schedule::{LrSchedule, Schedule};
use crate::search::Outcome;
use crate::{DartsError, Genotype, Result};
use autograd::Tape;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use tensor::{Rng, Tensor};

/// Every setting of a training run. `Default` is the DARTS paper's CIFAR-10 setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Initial channels C.
    pub channels: usize,
    /// Number of cells.
    pub layers: usize,
    /// Epochs to train.
    pub epochs: usize,
    /// Images per batch.
    pub batch: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Initial learning rate (cosine annealing to `lr_min`).
    pub lr: f32,
    /// Final learning rate.
    pub lr_min: f32,
    /// SGD momentum.
    pub momentum: f32,
    /// SGD L2 weight decay.
    pub weight_decay: f32,
    /// Global gradient-norm limit.
    pub grad_clip: f32,
    /// Weight of the auxiliary head's loss; 0 builds no auxiliary head.
    pub auxiliary_weight: f32,
    /// Final drop-path probability (reached linearly: epoch e uses drop_path * e / epochs).
    pub drop_path: f32,
    /// Side of the cutout square; 0 disables cutout.
    pub cutout: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            channels: 36,
            layers: 20,
            epochs: 600,
            batch: 96,
            seed: 0,
            lr: 0.025,
            lr_min: 0.0,
            momentum: 0.9,
            weight_decay: 3e-4,
            grad_clip: 5.0,
            auxiliary_weight: 0.4,
            drop_path: 0.2,
            cutout: 16,
        }
    }
}

impl TrainConfig {
    /// Refuses settings a run cannot use, naming the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |s: String| Err(DartsError::Config(s));
        if self.epochs == 0 || self.batch < 2 {
            return bad(format!(
                "epochs must be >= 1 and batch >= 2 (got {} and {})",
                self.epochs, self.batch
            ));
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return bad(format!(
                "drop-path probability must be in [0, 1), got {}",
                self.drop_path
            ));
        }
        if self.auxiliary_weight < 0.0 || !self.auxiliary_weight.is_finite() {
            return bad(format!(
                "auxiliary weight must be a finite number >= 0, got {}",
                self.auxiliary_weight
            ));
        }
        Ok(())
    }

    fn schedule(&self) -> LrSchedule {
        LrSchedule {
            schedule: Schedule::Cosine,
            max_lr: self.lr,
            min_lr: self.lr_min,
            epochs: self.epochs,
            warmup_epochs: 0,
        }
    }
}

/// The numbers of one finished epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainEpoch {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Learning rate of the epoch.
    pub lr: f32,
    /// Drop-path probability of the epoch.
    pub drop_path: f32,
    /// Mean training loss (main head).
    pub train_loss: f32,
    /// Mean training accuracy.
    pub train_acc: f32,
    /// Test-split loss and accuracy (eval mode), when the data has a test split.
    pub test_loss: Option<f32>,
    /// (See `test_loss`.)
    pub test_acc: Option<f32>,
    /// Wall time of the epoch, its evaluation included.
    pub seconds: f64,
}

/// One step's numbers, as written to `log.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainStep {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Step within the epoch.
    pub step: usize,
    /// Steps in an epoch.
    pub steps_per_epoch: usize,
    /// Learning rate.
    pub lr: f32,
    /// Loss of the main head.
    pub loss: f32,
    /// Loss of the auxiliary head, when there is one.
    pub aux_loss: Option<f32>,
    /// Accuracy of the batch.
    pub train_acc: f32,
    /// Wall time of the step.
    pub seconds: f64,
}

/// What the progress callback of [`Trainer::run`] hears.
pub enum TrainEvent<'a> {
    /// A step finished.
    Step(&'a TrainStep),
    /// An epoch finished.
    Epoch(&'a Trainer),
}

/// Accuracy, per-class accuracy and the confusion matrix (rows: true class, columns: predicted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Images evaluated.
    pub images: usize,
    /// Mean cross-entropy.
    pub loss: f32,
    /// Share classified right.
    pub accuracy: f32,
    /// Per class: the share of its images classified right.
    pub per_class_accuracy: Vec<f32>,
    /// Row = true class, column = predicted class: image counts.
    pub confusion: Vec<Vec<usize>>,
}

/// A trained (or training) network, ready to predict.
pub struct Trained {
    /// The network's structure.
    pub net: EvalNet,
    /// Its weights.
    pub params: ParamStore,
    /// Its BN statistics.
    pub bns: BnStore,
    tape: Tape,
}

impl Trained {
    /// A trained network from its parts.
    pub fn new(net: EvalNet, params: ParamStore, bns: BnStore) -> Trained {
        Trained {
            net,
            params,
            bns,
            tape: Tape::new(),
        }
    }

    /// Logits [N, classes] of images x [N, C, H, W] in eval mode (running BN statistics), recording
    /// no gradients.
    pub fn predict(&mut self, x: &Tensor) -> Result<Tensor> {
        let t = &mut self.tape;
        t.reset();
        t.set_grad_enabled(false);
        let mut ctx = Weights::of(&self.params, &mut self.bns).leaves(t, false, false);
        let xv = t.leaf(x.clone(), false);
        let logits = self.net.forward(t, xv, &mut ctx, None)?.main;
        Ok(t.take_value(logits))
    }

    /// Evaluates on all of `data` in batches of `batch`.
    pub fn evaluate(&mut self, data: &Dataset, batch: usize) -> Result<Evaluation> {
        let k = data.classes;
        let mut confusion = vec![vec![0usize; k]; k];
        let mut loss = 0.0f64;
        let idx: Vec<usize> = (0..data.len()).collect();
        for chunk in idx.chunks(batch.max(1)) {
            let (x, y) = data.batch(chunk, None);
            let logits = self.predict(&x)?;
            let mut probs = vec![0.0; logits.numel()];
            loss += kernels::softmax::cross_entropy(logits.data(), k, &y, &mut probs) as f64
                * chunk.len() as f64;
            for (row, &l) in logits.data().chunks(k).zip(&y) {
                let pred = (0..k)
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                    .unwrap_or(0);
                confusion[l as usize][pred] += 1;
            }
        }
        let n = data.len().max(1);
        let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
        let per_class = (0..k)
            .map(|c| confusion[c][c] as f32 / confusion[c].iter().sum::<usize>().max(1) as f32)
            .collect();
        Ok(Evaluation {
            images: data.len(),
            loss: (loss / n as f64) as f32,
            accuracy: correct as f32 / n as f32,
            per_class_accuracy: per_class,
            confusion,
        })
    }
}

/// A training run in progress. Its state is read through accessors and changed only by
/// stepping; [`Trainer::save`] and [`Trainer::load`] write and read all of it.
pub struct Trainer {
    config: TrainConfig,
    model: Trained,
    sgd: SgdState,
    /// Position, the current epoch's sums, the finished epochs' records.
    progress: Progress<TrainEpoch>,
}

/// The metadata `format` of a training checkpoint.
const FORMAT: &str = "darts-maxw-train-v1";

impl Trainer {
    /// A new run: the network of `genotype` for data of `classes` classes of `in_channels`-channel images.
    pub fn new(
        config: TrainConfig,
        genotype: &Genotype,
        classes: usize,
        in_channels: usize,
    ) -> Result<Trainer> {
        config.validate()?;
        let ec = EvalConfig {
            channels: config.channels,
            layers: config.layers,
            classes,
            in_channels,
            auxiliary: config.auxiliary_weight > 0.0,
        };
        let init = EvalNet::init(ec, genotype, &mut Rng::new(config.seed))?;
        Ok(Self::from_parts(
            config,
            Trained::new(init.net, init.params, init.bns),
        ))
    }

    /// Assembles a run around an existing network (fresh optimizer state, position 0).
    pub fn from_parts(config: TrainConfig, model: Trained) -> Trainer {
        let sgd = SgdState::new(
            &model.params.values,
            config.momentum,
            config.weight_decay,
            config.grad_clip,
        );
        Trainer {
            config,
            model,
            sgd,
            progress: Progress::default(),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The network being trained.
    pub fn model(&self) -> &Trained {
        &self.model
    }

    /// The network being trained, to evaluate or predict with.
    pub fn model_mut(&mut self) -> &mut Trained {
        &mut self.model
    }

    /// The next step to run: (epoch, step within it).
    pub fn position(&self) -> (usize, usize) {
        (self.progress.epoch, self.progress.step)
    }

    /// One record per finished epoch.
    pub fn history(&self) -> &[TrainEpoch] {
        &self.progress.history
    }

    /// Saves the run to resume: the model under the reference names, the momentum buffers, and in
    /// the metadata the configuration, genotype, size, position, the current epoch's sums and the
    /// history. Written atomically; the file it replaces is kept as
    /// [`crate::checkpoint::previous`]`(path)`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let m = &self.model;
        let mut c = Checkpoint::new(FORMAT);
        c.model(&m.params, &m.bns);
        self.sgd.save(&m.params.names, &mut c);
        c.meta("config", &self.config);
        c.meta("genotype", &m.net.genotype);
        c.meta("net", &m.net.config);
        self.progress.save(&mut c);
        c.write_rotating(path)
    }

    /// Loads a run [`Trainer::save`] wrote, ready to continue exactly where it stopped.
    pub fn load(path: &Path) -> Result<Trainer> {
        let mut f = TensorFile::open(path)?;
        f.expect_format(FORMAT, "training checkpoint")?;
        let config: TrainConfig = f.meta("config")?;
        let genotype: Genotype = f.meta("genotype")?;
        let mut init = EvalNet::init(f.meta("net")?, &genotype, &mut Rng::new(0))?;
        fill_params(&mut f, &mut init.params, &mut init.bns)?;
        let mut t = Trainer::from_parts(config, Trained::new(init.net, init.params, init.bns));
        t.sgd.load(&t.model.params.names, &mut f)?;
        no_leftovers(&f)?;
        t.progress = Progress::load(&f)?;
        Ok(t)
    }

    /// Steps per epoch for `n` training images (whole batches).
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        n / self.config.batch
    }

    /// Whether every epoch ran.
    pub fn is_finished(&self) -> bool {
        self.progress.epoch >= self.config.epochs
    }

    /// The drop-path probability of the current epoch.
    pub fn drop_prob(&self) -> f32 {
        self.config.drop_path * self.progress.epoch as f32 / self.config.epochs as f32
    }

    fn check_data(&self, train: &Dataset) -> Result<()> {
        let c = &self.model.net.config;
        if train.classes != c.classes || train.channels != c.in_channels {
            return Err(DartsError::Config(format!(
                "the data has {} classes of {}-channel images, the model expects {} and {}",
                train.classes, train.channels, c.classes, c.in_channels
            )));
        }
        if self.steps_per_epoch(train.len()) == 0 {
            return Err(DartsError::Config(format!(
                "{} training images are less than one batch of {}",
                train.len(),
                self.config.batch
            )));
        }
        Ok(())
    }

    /// Runs until done or cancelled; evaluates on `test` (when given) after every epoch.
    pub fn run(
        &mut self,
        train: &Dataset,
        test: Option<&Dataset>,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(TrainEvent),
    ) -> Result<Outcome> {
        self.check_data(train)?;
        while !self.is_finished() {
            if cancel.load(Ordering::SeqCst) {
                return Ok(Outcome::Cancelled);
            }
            let rec = self.step(train, test)?;
            progress(TrainEvent::Step(&rec));
            if self.progress.step == 0 {
                progress(TrainEvent::Epoch(self));
            }
        }
        Ok(Outcome::Finished)
    }

    /// One SGD step on the next training batch (and the end-of-epoch evaluation after the last).
    pub fn step(&mut self, train: &Dataset, test: Option<&Dataset>) -> Result<TrainStep> {
        let start = std::time::Instant::now();
        let steps = self.steps_per_epoch(train.len());
        // One generator per (seed, epoch, step): the batch's augmentation, then its drop-path masks.
        let mut rng = stream(self.config.seed, self.progress.epoch, self.progress.step);
        let (x, y) = self.batch(train, &mut rng)?;
        let (lr, drop) = (
            self.config.schedule().lr(self.progress.epoch),
            self.drop_prob(),
        );
        let (loss, aux_loss, train_acc) = self.update(x, &y, lr, drop, &mut rng)?;
        self.progress
            .meter
            .add(loss, train_acc, start.elapsed().as_secs_f64());
        let rec = TrainStep {
            epoch: self.progress.epoch,
            step: self.progress.step,
            steps_per_epoch: steps,
            lr,
            loss,
            aux_loss,
            train_acc,
            seconds: start.elapsed().as_secs_f64(),
        };
        self.progress.step += 1;
        if self.progress.step == steps {
            self.end_epoch(test, lr, drop)?;
        }
        Ok(rec)
    }

    /// The current step's batch: the epoch's shuffled order, each image augmented (crop, flip,
    /// cutout) with draws from `rng`.
    fn batch(&self, train: &Dataset, rng: &mut Rng) -> Result<(Tensor, Vec<u32>)> {
        let b = self.config.batch;
        let mut order: Vec<usize> = (0..train.len()).collect();
        stream(self.config.seed, self.progress.epoch, usize::MAX).shuffle(&mut order);
        let il = train.image_len();
        let idx = &order[self.progress.step * b..][..b];
        let mut x = vec![0.0; b * il];
        for (slot, &i) in x.chunks_mut(il).zip(idx) {
            augment_into(train, i, rng, slot);
            let (c, h, w) = (train.channels, train.height, train.width);
            cutout(slot, c, h, w, self.config.cutout, rng);
        }
        let x = Tensor::from_vec([b, train.channels, train.height, train.width], x)?;
        Ok((x, idx.iter().map(|&i| train.labels[i]).collect()))
    }

    /// One SGD step on batch (x, y) at learning rate `lr`, drop-path probability `drop` (masks
    /// from `rng`): the main loss plus the auxiliary weight times the auxiliary loss. Returns the
    /// main loss, the auxiliary loss and the batch accuracy.
    fn update(
        &mut self,
        x: Tensor,
        y: &[u32],
        lr: f32,
        drop: f32,
        rng: &mut Rng,
    ) -> Result<(f32, Option<f32>, f32)> {
        let m = &mut self.model;
        let t = &mut m.tape;
        t.reset();
        t.set_grad_enabled(true);
        let mut ctx = Weights::of(&m.params, &mut m.bns).leaves(t, true, true);
        let xv = t.leaf(x, false);
        let paths = DropPath { prob: drop, rng };
        let Logits { main: logits, aux } = m.net.forward(t, xv, &mut ctx, Some(paths))?;
        let main = ops::cross_entropy(t, logits, y)?;
        let (loss, aux_loss) = match aux {
            Some(a) => {
                let al = ops::cross_entropy(t, a, y)?;
                (
                    ops::axpy(t, self.config.auxiliary_weight, al, main)?,
                    Some(t.value(al).item()?),
                )
            }
            None => (main, None),
        };
        if !t.value(loss).item()?.is_finite() {
            return Err(DartsError::NonFinite {
                epoch: self.progress.epoch,
                step: self.progress.step,
                what: "training loss".into(),
            });
        }
        let main_loss = t.value(main).item()?;
        let acc = count_correct(t.value(logits), y) as f32 / y.len() as f32;
        t.backward(loss)?;
        let grads = ctx.grads(t);
        let gref: Vec<&[f32]> = grads.iter().map(Tensor::data).collect();
        self.sgd
            .step(lr, GradTransform::None, &mut m.params.values, &gref);
        Ok((main_loss, aux_loss, acc))
    }

    /// Closes the epoch: evaluates on `test` (when given), records the epoch, moves to the next.
    fn end_epoch(&mut self, test: Option<&Dataset>, lr: f32, drop: f32) -> Result<()> {
        let eval_start = std::time::Instant::now();
        let (test_loss, test_acc) = match test {
            Some(d) => {
                let e = self.model.evaluate(d, self.config.batch)?;
                (Some(e.loss), Some(e.accuracy))
            }
            None => (None, None),
        };
        let record = TrainEpoch {
            epoch: self.progress.epoch,
            lr,
            drop_path: drop,
            train_loss: self.progress.meter.mean_loss(),
            train_acc: self.progress.meter.mean_accuracy(),
            test_loss,
            test_acc,
            // Every step's time plus this evaluation (after the last step was counted).
            seconds: self.progress.meter.seconds() + eval_start.elapsed().as_secs_f64(),
        };
        self.progress.end_epoch(record);
        Ok(())
    }
}
