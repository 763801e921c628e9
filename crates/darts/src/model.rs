//! The search network of DARTS (SPEC section 1): its structure, built with parameters named as the
//! reference `model_search.py` names them, and its forward pass on the tape.
use crate::params::{BnStore, ParamStore};
use crate::primitives::{EDGES, PRIMITIVES, STEPS};
use crate::weighting::Weighting;
use crate::Result;
use autograd::{Tape, Var};
use ops::{BatchNormOptions, Conv2dOptions, PoolOptions, Slice};
use tensor::{kaiming_uniform, uniform_bias, Rng, Tensor};

/// The size of a search network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetConfig {
    /// Initial channels C.
    pub channels: usize,
    pub layers: usize,
    pub classes: usize,
    /// Image channels (3 for RGB, 1 for MNIST-style data).
    pub in_channels: usize,
}

impl NetConfig {
    /// Indices of the reduction cells: layers/3 and 2*layers/3.
    pub fn is_reduction(&self, cell: usize) -> bool {
        cell == self.layers / 3 || cell == 2 * self.layers / 3
    }

    pub fn validate(&self) -> Result<()> {
        if self.channels < 2
            || self.channels % 2 != 0
            || self.layers < 1
            || self.classes < 2
            || self.in_channels < 1
        {
            return Err(crate::DartsError::Config(format!(
                "network needs an even channel count >= 2 (got {}), >= 1 layer (got {}), >= 2 classes (got {}) and >= 1 input channel (got {})",
                self.channels, self.layers, self.classes, self.in_channels
            )));
        }
        Ok(())
    }
}

/// ReLU -> conv (k x k) -> BN(affine=False). Reference `ReLUConvBN`: `op.1` conv, `op.2` BN.
#[derive(Clone, Debug)]
struct ReluConvBn {
    conv: usize,
    bn: usize,
}

/// Reference `FactorizedReduce`: `conv_1`, `conv_2` (1x1 stride 2, the second on x[:, :, 1:, 1:]),
/// channel concat, `bn`.
#[derive(Clone, Debug)]
struct FactorizedReduce {
    conv1: usize,
    conv2: usize,
    bn: usize,
}

/// Reference `SepConv` (`op.1`, `op.2`, BN `op.3`, `op.5`, `op.6`, BN `op.7`) when `second` is set,
/// `DilConv` (`op.1`, `op.2`, BN `op.3`) otherwise.
#[derive(Clone, Debug)]
struct DwConvs {
    first: [usize; 3],
    second: Option<[usize; 3]>,
    kernel: usize,
    dilation: usize,
}

#[derive(Clone, Debug)]
enum EdgeOp {
    None,
    MaxPool { bn: usize },
    AvgPool { bn: usize },
    Identity,
    Reduce(FactorizedReduce),
    Conv(DwConvs),
}

#[derive(Clone, Debug)]
enum Preprocess {
    Rcb(ReluConvBn),
    Reduce(FactorizedReduce),
}

#[derive(Clone, Debug)]
struct Cell {
    reduction: bool,
    pre0: Preprocess,
    pre1: ReluConvBn,
    /// edges[e][k]: primitive k of edge e.
    edges: Vec<Vec<EdgeOp>>,
}

/// The search supernet's structure; its tensors live in a [`ParamStore`] and a [`BnStore`].
#[derive(Clone, Debug)]
pub struct Supernet {
    pub config: NetConfig,
    stem_conv: usize,
    stem_bn: (usize, usize, usize),
    cells: Vec<Cell>,
    fc: (usize, usize),
}

/// Creates tensors with PyTorch's default initialisation under reference names.
struct Builder<'a> {
    rng: &'a mut Rng,
    params: ParamStore,
    bns: BnStore,
}

impl Builder<'_> {
    fn conv(&mut self, name: String, dims: [usize; 4]) -> usize {
        let w = kaiming_uniform(dims, self.rng).expect("conv weights have rank 4");
        self.params.push(name, w)
    }

    fn bn(&mut self, prefix: String, c: usize) -> usize {
        self.bns.push(prefix, c)
    }

    fn rcb(&mut self, p: &str, c_in: usize, c_out: usize) -> ReluConvBn {
        ReluConvBn {
            conv: self.conv(format!("{p}.op.1.weight"), [c_out, c_in, 1, 1]),
            bn: self.bn(format!("{p}.op.2"), c_out),
        }
    }

    fn fr(&mut self, p: &str, c_in: usize, c_out: usize) -> FactorizedReduce {
        FactorizedReduce {
            conv1: self.conv(format!("{p}.conv_1.weight"), [c_out / 2, c_in, 1, 1]),
            conv2: self.conv(format!("{p}.conv_2.weight"), [c_out / 2, c_in, 1, 1]),
            bn: self.bn(format!("{p}.bn"), c_out),
        }
    }

    fn dw(&mut self, p: &str, at: usize, c: usize, k: usize) -> [usize; 3] {
        [
            self.conv(format!("{p}.op.{at}.weight"), [c, 1, k, k]),
            self.conv(format!("{p}.op.{}.weight", at + 1), [c, c, 1, 1]),
            self.bn(format!("{p}.op.{}", at + 2), c),
        ]
    }

    fn edge(&mut self, p: &str, c: usize, stride: usize) -> Vec<EdgeOp> {
        (0..PRIMITIVES.len())
            .map(|k| {
                let q = format!("{p}._ops.{k}");
                match PRIMITIVES[k] {
                    "none" => EdgeOp::None,
                    "max_pool_3x3" => EdgeOp::MaxPool {
                        bn: self.bn(format!("{q}.1"), c),
                    },
                    "avg_pool_3x3" => EdgeOp::AvgPool {
                        bn: self.bn(format!("{q}.1"), c),
                    },
                    "skip_connect" if stride == 1 => EdgeOp::Identity,
                    "skip_connect" => EdgeOp::Reduce(self.fr(&q, c, c)),
                    "sep_conv_3x3" | "sep_conv_5x5" => {
                        let kernel = if PRIMITIVES[k] == "sep_conv_3x3" {
                            3
                        } else {
                            5
                        };
                        EdgeOp::Conv(DwConvs {
                            first: self.dw(&q, 1, c, kernel),
                            second: Some(self.dw(&q, 5, c, kernel)),
                            kernel,
                            dilation: 1,
                        })
                    }
                    _ => {
                        let kernel = if PRIMITIVES[k] == "dil_conv_3x3" {
                            3
                        } else {
                            5
                        };
                        EdgeOp::Conv(DwConvs {
                            first: self.dw(&q, 1, c, kernel),
                            second: None,
                            kernel,
                            dilation: 2,
                        })
                    }
                }
            })
            .collect()
    }
}

/// A freshly initialised search model: structure, weights, BN statistics, and the two alpha
/// matrices (14 x 8, 1e-3 * N(0, 1)).
pub struct Initialised {
    pub net: Supernet,
    pub params: ParamStore,
    pub bns: BnStore,
    pub alphas: [Tensor; 2],
}

impl Supernet {
    /// Builds the network of `config`, drawing initial values from `rng`.
    pub fn init(config: NetConfig, rng: &mut Rng) -> Result<Initialised> {
        config.validate()?;
        let mut b = Builder {
            rng,
            params: ParamStore::default(),
            bns: BnStore::default(),
        };
        let c = config.channels;
        let stem_c = 3 * c;
        let stem_conv = b.conv("stem.0.weight".into(), [stem_c, config.in_channels, 3, 3]);
        let g = b
            .params
            .push("stem.1.weight".into(), Tensor::full([stem_c], 1.0));
        let be = b.params.push("stem.1.bias".into(), Tensor::zeros([stem_c]));
        let stem_bn = (g, be, b.bn("stem.1".into(), stem_c));
        let (mut c_pp, mut c_p, mut c_cur) = (stem_c, stem_c, c);
        let mut reduction_prev = false;
        let mut cells = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let reduction = config.is_reduction(i);
            if reduction {
                c_cur *= 2;
            }
            let p = format!("cells.{i}");
            let pre0 = if reduction_prev {
                Preprocess::Reduce(b.fr(&format!("{p}.preprocess0"), c_pp, c_cur))
            } else {
                Preprocess::Rcb(b.rcb(&format!("{p}.preprocess0"), c_pp, c_cur))
            };
            let pre1 = b.rcb(&format!("{p}.preprocess1"), c_p, c_cur);
            let edges = crate::primitives::edge_endpoints()
                .iter()
                .enumerate()
                .map(|(e, &(_, input))| {
                    let stride = if reduction && input < 2 { 2 } else { 1 };
                    b.edge(&format!("{p}._ops.{e}"), c_cur, stride)
                })
                .collect();
            cells.push(Cell {
                reduction,
                pre0,
                pre1,
                edges,
            });
            reduction_prev = reduction;
            (c_pp, c_p) = (c_p, STEPS * c_cur);
        }
        let fc_w = kaiming_uniform([config.classes, c_p], b.rng)?;
        let fc_b = uniform_bias(config.classes, c_p, b.rng);
        let fc = (
            b.params.push("classifier.weight".into(), fc_w),
            b.params.push("classifier.bias".into(), fc_b),
        );
        let alphas = [
            Tensor::randn([EDGES, PRIMITIVES.len()], 1e-3, b.rng),
            Tensor::randn([EDGES, PRIMITIVES.len()], 1e-3, b.rng),
        ];
        Ok(Initialised {
            net: Supernet {
                config,
                stem_conv,
                stem_bn,
                cells,
                fc,
            },
            params: b.params,
            bns: b.bns,
            alphas,
        })
    }
}

/// Everything one forward pass reads: the parameter handles on the tape (same order as the
/// [`ParamStore`]), the two alpha handles, and the BN statistics (updated in training mode).
pub struct ForwardCtx<'a> {
    pub weights: &'a [Var],
    pub alphas: [Var; 2],
    pub bns: &'a mut BnStore,
    pub weighting: Weighting,
    /// Batch statistics (and running-stat updates) as PyTorch's `train()`; running statistics otherwise.
    pub train_bn: bool,
}

impl ForwardCtx<'_> {
    fn bn(&mut self, t: &mut Tape, x: Var, i: usize) -> Result<Var> {
        let o = BatchNormOptions {
            training: self.train_bn,
            ..Default::default()
        };
        if self.train_bn {
            self.bns.batches_tracked[i] += 1;
        }
        Ok(ops::batch_norm(
            t,
            x,
            None,
            Some(&mut self.bns.stats[i]),
            o,
        )?)
    }

    fn conv(&self, t: &mut Tape, x: Var, w: usize, o: Conv2dOptions) -> Result<Var> {
        Ok(ops::conv2d(t, x, self.weights[w], o)?)
    }

    fn rcb(&mut self, t: &mut Tape, x: Var, m: &ReluConvBn) -> Result<Var> {
        let y = self.conv(
            t,
            x,
            m.conv,
            Conv2dOptions {
                pre_relu: true,
                ..Default::default()
            },
        )?;
        self.bn(t, y, m.bn)
    }

    fn fr(&mut self, t: &mut Tape, x: Var, m: &FactorizedReduce) -> Result<Var> {
        let [_, _, h, w] = t.value(x).shape().nchw("factorized_reduce")?;
        let o = Conv2dOptions {
            stride: 2,
            pre_relu: true,
            ..Default::default()
        };
        let a = self.conv(t, x, m.conv1, o)?;
        let shifted = ops::slice2d(t, x, Slice::crop(1, 1, h, w))?;
        let b = self.conv(t, shifted, m.conv2, o)?;
        let y = ops::concat_channels(t, &[a, b])?;
        self.bn(t, y, m.bn)
    }

    fn dw_convs(&mut self, t: &mut Tape, x: Var, m: &DwConvs, stride: usize) -> Result<Var> {
        let pad = m.dilation * (m.kernel - 1) / 2;
        let mut y = x;
        for (part, s) in [(Some(m.first), stride), (m.second, 1)] {
            let Some([dw, pw, bn]) = part else { continue };
            let o = Conv2dOptions {
                stride: s,
                padding: pad,
                dilation: m.dilation,
                groups: 1,
                pre_relu: true,
            };
            y = ops::depthwise_conv2d(t, y, self.weights[dw], o)?;
            y = self.conv(t, y, pw, Conv2dOptions::default())?;
            y = self.bn(t, y, bn)?;
        }
        Ok(y)
    }

    /// One primitive on one edge; `None` for the `none` op (it contributes exactly zero).
    fn edge_op(&mut self, t: &mut Tape, x: Var, op: &EdgeOp, stride: usize) -> Result<Option<Var>> {
        let pool = PoolOptions {
            kernel: 3,
            stride,
            padding: 1,
        };
        Ok(match op {
            EdgeOp::None => None,
            EdgeOp::MaxPool { bn } => {
                let y = ops::max_pool2d(t, x, pool)?;
                Some(self.bn(t, y, *bn)?)
            }
            EdgeOp::AvgPool { bn } => {
                let y = ops::avg_pool2d(t, x, pool)?;
                Some(self.bn(t, y, *bn)?)
            }
            EdgeOp::Identity => Some(x),
            EdgeOp::Reduce(m) => Some(self.fr(t, x, m)?),
            EdgeOp::Conv(m) => Some(self.dw_convs(t, x, m, stride)?),
        })
    }

    fn cell(&mut self, t: &mut Tape, cell: &Cell, s0: Var, s1: Var, weights: Var) -> Result<Var> {
        let s0 = t.scoped("preprocess0", |t| match &cell.pre0 {
            Preprocess::Rcb(m) => self.rcb(t, s0, m),
            Preprocess::Reduce(m) => self.fr(t, s0, m),
        })?;
        let s1 = t.scoped("preprocess1", |t| self.rcb(t, s1, &cell.pre1))?;
        let mut states = vec![s0, s1];
        let mut e = 0;
        for _ in 0..STEPS {
            let mut sums = Vec::with_capacity(states.len());
            for (j, &h) in states.clone().iter().enumerate() {
                let stride = if cell.reduction && j < 2 { 2 } else { 1 };
                let mixed = t.scoped(format!("_ops.{e}"), |t| -> Result<Var> {
                    let mut terms = Vec::with_capacity(PRIMITIVES.len());
                    for (k, op) in cell.edges[e].iter().enumerate() {
                        if let Some(y) =
                            t.scoped(format!("_ops.{k}"), |t| self.edge_op(t, h, op, stride))?
                        {
                            terms.push((k, y));
                        }
                    }
                    Ok(ops::weighted_sum(t, weights, e, &terms)?)
                })?;
                sums.push(mixed);
                e += 1;
            }
            states.push(ops::add_n(t, &sums)?);
        }
        Ok(ops::concat_channels(t, &states[2..])?)
    }
}

impl Supernet {
    /// Logits [N, classes] of images x [N, in_channels, H, W].
    pub fn forward(&self, t: &mut Tape, x: Var, ctx: &mut ForwardCtx) -> Result<Var> {
        let mix = [
            ctx.weighting.apply(t, ctx.alphas[0])?,
            ctx.weighting.apply(t, ctx.alphas[1])?,
        ];
        let (g, b, bn) = self.stem_bn;
        let s = t.scoped("stem", |t| -> Result<Var> {
            let y = ctx.conv(
                t,
                x,
                self.stem_conv,
                Conv2dOptions {
                    padding: 1,
                    ..Default::default()
                },
            )?;
            let o = BatchNormOptions {
                training: ctx.train_bn,
                ..Default::default()
            };
            if ctx.train_bn {
                ctx.bns.batches_tracked[bn] += 1;
            }
            Ok(ops::batch_norm(
                t,
                y,
                Some((ctx.weights[g], ctx.weights[b])),
                Some(&mut ctx.bns.stats[bn]),
                o,
            )?)
        })?;
        let (mut s0, mut s1) = (s, s);
        for (i, cell) in self.cells.iter().enumerate() {
            let w = mix[cell.reduction as usize];
            let out = t.scoped(format!("cells.{i}"), |t| ctx.cell(t, cell, s0, s1, w))?;
            (s0, s1) = (s1, out);
        }
        let pooled = ops::global_avg_pool(t, s1)?;
        Ok(t.scoped("classifier", |t| {
            ops::linear(
                t,
                pooled,
                ctx.weights[self.fc.0],
                Some(ctx.weights[self.fc.1]),
            )
        })?)
    }
}
