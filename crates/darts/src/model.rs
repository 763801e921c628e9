//! The search network of DARTS (SPEC section 1): its structure, built with parameters named as the
//! reference `model_search.py` names them, and its forward pass on the tape.
use crate::forward::{ForwardCtx, Logits};
use crate::layers::{Bn, Builder, CellOp, Preprocess, ReluConvBn};
use crate::params::{BnStore, ParamStore};
use crate::primitives::{Primitive, EDGES, STEPS};
use crate::weighting::Weighting;
use crate::Result;
use autograd::{Tape, Var};
use tensor::{Rng, Tensor};

/// The size of a search network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetConfig {
    /// Initial channels C.
    pub channels: usize,
    /// Number of cells.
    pub layers: usize,
    /// Number of classes.
    pub classes: usize,
    /// Image channels (3 for RGB, 1 for MNIST-style data).
    pub in_channels: usize,
}

impl NetConfig {
    /// Indices of the reduction cells: layers/3 and 2*layers/3.
    pub fn is_reduction(&self, cell: usize) -> bool {
        cell == self.layers / 3 || cell == 2 * self.layers / 3
    }

    /// Refuses sizes the network cannot have (odd or zero channels, no cells, no classes or image channels).
    pub fn validate(&self) -> Result<()> {
        if self.channels < 2
            || !self.channels.is_multiple_of(2)
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

#[derive(Clone, Debug)]
struct Cell {
    reduction: bool,
    pre0: Preprocess,
    pre1: ReluConvBn,
    /// edges[e][k]: primitive k of edge e.
    edges: Vec<Vec<CellOp>>,
}

/// The search supernet's structure; its tensors live in a [`ParamStore`] and a [`BnStore`].
#[derive(Clone, Debug)]
pub struct Supernet {
    /// Its size.
    pub config: NetConfig,
    stem_conv: usize,
    stem_bn: Bn,
    cells: Vec<Cell>,
    fc: (usize, usize),
}

/// The eight primitives of one edge, as the reference `MixedOp` builds them (`_ops.{k}`; pools are
/// followed by a non-affine BN at `_ops.{k}.1`).
fn edge(b: &mut Builder, p: &str, c: usize, stride: usize) -> Vec<CellOp> {
    Primitive::ALL
        .into_iter()
        .map(|prim| {
            b.cell_op(
                &format!("{p}._ops.{}", prim.column()),
                prim,
                c,
                stride,
                true,
            )
        })
        .collect()
}

/// A freshly initialised search model: structure, weights, BN statistics, and the two alpha
/// matrices (14 x 8, 1e-3 * N(0, 1)).
pub struct Initialised {
    /// The structure.
    pub net: Supernet,
    /// Its weights, initialised.
    pub params: ParamStore,
    /// Its BN statistics, initial.
    pub bns: BnStore,
    /// alphas_normal and alphas_reduce.
    pub alphas: [Tensor; 2],
}

impl Supernet {
    /// Builds the network of `config`, drawing initial values from `rng`.
    pub fn init(config: NetConfig, rng: &mut Rng) -> Result<Initialised> {
        config.validate()?;
        let mut b = Builder::new(rng, false);
        let stem_c = 3 * config.channels;
        let stem_conv = b.conv("stem.0.weight".into(), [stem_c, config.in_channels, 3, 3]);
        let stem_bn = b.bn_with("stem.1".into(), stem_c, true);
        let (mut c_pp, mut c_p, mut c_cur) = (stem_c, stem_c, config.channels);
        let mut reduction_prev = false;
        let mut cells = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let reduction = config.is_reduction(i);
            if reduction {
                c_cur *= 2;
            }
            let p = format!("cells.{i}");
            let pre0 = b.preprocess(&p, reduction_prev, c_pp, c_cur);
            let pre1 = b.rcb(&format!("{p}.preprocess1"), c_p, c_cur);
            let edges = crate::primitives::edge_endpoints()
                .iter()
                .enumerate()
                .map(|(e, &(_, input))| {
                    edge(
                        &mut b,
                        &format!("{p}._ops.{e}"),
                        c_cur,
                        if reduction && input < 2 { 2 } else { 1 },
                    )
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
        let fc = b.linear("classifier", c_p, config.classes);
        let alphas = [
            Tensor::randn([EDGES, Primitive::ALL.len()], 1e-3, b.rng),
            Tensor::randn([EDGES, Primitive::ALL.len()], 1e-3, b.rng),
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

/// The architecture a search-network pass mixes each edge's primitives with: the handles of
/// alphas_normal and alphas_reduce on the tape, and how they become mixture weights.
#[derive(Clone, Copy, Debug)]
pub struct Mixing {
    /// The handles of alphas_normal and alphas_reduce.
    pub alphas: [Var; 2],
    /// How alphas become mixture weights.
    pub weighting: Weighting,
}

fn cell_forward(
    l: &mut ForwardCtx,
    t: &mut Tape,
    cell: &Cell,
    s0: Var,
    s1: Var,
    weights: Var,
) -> Result<Var> {
    let s0 = l.preprocess(t, s0, &cell.pre0)?;
    let s1 = t.scoped("preprocess1", |t| l.rcb(t, s1, &cell.pre1))?;
    let mut states = vec![s0, s1];
    let mut e = 0;
    for _ in 0..STEPS {
        let mut sums = Vec::with_capacity(states.len());
        for (j, &h) in states.clone().iter().enumerate() {
            let stride = if cell.reduction && j < 2 { 2 } else { 1 };
            let mixed = t.scoped(format!("_ops.{e}"), |t| -> Result<Var> {
                let mut terms = Vec::with_capacity(Primitive::ALL.len());
                for (k, op) in cell.edges[e].iter().enumerate() {
                    if let Some(term) =
                        t.scoped(format!("_ops.{k}"), |t| l.cell_op_term(t, h, op, stride))?
                    {
                        terms.push((k, term));
                    }
                }
                l.mixed(t, weights, e, terms)
            })?;
            sums.push(mixed);
            e += 1;
        }
        states.push(ops::add_n(t, &sums)?);
    }
    Ok(ops::concat_channels(t, &states[2..])?)
}

impl Supernet {
    /// Logits [N, classes] of images x [N, in_channels, H, W] (no auxiliary logits), each edge's
    /// primitives mixed by `mixing`.
    pub fn forward(
        &self,
        t: &mut Tape,
        x: Var,
        ctx: &mut ForwardCtx,
        mixing: Mixing,
    ) -> Result<Logits> {
        let mix = [
            mixing.weighting.apply(t, mixing.alphas[0])?,
            mixing.weighting.apply(t, mixing.alphas[1])?,
        ];
        let s = ctx.stem(t, x, self.stem_conv, &self.stem_bn)?;
        let (mut s0, mut s1) = (s, s);
        for (i, cell) in self.cells.iter().enumerate() {
            let w = mix[cell.reduction as usize];
            let out = t.scoped(format!("cells.{i}"), |t| {
                cell_forward(ctx, t, cell, s0, s1, w)
            })?;
            (s0, s1) = (s1, out);
        }
        let main = ctx.classifier(t, s1, self.fc)?;
        Ok(Logits { main, aux: None })
    }
}
