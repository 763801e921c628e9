//! The evaluation network (SPEC section 5): the searched cell stacked and trained from scratch. One
//! op per kept edge with affine batch norms, drop-path on non-identity ops in training, and an
//! auxiliary head after cell 2*layers/3. Parameter names follow the reference `model.py`
//! (`cells.{i}._ops.{j}.op.{m}.weight`, `auxiliary_head.features.{m}.weight`, ...).
use crate::forward::{ForwardCtx, Logits};
use crate::layers::{Bn, Builder, CellOp, Preprocess, ReluConvBn};
use crate::params::{BnStore, ParamStore};
use crate::{DartsError, Genotype, Result};
use autograd::{Tape, Var};
use ops::{Conv2dOptions, PoolOptions};
use serde::{Deserialize, Serialize};
use tensor::{Rng, Tensor};

/// The size of an evaluation network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// Initial channels C.
    pub channels: usize,
    /// Number of cells.
    pub layers: usize,
    /// Number of classes.
    pub classes: usize,
    /// Image channels.
    pub in_channels: usize,
    /// Whether to build the auxiliary head (after cell 2 * layers / 3).
    pub auxiliary: bool,
}

#[derive(Clone, Debug)]
struct Cell {
    reduction: bool,
    pre0: Preprocess,
    pre1: ReluConvBn,
    /// (op, input state, stride) for each kept edge, two per node.
    ops: Vec<(CellOp, usize, usize)>,
    concat: Vec<usize>,
}

/// Reference `AuxiliaryHeadCIFAR`: ReLU, AvgPool(5, stride 3), 1x1 conv 128 (`features.2`), BN
/// (`features.3`), ReLU, 2x2 conv 768 (`features.5`), BN (`features.6`), ReLU, linear (`classifier`).
#[derive(Clone, Debug)]
struct AuxHead {
    conv1: usize,
    bn1: Bn,
    conv2: usize,
    bn2: Bn,
    fc: (usize, usize),
}

/// The network's structure; tensors live in a [`ParamStore`] and a [`BnStore`].
#[derive(Clone, Debug)]
pub struct EvalNet {
    /// Its size.
    pub config: EvalConfig,
    /// The cell it repeats.
    pub genotype: Genotype,
    stem_conv: usize,
    stem_bn: Bn,
    cells: Vec<Cell>,
    aux: Option<AuxHead>,
    fc: (usize, usize),
}

/// A freshly built evaluation network and its initial tensors.
pub struct EvalInit {
    /// The structure.
    pub net: EvalNet,
    /// Its weights, initialised.
    pub params: ParamStore,
    /// Its BN statistics, initial.
    pub bns: BnStore,
}

/// One cell's description for `--dry-run`.
#[derive(Clone, Debug, Serialize)]
pub struct CellSummary {
    /// Cell index.
    pub index: usize,
    /// `normal` or `reduction`.
    pub kind: &'static str,
    /// The cell's channels C.
    pub channels: usize,
    /// Channels of its output (C times the concatenated nodes).
    pub output_channels: usize,
    /// Output side length for an input image of the given side.
    pub output_size: usize,
}

/// Per-sample drop-path in training: each non-identity op's output is kept with probability
/// 1 - prob and then scaled by 1 / (1 - prob), the mask drawn per sample from `rng`.
pub struct DropPath<'a> {
    /// Probability of dropping a path.
    pub prob: f32,
    /// Where the masks come from.
    pub rng: &'a mut Rng,
}

impl EvalNet {
    /// Builds the network of `genotype` at size `config`, drawing initial values from `rng`.
    pub fn init(config: EvalConfig, genotype: &Genotype, rng: &mut Rng) -> Result<EvalInit> {
        genotype.validate()?;
        if config.channels < 2
            || !config.channels.is_multiple_of(2)
            || config.layers < 1
            || config.classes < 2
        {
            return Err(DartsError::Config(format!(
                "network needs an even channel count >= 2 (got {}), >= 1 layer and >= 2 classes",
                config.channels
            )));
        }
        let mut b = Builder::new(rng, true);
        let stem_c = 3 * config.channels;
        let stem_conv = b.conv("stem.0.weight".into(), [stem_c, config.in_channels, 3, 3]);
        let stem_bn = b.bn("stem.1".into(), stem_c);
        let (mut c_pp, mut c_p, mut c_cur) = (stem_c, stem_c, config.channels);
        let (mut reduction_prev, mut cells, mut aux) = (false, Vec::new(), None);
        for i in 0..config.layers {
            let reduction = i == config.layers / 3 || i == 2 * config.layers / 3;
            if reduction {
                c_cur *= 2;
            }
            let p = format!("cells.{i}");
            let pre0 = b.preprocess(&p, reduction_prev, c_pp, c_cur);
            let pre1 = b.rcb(&format!("{p}.preprocess1"), c_p, c_cur);
            let (gene, concat) = if reduction {
                (&genotype.reduce, &genotype.reduce_concat)
            } else {
                (&genotype.normal, &genotype.normal_concat)
            };
            let mut ops = Vec::with_capacity(gene.len());
            for (j, &(prim, input)) in gene.iter().enumerate() {
                let stride = if reduction && input < 2 { 2 } else { 1 };
                ops.push((
                    b.cell_op(&format!("{p}._ops.{j}"), prim, c_cur, stride, false),
                    input,
                    stride,
                ));
            }
            cells.push(Cell {
                reduction,
                pre0,
                pre1,
                ops,
                concat: concat.clone(),
            });
            reduction_prev = reduction;
            (c_pp, c_p) = (c_p, concat.len() * c_cur);
            if i == 2 * config.layers / 3 && config.auxiliary {
                let a = "auxiliary_head";
                let conv1 = b.conv(format!("{a}.features.2.weight"), [128, c_p, 1, 1]);
                let bn1 = b.bn(format!("{a}.features.3"), 128);
                let conv2 = b.conv(format!("{a}.features.5.weight"), [768, 128, 2, 2]);
                let bn2 = b.bn(format!("{a}.features.6"), 768);
                let fc = b.linear(&format!("{a}.classifier"), 768, config.classes);
                aux = Some(AuxHead {
                    conv1,
                    bn1,
                    conv2,
                    bn2,
                    fc,
                });
            }
        }
        let fc = b.linear("classifier", c_p, config.classes);
        Ok(EvalInit {
            net: EvalNet {
                config,
                genotype: genotype.clone(),
                stem_conv,
                stem_bn,
                cells,
                aux,
                fc,
            },
            params: b.params,
            bns: b.bns,
        })
    }

    /// Channels and output side of every cell for square inputs of side `size`.
    pub fn cell_summaries(&self, size: usize) -> Vec<CellSummary> {
        let (mut c, mut side) = (self.config.channels, size);
        self.cells
            .iter()
            .enumerate()
            .map(|(index, cell)| {
                if cell.reduction {
                    c *= 2;
                    side = side.div_ceil(2);
                }
                CellSummary {
                    index,
                    kind: if cell.reduction {
                        "reduction"
                    } else {
                        "normal"
                    },
                    channels: c,
                    output_channels: cell.concat.len() * c,
                    output_size: side,
                }
            })
            .collect()
    }

    /// Number of parameters of the auxiliary head (0 without one), given the store's tensors.
    pub fn aux_params(params: &ParamStore) -> usize {
        params
            .names
            .iter()
            .zip(&params.values)
            .filter(|(n, _)| n.starts_with("auxiliary_head."))
            .map(|(_, v)| v.numel())
            .sum()
    }

    /// Logits, and the auxiliary logits when the head exists and the pass is in training mode;
    /// `drop` applies drop-path to every non-identity op of the cells.
    pub fn forward(
        &self,
        t: &mut Tape,
        x: Var,
        ctx: &mut ForwardCtx,
        mut drop: Option<DropPath>,
    ) -> Result<Logits> {
        let s = ctx.stem(t, x, self.stem_conv, &self.stem_bn)?;
        let (mut s0, mut s1) = (s, s);
        let mut aux = None;
        for (i, cell) in self.cells.iter().enumerate() {
            let out = t.scoped(format!("cells.{i}"), |t| {
                self.cell(ctx, t, cell, s0, s1, drop.as_mut())
            })?;
            (s0, s1) = (s1, out);
            if i == 2 * self.config.layers / 3 && ctx.train_bn {
                if let Some(h) = &self.aux {
                    aux = Some(t.scoped("auxiliary_head", |t| self.aux_head(ctx, t, s1, h))?);
                }
            }
        }
        let main = ctx.classifier(t, s1, self.fc)?;
        Ok(Logits { main, aux })
    }

    fn cell(
        &self,
        l: &mut ForwardCtx,
        t: &mut Tape,
        cell: &Cell,
        s0: Var,
        s1: Var,
        mut drop: Option<&mut DropPath>,
    ) -> Result<Var> {
        let s0 = l.preprocess(t, s0, &cell.pre0)?;
        let s1 = t.scoped("preprocess1", |t| l.rcb(t, s1, &cell.pre1))?;
        let mut states = vec![s0, s1];
        for node in 0..cell.ops.len() / 2 {
            let mut terms = Vec::with_capacity(2);
            for j in [2 * node, 2 * node + 1] {
                let (op, input, stride) = &cell.ops[j];
                let y = t.scoped(format!("_ops.{j}"), |t| {
                    l.cell_op(t, states[*input], op, *stride)
                })?;
                let y = match (y, drop.as_deref_mut()) {
                    (Some(y), Some(d)) if d.prob > 0.0 && !matches!(op, CellOp::Identity) => {
                        Some(drop_path(t, y, d)?)
                    }
                    (y, _) => y,
                };
                terms.extend(y);
            }
            let s = match terms.len() {
                0 => {
                    // Both ops are `none`: the node is zero, shaped like a stride-adjusted input.
                    let [n, c, h, w] =
                        t.value(states[cell.ops[2 * node].1]).shape().nchw("cell")?;
                    let st = cell.ops[2 * node].2;
                    t.leaf(Tensor::zeros([n, c, h.div_ceil(st), w.div_ceil(st)]), false)
                }
                1 => terms[0],
                _ => ops::add(t, terms[0], terms[1])?,
            };
            states.push(s);
        }
        let chosen: Vec<Var> = cell.concat.iter().map(|&i| states[i]).collect();
        Ok(ops::concat_channels(t, &chosen)?)
    }

    fn aux_head(&self, l: &mut ForwardCtx, t: &mut Tape, x: Var, h: &AuxHead) -> Result<Var> {
        let [_, _, hh, ww] = t.value(x).shape().nchw("auxiliary_head")?;
        if hh < 5 || ww < 5 || (hh - 5) / 3 + 1 < 2 || (ww - 5) / 3 + 1 < 2 {
            return Err(DartsError::Config(format!("the auxiliary head needs a feature map of at least 8x8 after cell {} (got {hh}x{ww}); use larger images or no auxiliary head (auxiliary weight 0)", 2 * self.config.layers / 3)));
        }
        let y = ops::relu(t, x)?;
        let y = ops::avg_pool2d(
            t,
            y,
            PoolOptions {
                kernel: 5,
                stride: 3,
                padding: 0,
            },
        )?;
        let y = l.conv(t, y, h.conv1, Conv2dOptions::default())?;
        let y = l.bn(t, y, &h.bn1)?;
        let y = l.conv(
            t,
            y,
            h.conv2,
            Conv2dOptions {
                pre_relu: true,
                ..Default::default()
            },
        )?;
        let y = l.bn(t, y, &h.bn2)?;
        let y = ops::relu(t, y)?;
        let y = ops::global_avg_pool(t, y)?; // [N, 768, 1, 1] -> [N, 768] for 8x8 inputs
        Ok(ops::linear(
            t,
            y,
            l.weights[h.fc.0],
            Some(l.weights[h.fc.1]),
        )?)
    }
}

/// `y[n] = x[n] * mask[n] / keep`, `mask[n] ~ Bernoulli(keep)`, keep = 1 - prob.
pub fn drop_path(t: &mut Tape, x: Var, d: &mut DropPath) -> Result<Var> {
    let n = t.value(x).dims()[0];
    let keep = 1.0 - d.prob;
    let factors: Vec<f32> = (0..n)
        .map(|_| {
            if d.rng.next_f32() < keep {
                1.0 / keep
            } else {
                0.0
            }
        })
        .collect();
    Ok(ops::scale_samples(t, x, &factors)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_path_zeroes_whole_samples_and_rescales_the_rest() {
        let mut t = Tape::new();
        let x = t.leaf(Tensor::full([400, 2, 1, 1], 1.0), true);
        let mut rng = Rng::new(1);
        let y = drop_path(
            &mut t,
            x,
            &mut DropPath {
                prob: 0.25,
                rng: &mut rng,
            },
        )
        .unwrap();
        let v = t.value(y).data();
        let kept = v.chunks(2).filter(|s| s[0] > 0.0).count();
        assert!(v
            .chunks(2)
            .all(|s| s[0] == s[1] && (s[0] == 0.0 || (s[0] - 1.0 / 0.75).abs() < 1e-6)));
        assert!(
            (250..350).contains(&kept),
            "kept {kept} of 400 at keep 0.75"
        );
        // The gradient carries the same mask and scale: d sum(y) / dx = y / x = y here.
        let y_values = v.to_vec();
        let loss = ops::sum(&mut t, y).unwrap();
        t.backward(loss).unwrap();
        assert_eq!(t.grad(x).unwrap().data(), &y_values[..]);
    }
}
