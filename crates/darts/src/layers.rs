//! Building blocks shared by the search network and the evaluation network: how their tensors are
//! created and named (the reference `operations.py` modules), and how they run on the tape.
use crate::forward::ForwardCtx;
use crate::params::{BnStore, ParamStore};
use crate::primitives::Primitive;
use crate::Result;
use autograd::{Tape, Var};
use ops::{BatchNormOptions, Conv2dOptions, PoolOptions, RunningStats};
use tensor::{kaiming_uniform, uniform_bias, Rng, Tensor};

/// A batch norm: its statistics slot, and (weight, bias) parameter indices when affine.
#[derive(Clone, Debug)]
pub(crate) struct Bn {
    pub stats: usize,
    pub affine: Option<(usize, usize)>,
}

/// A candidate op's output up to its trailing batch norm, when the mixed op folds that BN in
/// ([`ForwardCtx::cell_op_term`]).
pub(crate) struct Term {
    pub y: Var,
    /// The BN to fold in, if any.
    pub bn: Option<Bn>,
    /// y's per-plane BN statistics when its producer took them (training-mode BN only).
    pub planes: Option<Vec<f32>>,
}

impl Term {
    /// An output with nothing to fold in, or a BN whose statistics are taken from y.
    fn of(y: Var, bn: Option<Bn>) -> Term {
        Term {
            y,
            bn,
            planes: None,
        }
    }

    /// An output, the BN to fold in and the statistics its producer took of y's planes.
    fn with_planes(y: Var, bn: &Bn, planes: Vec<f32>) -> Term {
        Term {
            y,
            bn: Some(bn.clone()),
            planes: Some(planes),
        }
    }
}

/// ReLU -> 1x1 conv -> BN: reference `ReLUConvBN` (`op.1` conv, `op.2` BN).
#[derive(Clone, Debug)]
pub(crate) struct ReluConvBn {
    pub conv: usize,
    pub bn: Bn,
}

/// Reference `FactorizedReduce`: `conv_1`, `conv_2` (1x1 stride 2, the second on x[:, :, 1:, 1:]),
/// channel concat, `bn`.
#[derive(Clone, Debug)]
pub(crate) struct FactorizedReduce {
    pub conv1: usize,
    pub conv2: usize,
    pub bn: Bn,
}

/// Reference `SepConv` (`op.1` depthwise, `op.2` pointwise, BN `op.3`, then `op.5`, `op.6`, BN `op.7`)
/// when `second` is set, `DilConv` (`op.1`, `op.2`, BN `op.3`) otherwise.
#[derive(Clone, Debug)]
pub(crate) struct DwConvs {
    pub first: (usize, usize, Bn),
    pub second: Option<(usize, usize, Bn)>,
    pub kernel: usize,
    pub dilation: usize,
}

/// One candidate operation of a cell, built. The search network's pools carry a non-affine BN (the
/// reference `MixedOp` appends one, `{op}.1`); the evaluation network's have none.
#[derive(Clone, Debug)]
pub(crate) enum CellOp {
    /// `none`: contributes exactly zero, so it is skipped.
    Zero,
    MaxPool(Option<Bn>),
    AvgPool(Option<Bn>),
    Identity,
    /// `skip_connect` at stride 2.
    Reduce(FactorizedReduce),
    Conv(DwConvs),
}

/// A cell's first input block: FactorizedReduce after a reduction cell, ReLU-Conv-BN otherwise.
#[derive(Clone, Debug)]
pub(crate) enum Preprocess {
    Rcb(ReluConvBn),
    Reduce(FactorizedReduce),
}

/// Creates tensors with PyTorch's default initialisation under reference names.
pub(crate) struct Builder<'a> {
    pub rng: &'a mut Rng,
    pub params: ParamStore,
    pub bns: BnStore,
    /// Whether the blocks' batch norms have affine parameters (false in the search network).
    pub affine: bool,
}

impl<'a> Builder<'a> {
    pub fn new(rng: &'a mut Rng, affine: bool) -> Self {
        Builder {
            rng,
            params: ParamStore::default(),
            bns: BnStore::default(),
            affine,
        }
    }

    pub fn conv(&mut self, name: String, dims: [usize; 4]) -> usize {
        let w = kaiming_uniform(dims, self.rng).expect("conv weights have rank 4");
        self.params.push(name, w)
    }

    /// A batch norm under `prefix`, affine if asked (weight 1, bias 0, as PyTorch initialises).
    pub fn bn_with(&mut self, prefix: String, c: usize, affine: bool) -> Bn {
        let affine = affine.then(|| {
            (
                self.params
                    .push(format!("{prefix}.weight"), Tensor::full([c], 1.0)),
                self.params
                    .push(format!("{prefix}.bias"), Tensor::zeros([c])),
            )
        });
        Bn {
            stats: self.bns.push(prefix, c),
            affine,
        }
    }

    pub fn bn(&mut self, prefix: String, c: usize) -> Bn {
        self.bn_with(prefix, c, self.affine)
    }

    /// `Linear(d_in, d_out)` as `{prefix}.weight`, `{prefix}.bias`.
    pub fn linear(&mut self, prefix: &str, d_in: usize, d_out: usize) -> (usize, usize) {
        let w = kaiming_uniform([d_out, d_in], self.rng).expect("rank 2");
        let b = uniform_bias(d_out, d_in, self.rng);
        (
            self.params.push(format!("{prefix}.weight"), w),
            self.params.push(format!("{prefix}.bias"), b),
        )
    }

    pub fn rcb(&mut self, p: &str, c_in: usize, c_out: usize) -> ReluConvBn {
        ReluConvBn {
            conv: self.conv(format!("{p}.op.1.weight"), [c_out, c_in, 1, 1]),
            bn: self.bn(format!("{p}.op.2"), c_out),
        }
    }

    pub fn fr(&mut self, p: &str, c_in: usize, c_out: usize) -> FactorizedReduce {
        FactorizedReduce {
            conv1: self.conv(format!("{p}.conv_1.weight"), [c_out / 2, c_in, 1, 1]),
            conv2: self.conv(format!("{p}.conv_2.weight"), [c_out / 2, c_in, 1, 1]),
            bn: self.bn(format!("{p}.bn"), c_out),
        }
    }

    fn dw(&mut self, p: &str, at: usize, c: usize, k: usize) -> (usize, usize, Bn) {
        (
            self.conv(format!("{p}.op.{at}.weight"), [c, 1, k, k]),
            self.conv(format!("{p}.op.{}.weight", at + 1), [c, c, 1, 1]),
            self.bn(format!("{p}.op.{}", at + 2), c),
        )
    }

    /// Primitive `prim` under prefix `p` on `c` channels at `stride`; pools get a BN when `pool_bn`.
    pub fn cell_op(
        &mut self,
        p: &str,
        prim: Primitive,
        c: usize,
        stride: usize,
        pool_bn: bool,
    ) -> CellOp {
        match prim {
            Primitive::None => CellOp::Zero,
            Primitive::MaxPool3x3 => CellOp::MaxPool(pool_bn.then(|| self.bn(format!("{p}.1"), c))),
            Primitive::AvgPool3x3 => CellOp::AvgPool(pool_bn.then(|| self.bn(format!("{p}.1"), c))),
            Primitive::SkipConnect if stride == 1 => CellOp::Identity,
            Primitive::SkipConnect => CellOp::Reduce(self.fr(p, c, c)),
            conv => {
                let (k, separable) = conv.conv().expect("the other primitives are convs");
                CellOp::Conv(self.dw_convs(p, c, k, separable))
            }
        }
    }

    /// A cell's `preprocess0`: FactorizedReduce after a reduction cell, ReLU-Conv-BN otherwise.
    pub fn preprocess(
        &mut self,
        p: &str,
        reduction_prev: bool,
        c_in: usize,
        c_out: usize,
    ) -> Preprocess {
        if reduction_prev {
            Preprocess::Reduce(self.fr(&format!("{p}.preprocess0"), c_in, c_out))
        } else {
            Preprocess::Rcb(self.rcb(&format!("{p}.preprocess0"), c_in, c_out))
        }
    }

    /// `sep_conv_kxk` (dilation 1, two stacked blocks) or `dil_conv_kxk` (dilation 2, one block).
    pub fn dw_convs(&mut self, p: &str, c: usize, kernel: usize, separable: bool) -> DwConvs {
        let first = self.dw(p, 1, c, kernel);
        let second = separable.then(|| self.dw(p, 5, c, kernel));
        DwConvs {
            first,
            second,
            kernel,
            dilation: if separable { 1 } else { 2 },
        }
    }
}

/// Running the blocks in a pass's context (parameter handles, BN statistics and mode).
impl ForwardCtx<'_> {
    /// A BN's options for this pass and its running statistics (a training pass counts a batch).
    fn bn_state(&mut self, bn: &Bn) -> (Option<&mut RunningStats>, BatchNormOptions) {
        self.count_batch(bn);
        let o = self.bn_options();
        (Some(&mut self.bns.stats[bn.stats]), o)
    }

    /// The options every BN of this pass runs with.
    fn bn_options(&self) -> BatchNormOptions {
        BatchNormOptions {
            training: self.train_bn,
            ..Default::default()
        }
    }

    /// A training pass counts a batch in `bn`'s `num_batches_tracked`.
    fn count_batch(&mut self, bn: &Bn) {
        if self.train_bn {
            self.bns.batches_tracked[bn.stats] += 1;
        }
    }

    pub(crate) fn bn(&mut self, t: &mut Tape, x: Var, bn: &Bn) -> Result<Var> {
        let affine = bn.affine.map(|(g, b)| (self.weights[g], self.weights[b]));
        let (stats, o) = self.bn_state(bn);
        Ok(ops::batch_norm(t, x, affine, stats, o)?)
    }

    pub(crate) fn conv(&self, t: &mut Tape, x: Var, w: usize, o: Conv2dOptions) -> Result<Var> {
        Ok(ops::conv2d(t, x, self.weights[w], o)?)
    }

    /// conv then BN (the preprocessing blocks); one fused node when the BN has no affine
    /// parameters, so the conv output is never stored.
    pub(crate) fn conv_bn(
        &mut self,
        t: &mut Tape,
        x: Var,
        w: usize,
        o: Conv2dOptions,
        bn: &Bn,
    ) -> Result<Var> {
        if bn.affine.is_some() {
            let y = self.conv(t, x, w, o)?;
            return self.bn(t, y, bn);
        }
        let w = self.weights[w];
        let (stats, opts) = self.bn_state(bn);
        Ok(ops::conv2d_bn(t, x, w, o, stats, opts)?)
    }

    /// The stem: 3x3 conv to 3C channels, then an affine BN.
    pub(crate) fn stem(&mut self, t: &mut Tape, x: Var, conv: usize, bn: &Bn) -> Result<Var> {
        t.scoped("stem", |t| {
            let o = Conv2dOptions {
                padding: 1,
                ..Default::default()
            };
            let y = self.conv(t, x, conv, o)?;
            self.bn(t, y, bn)
        })
    }

    /// A cell's `preprocess0` block.
    pub(crate) fn preprocess(&mut self, t: &mut Tape, x: Var, m: &Preprocess) -> Result<Var> {
        t.scoped("preprocess0", |t| match m {
            Preprocess::Rcb(m) => self.rcb(t, x, m),
            Preprocess::Reduce(m) => self.fr(t, x, m),
        })
    }

    /// One candidate operation at `stride` (3x3 pools, padding 1); `None` for `none`.
    pub(crate) fn cell_op(
        &mut self,
        t: &mut Tape,
        x: Var,
        op: &CellOp,
        stride: usize,
    ) -> Result<Option<Var>> {
        match self.cell_op_term(t, x, op, stride)? {
            Some(Term {
                y, bn: Some(bn), ..
            }) => Ok(Some(self.bn(t, y, &bn)?)),
            other => Ok(other.map(|term| term.y)),
        }
    }

    /// [`ForwardCtx::cell_op`] up to its trailing batch norm where that BN has no affine
    /// parameters (the search network's: [`ForwardCtx::mixed`] folds it into the mixed op):
    /// the output before it and the BN, or the whole op's output and `None`.
    pub(crate) fn cell_op_term(
        &mut self,
        t: &mut Tape,
        x: Var,
        op: &CellOp,
        stride: usize,
    ) -> Result<Option<Term>> {
        let pool = PoolOptions {
            kernel: 3,
            stride,
            padding: 1,
        };
        Ok(match op {
            CellOp::Zero => None,
            // A training-mode BN to fold in: its statistics taken while each plane is in cache.
            CellOp::MaxPool(Some(bn)) if self.train_bn && bn.affine.is_none() => {
                let (y, planes) = ops::max_pool2d_stats(t, x, pool)?;
                Some(Term::with_planes(y, bn, planes))
            }
            CellOp::AvgPool(Some(bn)) if self.train_bn && bn.affine.is_none() => {
                let (y, planes) = ops::avg_pool2d_stats(t, x, pool)?;
                Some(Term::with_planes(y, bn, planes))
            }
            CellOp::MaxPool(bn) => Some(Term::of(ops::max_pool2d(t, x, pool)?, bn.clone())),
            CellOp::AvgPool(bn) => Some(Term::of(ops::avg_pool2d(t, x, pool)?, bn.clone())),
            CellOp::Identity => Some(Term::of(x, None)),
            CellOp::Reduce(m) if m.bn.affine.is_none() => {
                let y = self.fr_unnormalised(t, x, m)?;
                Some(Term::of(y, Some(m.bn.clone())))
            }
            CellOp::Reduce(m) => Some(Term::of(self.fr(t, x, m)?, None)),
            CellOp::Conv(m) => Some(self.dw_convs(t, x, m, stride)?),
        })
    }

    /// The mixed op of edge `row`: sum over `terms` (column k, output and its trailing
    /// non-affine BN from [`ForwardCtx::cell_op_term`]) of `weights[row, k]` times the
    /// normalised output, as one node ([`ops::weighted_sum_bn`]).
    pub(crate) fn mixed(
        &mut self,
        t: &mut Tape,
        weights: Var,
        row: usize,
        terms: Vec<(usize, Term)>,
    ) -> Result<Var> {
        for bn in terms.iter().filter_map(|(_, term)| term.bn.as_ref()) {
            self.count_batch(bn);
        }
        let o = self.bn_options();
        let slots: Vec<Option<usize>> = terms
            .iter()
            .map(|(_, term)| term.bn.as_ref().map(|b| b.stats))
            .collect();
        // Each term's running statistics, borrowed together (an edge's BNs are distinct).
        let mut running: Vec<Option<&mut RunningStats>> = slots.iter().map(|_| None).collect();
        if let (Some(&lo), Some(&hi)) = (slots.iter().flatten().min(), slots.iter().flatten().max())
        {
            for (i, rs) in self.bns.stats[lo..=hi].iter_mut().enumerate() {
                if let Some(j) = slots.iter().position(|&s| s == Some(lo + i)) {
                    running[j] = Some(rs);
                }
            }
        }
        let terms = terms
            .into_iter()
            .zip(running)
            .map(|((k, term), rs)| match (term.bn, term.planes) {
                (Some(_), Some(planes)) => (k, term.y, ops::Norm::BnPlanes(rs, planes)),
                (Some(_), None) => (k, term.y, ops::Norm::Bn(rs)),
                (None, _) => (k, term.y, ops::Norm::Identity),
            })
            .collect();
        Ok(ops::weighted_sum_bn(t, weights, row, terms, o)?)
    }

    /// Both networks' head: global average pooling, then the linear classifier `fc` (weight, bias).
    pub(crate) fn classifier(&self, t: &mut Tape, x: Var, fc: (usize, usize)) -> Result<Var> {
        let pooled = ops::global_avg_pool(t, x)?;
        Ok(t.scoped("classifier", |t| {
            ops::linear(t, pooled, self.weights[fc.0], Some(self.weights[fc.1]))
        })?)
    }

    pub(crate) fn rcb(&mut self, t: &mut Tape, x: Var, m: &ReluConvBn) -> Result<Var> {
        self.conv_bn(
            t,
            x,
            m.conv,
            Conv2dOptions {
                pre_relu: true,
                ..Default::default()
            },
            &m.bn,
        )
    }

    pub(crate) fn fr(&mut self, t: &mut Tape, x: Var, m: &FactorizedReduce) -> Result<Var> {
        let y = self.fr_unnormalised(t, x, m)?;
        self.bn(t, y, &m.bn)
    }

    /// FactorizedReduce without its BN: both strided 1x1 convs, channels concatenated, one node.
    fn fr_unnormalised(&mut self, t: &mut Tape, x: Var, m: &FactorizedReduce) -> Result<Var> {
        let (w1, w2) = (self.weights[m.conv1], self.weights[m.conv2]);
        Ok(ops::factorized_reduce(t, x, w1, w2)?)
    }

    /// The sep/dil conv blocks; the last block's BN is left to the caller when it has no affine
    /// parameters (returned with the output before it, as [`ForwardCtx::cell_op_term`] does).
    pub(crate) fn dw_convs(
        &mut self,
        t: &mut Tape,
        x: Var,
        m: &DwConvs,
        stride: usize,
    ) -> Result<Term> {
        let pad = m.dilation * (m.kernel - 1) / 2;
        let blocks: Vec<_> = [(Some(&m.first), stride), (m.second.as_ref(), 1)]
            .into_iter()
            .filter_map(|(part, s)| part.map(|p| (p, s)))
            .collect();
        let mut y = x;
        for (i, ((dw, pw, bn), s)) in blocks.iter().enumerate() {
            let o = Conv2dOptions {
                stride: *s,
                padding: pad,
                dilation: m.dilation,
                groups: 1,
                pre_relu: true,
            };
            if i + 1 == blocks.len() && bn.affine.is_none() {
                let (dw, pw) = (self.weights[*dw], self.weights[*pw]);
                // A training-mode BN's statistics, taken while each output plane is in cache.
                return Ok(if self.train_bn {
                    let (y, planes) = ops::separable_conv_stats(t, y, dw, pw, o)?;
                    Term::with_planes(y, bn, planes)
                } else {
                    Term::of(ops::separable_conv(t, y, dw, pw, o)?, Some(bn.clone()))
                });
            }
            y = self.separable_bn(t, y, (*dw, *pw), o, bn)?;
        }
        Ok(Term::of(y, None))
    }

    /// ReLU -> depthwise conv -> 1x1 conv -> BN: one node when the BN has no affine parameters
    /// (neither the depthwise output nor the 1x1 conv's is stored), else the separable node and
    /// the BN.
    fn separable_bn(
        &mut self,
        t: &mut Tape,
        x: Var,
        (dw, pw): (usize, usize),
        o: Conv2dOptions,
        bn: &Bn,
    ) -> Result<Var> {
        let (dw, pw) = (self.weights[dw], self.weights[pw]);
        if bn.affine.is_some() {
            let y = ops::separable_conv(t, x, dw, pw, o)?;
            return self.bn(t, y, bn);
        }
        let (stats, opts) = self.bn_state(bn);
        Ok(ops::separable_conv_bn(t, x, dw, pw, o, stats, opts)?)
    }
}
