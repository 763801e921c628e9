//! The mixed op's weighted sum: out = sum_k w[row, k] * x_k, with the weights themselves on the tape
//! ([`weighted_sum`]); and the same with each term's trailing batch norm folded in
//! ([`weighted_sum_bn`]).
use crate::batchnorm::{bn_shape, statistics};
use crate::check;
use crate::{BatchNormOptions, RunningStats};
use autograd::{Backward, Deferred, Error, GradSlots, Result, Tape, Tensor, Var};
use kernels::batchnorm::BnShape;
use kernels::elementwise as ke;
use kernels::mixed as km;
use std::any::{Any, TypeId};
use std::sync::Arc;

struct WeightedSumBack {
    row_offset: usize,
    columns: Vec<usize>,
}
impl Backward for WeightedSumBack {
    /// dx_k = w[row, k] * dy; dw[row, k] = <dy, x_k>. Inputs: [weights, x_0, x_1, ...].
    fn backward(&self, inputs: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        let dots = grads.wants(0).then(|| {
            let xs: Vec<&[f32]> = inputs[1..].iter().map(|t| t.data()).collect();
            let mut partial = grads.scratch(ke::weighted_sum_dots_len(g.numel(), xs.len()));
            let mut dots = vec![0.0; xs.len()];
            ke::weighted_sum_dots(g.data(), &xs, &mut partial, &mut dots);
            grads.recycle(partial);
            dots
        });
        let w = inputs[0].data();
        let mut outs = grads.outs().into_iter();
        if let (Some(dw), Some(dots)) = (outs.next().flatten(), dots) {
            let dw = dw.accumulate();
            for (&k, d) in self.columns.iter().zip(dots) {
                dw[self.row_offset + k] += d;
            }
        }
        // Each x_k's gradient is written whole into a fresh slot, added into an accumulated one.
        for (&k, dx) in self.columns.iter().zip(outs) {
            if let Some(dx) = dx {
                ke::axpy_to(w[self.row_offset + k], g.data(), dx.data, dx.add);
            }
        }
    }

    /// K terms: forward K multiply-adds per output value; backward K dots and K axpys.
    fn cost(&self, _: &[&Tensor], y: &Tensor) -> autograd::Cost {
        let (k, n) = (self.columns.len() as f64, y.numel() as f64);
        autograd::Cost {
            forward: autograd::Work::new(2.0 * k * n, (k + 1.0) * n),
            backward: autograd::Work::new(4.0 * k * n, n + 3.0 * k * n),
        }
    }
}

/// sum over `terms` (k, x_k) of `weights[row, k] * x_k`. `weights` is `[rows, K]` (or `[K]` with row 0);
/// all x_k share one shape. Terms may leave columns out: DARTS's `none` op contributes exactly zero,
/// so it is simply not passed (its weight then gets zero gradient, as it would from 0 * w).
pub fn weighted_sum(
    tape: &mut Tape,
    weights: Var,
    row: usize,
    terms: &[(usize, Var)],
) -> Result<Var> {
    const OP: &str = "weighted_sum";
    let cols = check_terms(tape, weights, row, terms, OP)?;
    let w = tape.value(weights).data();
    let ws: Vec<f32> = terms.iter().map(|&(k, _)| w[row * cols + k]).collect();
    let mut y = tape.buffer(tape.value(terms[0].1).shape().clone());
    let parts: Vec<&[f32]> = terms.iter().map(|&(_, x)| tape.value(x).data()).collect();
    ke::weighted_sum(&ws, &parts, y.data_mut());
    let inputs: Vec<Var> = std::iter::once(weights)
        .chain(terms.iter().map(|&(_, x)| x))
        .collect();
    Ok(tape.push(
        OP,
        y,
        &inputs,
        WeightedSumBack {
            row_offset: row * cols,
            columns: terms.iter().map(|&(k, _)| k).collect(),
        },
    ))
}

/// Checks a mixed op's arguments (row in range, at least one term, columns in range and distinct,
/// inputs of one shape); returns the weights' columns.
fn check_terms(
    tape: &Tape,
    weights: Var,
    row: usize,
    terms: &[(usize, Var)],
    op: &'static str,
) -> Result<usize> {
    let (rows, cols) = crate::softmax::rows_cols(tape, weights, op)?;
    check::arg(row < rows, op, || {
        format!("row {row} out of range for {rows} rows of weights")
    })?;
    check::arg(!terms.is_empty(), op, || "needs at least one term".into())?;
    for &(k, x) in terms {
        check::arg(k < cols, op, || {
            format!("column {k} out of range for {cols} weights per row")
        })?;
        check::same_shape(tape, terms[0].1, x, op)?;
    }
    if terms
        .iter()
        .enumerate()
        .any(|(i, (k, _))| terms[..i].iter().any(|(k2, _)| k2 == k))
    {
        return Err(Error::BadArgument {
            op,
            why: "a column appears twice".into(),
        });
    }
    Ok(cols)
}

/// A term's normalisation in [`weighted_sum_bn`]'s backward: none, or a batch norm's (a, b).
#[derive(Clone)]
enum TermNorm {
    Identity,
    Bn { a: Vec<f32>, b: Vec<f32> },
}

impl TermNorm {
    fn kernel(&self, training: bool) -> km::Norm<'_> {
        match self {
            TermNorm::Identity => km::Norm::Identity,
            TermNorm::Bn { a, b } => km::Norm::Bn {
                a,
                b,
                batch: training,
            },
        }
    }
}

/// One term's input gradient handed to its producer as a recipe ([`Deferred`]): the term's
/// weight, normalisation and coefficients with the mixed op's output gradient g. A separable
/// block makes it sample by sample in cache from g and its own output
/// ([`kernels::separable::Upstream::Term`]); written out, it is [`km::input_grads`] for this
/// term alone (the same bits either way).
pub(crate) struct TermGrad {
    shape: BnShape,
    w: f32,
    norm: TermNorm,
    training: bool,
    /// The term's (A, B, K) per channel ([`km::coefficients`]).
    coef: Vec<f32>,
    g: Arc<Tensor>,
}

impl TermGrad {
    /// The term, with `x` (the producer's output) as its input.
    fn term<'a>(&'a self, x: &'a [f32]) -> km::Term<'a> {
        km::Term {
            w: self.w,
            x,
            norm: self.norm.kernel(self.training),
        }
    }

    /// The recipe behind a deferred gradient that the producer's `takes_deferred` accepted.
    pub(crate) fn of(d: &dyn Deferred) -> &TermGrad {
        (d.as_any().downcast_ref::<TermGrad>()).expect("takes_deferred accepts term gradients only")
    }

    /// The gradient plane by plane, for the producer whose output is `x`.
    pub(crate) fn planes<'a>(&'a self, x: &'a [f32]) -> km::TermPlanes<'a> {
        km::TermPlanes {
            term: self.term(x),
            g: self.g.data(),
            coef: &self.coef,
            c: self.shape.c,
        }
    }
}

impl Deferred for TermGrad {
    fn write(&self, value: &Tensor, out: &mut [f32]) {
        let dx = km::Dx {
            data: out,
            add: false,
        };
        let term = [self.term(value.data())];
        km::input_grads(
            self.shape,
            &term,
            self.g.data(),
            &self.coef,
            &mut [Some(dx)],
        );
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn release(self: Box<Self>) -> Option<Tensor> {
        Arc::try_unwrap(self.g).ok()
    }
}

struct WeightedSumBnBack {
    shape: BnShape,
    row_offset: usize,
    columns: Vec<usize>,
    norms: Vec<TermNorm>,
    training: bool,
    /// Terms whose batch statistics the forward read them for (training-mode BNs without
    /// their producer's plane statistics).
    stats_read: usize,
}

impl WeightedSumBnBack {
    fn terms<'a>(&'a self, inputs: &[&'a Tensor]) -> Vec<km::Term<'a>> {
        let w = inputs[0].data();
        let xs = inputs[1..].iter().map(|t| t.data());
        (self.columns.iter().zip(xs).zip(&self.norms))
            .map(|((&k, x), norm)| km::Term {
                w: w[self.row_offset + k],
                x,
                norm: norm.kernel(self.training),
            })
            .collect()
    }
}

impl Backward for WeightedSumBnBack {
    /// With dy_k = w_k g and y_k = n_k(x_k): dw_k = <g, y_k>; dx_k = dy_k (identity), the BN's
    /// VJP from its output y_k (training: invstd (dy_k - mean(dy_k) - y_k mean(dy_k y_k)), eval:
    /// invstd dy_k). Two passes over g and the x_k ([`kernels::mixed`]). Inputs: [weights, x_0, ...].
    fn backward(&self, inputs: &[&Tensor], _: &Tensor, g: &Tensor, grads: &mut GradSlots) {
        let (s, k) = (self.shape, self.columns.len());
        let terms = self.terms(inputs);
        let needs_sums = grads.wants(0) || (self.training && (1..=k).any(|i| grads.wants(i)));
        let mut sums = grads.scratch(km::sums_len(s, k));
        let mut coef = grads.scratch(km::coef_len(s, k));
        let mut dots = vec![0.0; k];
        if needs_sums {
            km::plane_sums(s, &terms, g.data(), &mut sums);
            km::coefficients(s, &terms, &sums, &mut coef, &mut dots);
        }
        // A term whose producer makes its gradient where it reads it gets the recipe instead.
        if let Some(shared) = grads.shared_grad_out() {
            let per_term = km::coef_len(s, 1);
            for (j, t) in terms.iter().enumerate() {
                if grads.can_defer(j + 1, TypeId::of::<TermGrad>()) {
                    let recipe = TermGrad {
                        shape: s,
                        w: t.w,
                        norm: self.norms[j].clone(),
                        training: self.training,
                        coef: coef[j * per_term..][..per_term].to_vec(),
                        g: Arc::clone(&shared),
                    };
                    grads.defer(j + 1, Box::new(recipe));
                }
            }
        }
        let mut outs = grads.outs().into_iter();
        if let Some(dw) = outs.next().flatten() {
            let dw = dw.accumulate();
            for (&k, d) in self.columns.iter().zip(dots) {
                dw[self.row_offset + k] += d;
            }
        }
        // Each x_k's gradient is written whole into a fresh slot, added into an accumulated one.
        let mut dxs: Vec<Option<km::Dx>> = outs
            .map(|o| {
                o.map(|o| km::Dx {
                    data: o.data,
                    add: o.add,
                })
            })
            .collect();
        km::input_grads(s, &terms, g.data(), &coef, &mut dxs);
        drop(dxs);
        grads.recycle(sums);
        grads.recycle(coef);
    }

    /// K terms over n values. Forward: a statistics pass per training-mode BN term that came
    /// without its producer's plane statistics (a sum and a sum of squared deviations: 4 flops
    /// per value), then per term n(x) = a x + b and the
    /// weighted add (4 flops); K + stats reads and one write. Backward (a training-mode BN term;
    /// the others do less): dy = w g, n(x) and three sums (9 flops), then dy, n(x) and
    /// a dy + b n(x) + k (9 flops); g and each x_k read twice, each dx_k written. (A term
    /// whose gradient goes to its producer as a recipe is read once here and made by the
    /// producer: the cost is stated when the node is recorded, before that is known.)
    fn cost(&self, _: &[&Tensor], y: &Tensor) -> autograd::Cost {
        let (k, n) = (self.columns.len() as f64, y.numel() as f64);
        let stats = self.stats_read as f64;
        autograd::Cost {
            forward: autograd::Work::new(4.0 * (k + stats) * n, (k + 1.0 + stats) * n),
            backward: autograd::Work::new(18.0 * k * n, (2.0 * (k + 1.0) + k) * n),
        }
    }

    /// A sum's gradient passed through as it is ([`autograd::PassThrough`]): every use of g
    /// here is `0.0 + w g` or a product summed from 0.0, which give the same bits for -0.0 as
    /// for the copy's 0.0.
    fn takes_deferred(&self, kind: TypeId) -> bool {
        kind == TypeId::of::<autograd::PassThrough>()
    }
}

/// What follows a term of [`weighted_sum_bn`] before it is weighted.
pub enum Norm<'a> {
    /// Nothing: the term is x itself.
    Identity,
    /// A batch norm without affine parameters, with these running statistics (updated in
    /// training mode; eval mode requires them).
    Bn(Option<&'a mut RunningStats>),
    /// As `Bn`, with the term's per-plane statistics ([N, C, 2]) that its producer took while
    /// each plane was in cache ([`crate::separable_conv_stats`], [`crate::max_pool2d_stats`],
    /// [`crate::avg_pool2d_stats`]): training mode merges them instead of reading the term once
    /// more (the same bits); eval mode does not need them.
    BnPlanes(Option<&'a mut RunningStats>, Vec<f32>),
}

/// The mixed op with each term's trailing non-affine batch norm folded in:
/// sum over `terms` (k, x_k, n_k) of `weights[row, k] * n_k(x_k)`, x_k all [N, C, H, W] of one
/// shape, n_k the identity or a BN with the options `bn` ([`crate::batch_norm`]'s semantics).
/// Terms and weights as in [`weighted_sum`]. The same values as the BNs then [`weighted_sum`],
/// but no normalised tensor is stored or written: the backward makes n_k(x_k) again in
/// registers (DARTS's pool, conv and strided skip edges all end in such a BN).
pub fn weighted_sum_bn(
    tape: &mut Tape,
    weights: Var,
    row: usize,
    terms: Vec<(usize, Var, Norm<'_>)>,
    bn: BatchNormOptions,
) -> Result<Var> {
    const OP: &str = "weighted_sum_bn";
    let pairs: Vec<(usize, Var)> = terms.iter().map(|&(k, x, _)| (k, x)).collect();
    let cols = check_terms(tape, weights, row, &pairs, OP)?;
    let dims = tape.value(pairs[0].1).dims().to_vec();
    let shape = bn_shape(OP, &dims)?;
    let mut norms = Vec::with_capacity(terms.len());
    let mut stats_read = 0;
    for (k, x, norm) in terms {
        let (running, planes) = match norm {
            Norm::Identity => {
                norms.push(TermNorm::Identity);
                continue;
            }
            Norm::Bn(running) => (running, None),
            Norm::BnPlanes(running, planes) => {
                let want = 2 * shape.n * shape.c;
                check::arg(planes.len() == want, OP, || {
                    format!(
                        "term {k}: {} plane statistics for an input {dims:?} (want {want})",
                        planes.len()
                    )
                })?;
                (running, Some(planes))
            }
        };
        stats_read += usize::from(bn.training && planes.is_none());
        let x = tape.value(x).data();
        let (mean, var) = statistics(OP, shape, &dims, x, planes.as_deref(), running, bn)?;
        let (mut a, mut b) = (vec![0.0; shape.c], vec![0.0; shape.c]);
        km::norm_coefficients(&mean, &var, bn.eps, &mut a, &mut b);
        norms.push(TermNorm::Bn { a, b });
    }
    let back = WeightedSumBnBack {
        shape,
        row_offset: row * cols,
        columns: pairs.iter().map(|&(k, _)| k).collect(),
        norms,
        training: bn.training,
        stats_read,
    };
    let mut y = tape.buffer(dims);
    {
        let values: Vec<&Tensor> = std::iter::once(tape.value(weights))
            .chain(pairs.iter().map(|&(_, x)| tape.value(x)))
            .collect();
        km::forward(shape, &back.terms(&values), y.data_mut());
    }
    let inputs: Vec<Var> = std::iter::once(weights)
        .chain(pairs.iter().map(|&(_, x)| x))
        .collect();
    Ok(tape.push(OP, y, &inputs, back))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check, min_channel_std, tensor};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn weighted_sum_gradient((w, a, b, c) in (1usize..3, 1usize..4).prop_flat_map(|(n, h)|
            (tensor(vec![3, 8]), tensor(vec![n, 2, h, h]), tensor(vec![n, 2, h, h]), tensor(vec![n, 2, h, h])))) {
            // Row 1, columns 1, 4 and 7 (column 0, `none`, left out).
            check(|t, v| weighted_sum(t, v[0], 1, &[(1, v[1]), (4, v[2]), (7, v[3])]), &[w, a, b, c], 25);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Training mode: a BN term with running statistics, an identity term, a BN term without;
        /// eval mode: a BN term and an identity. Finite differences, and the composition of the
        /// separate ops (batch_norm, then weighted_sum): values, gradients, running statistics.
        #[test]
        fn weighted_sum_bn_gradient_and_composition((w, a, b, c) in (2usize..4, 1usize..3, 1usize..4).prop_flat_map(|(n, ch, h)|
            (tensor(vec![3, 8]), tensor(vec![n, ch, h, h + 1]), tensor(vec![n, ch, h, h + 1]), tensor(vec![n, ch, h, h + 1])))) {
            prop_assume!(min_channel_std(&a) >= 0.2 && min_channel_std(&c) >= 0.2, "a nearly constant channel: FD step too coarse");
            let ch = a.dims()[1];
            let train = BatchNormOptions::default();
            check(|t, v| {
                let mut rs = RunningStats::new(ch);
                weighted_sum_bn(t, v[0], 2, vec![(1, v[1], Norm::Bn(Some(&mut rs))), (3, v[2], Norm::Identity), (6, v[3], Norm::Bn(None))], train)
            }, &[w.clone(), a.clone(), b.clone(), c.clone()], 26);
            let eval = BatchNormOptions { training: false, ..train };
            let running = RunningStats { mean: vec![0.1; ch], var: vec![0.7; ch] };
            check(|t, v| {
                let mut rs = running.clone();
                weighted_sum_bn(t, v[0], 0, vec![(7, v[1], Norm::Bn(Some(&mut rs))), (2, v[2], Norm::Identity)], eval)
            }, &[w.clone(), a.clone(), b.clone()], 27);
            let run = |folded: bool| {
                let mut t = Tape::new();
                let v: Vec<Var> = [&w, &a, &b, &c].iter().map(|x| t.leaf((*x).clone(), true)).collect();
                let (mut r1, mut r2) = (RunningStats::new(ch), RunningStats::new(ch));
                let y = if folded {
                    weighted_sum_bn(&mut t, v[0], 1, vec![(1, v[1], Norm::Bn(Some(&mut r1))), (3, v[2], Norm::Identity), (6, v[3], Norm::Bn(Some(&mut r2)))], train).unwrap()
                } else {
                    let ya = crate::batch_norm(&mut t, v[1], None, Some(&mut r1), train).unwrap();
                    let yc = crate::batch_norm(&mut t, v[3], None, Some(&mut r2), train).unwrap();
                    weighted_sum(&mut t, v[0], 1, &[(1, ya), (3, v[2]), (6, yc)]).unwrap()
                };
                let rr = Tensor::randn(t.value(y).shape().clone(), 1.0, &mut tensor::Rng::new(5));
                let l = crate::dot_const(&mut t, y, &rr).unwrap();
                t.backward(l).unwrap();
                let grads: Vec<Tensor> = v.iter().map(|&x| t.grad(x).unwrap().clone()).collect();
                (t.value(y).clone(), grads, r1, r2)
            };
            let (f, u) = (run(true), run(false));
            prop_assert!(f.0.max_abs_diff(&u.0) < 1e-5, "forward differs by {}", f.0.max_abs_diff(&u.0));
            for (i, (gf, gu)) in f.1.iter().zip(&u.1).enumerate() {
                prop_assert!(gf.max_abs_diff(gu) < 1e-3, "input {i}'s gradient differs by {}", gf.max_abs_diff(gu));
            }
            prop_assert_eq!((f.2, f.3), (u.2, u.3));
        }
    }

    /// A separable block's gradient from the mixed op comes as a recipe (`TermGrad`) that the
    /// block makes sample by sample: the same bits for every input as the gradient written out
    /// (the blocks' outputs retained: the tape writes the recipes out), in training and eval
    /// mode, for a BN and an identity term, beside pools that take their gradients written; with a second consumer of a block's output, the
    /// recipe is not made (that consumer's gradient came first) or is written out and added to
    /// (it comes after), as where the block is two terms of the mixed op; and each case's count
    /// of recipes used as such.
    #[test]
    fn producers_take_their_term_gradient_deferred_with_the_same_bits() {
        use crate::conv::Conv2dOptions;
        let mut rng = tensor::Rng::new(31);
        let x = Tensor::uniform([3, 4, 6, 6], -1.0, 1.0, &mut rng);
        let w_dw = Tensor::uniform([4, 1, 3, 3], -1.0, 1.0, &mut rng);
        let w_pw = Tensor::uniform([4, 4, 1, 1], -1.0, 1.0, &mut rng);
        let w_dw2 = Tensor::uniform([4, 1, 5, 5], -1.0, 1.0, &mut rng);
        let alphas = Tensor::uniform([1, 8], -1.0, 1.0, &mut rng);
        // The loss's weights, some of them -0.0: a gradient passed through keeps that sign where
        // a written copy (0.0 + v) has 0.0.
        let mut r = Tensor::uniform([3, 4, 6, 6], -1.0, 1.0, &mut rng);
        r.data_mut().iter_mut().step_by(7).for_each(|v| *v = -0.0);
        // `other`: s1 has no other consumer (0), one recorded after the mixed op (1), before (2),
        // is the mixed op's term twice (3); or the mixed op's output is scaled (4), or added to
        // itself (5: its two gradients passed through, the second written out), or a term of
        // another mixed op (6: which takes no term recipe). In cases 1 and 2 the mixed op's output is a term
        // of a sum, which passes its gradient through (`PassThrough`) unless it is retained.
        // `retain`: every recipe's receiver retains its gradient, so none is made.
        // `stats`: gradient statistics recorded (they need every gradient's values).
        let run = |training: bool, retain: bool, other: u8, stats: bool| {
            let mut t = Tape::new();
            let v: Vec<Var> = [&alphas, &x, &w_dw, &w_pw, &w_dw2]
                .iter()
                .map(|a| t.leaf((*a).clone(), true))
                .collect();
            let o = |k: usize| Conv2dOptions {
                padding: k / 2,
                groups: 4,
                pre_relu: true,
                ..Default::default()
            };
            let s1 = crate::separable_conv(&mut t, v[1], v[2], v[3], o(3)).unwrap();
            let s2 = crate::separable_conv(&mut t, v[1], v[4], v[3], o(5)).unwrap();
            let p = crate::PoolOptions {
                kernel: 3,
                stride: 1,
                padding: 1,
            };
            let mp = crate::max_pool2d(&mut t, v[1], p).unwrap();
            let ap = crate::avg_pool2d(&mut t, v[1], p).unwrap();
            let mut rs = [0; 6].map(|_| RunningStats::new(4));
            for r in &mut rs {
                r.var = vec![0.8; 4];
            }
            let [r0, r1, r2, r3, r4, r5] = &mut rs;
            let bn = BatchNormOptions {
                training,
                ..Default::default()
            };
            // A block with its own trailing BN takes no recipe.
            let sb = crate::separable_conv_bn(&mut t, v[1], v[2], v[3], o(3), Some(r4), bn);
            let sb = sb.unwrap();
            if retain {
                for s in [s1, s2, mp, ap, sb] {
                    t.retain_grad(s);
                }
            }
            let before = (other == 2).then(|| crate::add(&mut t, s1, v[1]).unwrap());
            let w = crate::maxw(&mut t, v[0]).unwrap();
            // s1's coefficients are the second term's.
            let mut terms = vec![
                (6, v[1], Norm::Bn(Some(r1))),
                (2, s1, Norm::Bn(Some(r0))),
                (5, s2, Norm::Identity),
                (1, mp, Norm::Bn(Some(r2))),
                (3, ap, Norm::Bn(Some(r3))),
                (4, sb, Norm::Identity),
            ];
            if other == 3 {
                terms.push((7, s1, Norm::Identity));
            }
            let m = weighted_sum_bn(&mut t, w, 0, terms, bn).unwrap();
            if retain {
                t.retain_grad(m);
            }
            let mut y = m;
            if other == 1 {
                y = crate::add(&mut t, y, s1).unwrap();
            }
            if other == 4 {
                y = crate::scale(&mut t, y, 0.5).unwrap();
            }
            if other == 5 {
                y = crate::add(&mut t, y, y).unwrap();
            }
            if other == 6 {
                let terms = vec![(0, y, Norm::Bn(Some(r5))), (3, v[1], Norm::Identity)];
                y = weighted_sum_bn(&mut t, w, 0, terms, bn).unwrap();
            }
            if let Some(z) = before {
                y = crate::add(&mut t, y, z).unwrap();
            }
            t.retain_grad(y);
            t.set_record_grad_stats(stats);
            // dL/dy = r as it is (a loss's backward would write 0.0 + r).
            t.backward_with(y, r.clone()).unwrap();
            // The retained ones keep theirs (the mixed op's output gradient too, though recipes
            // shared it), the others not; with statistics recorded, every node that got a
            // gradient has them.
            let bits = |t: &Tensor| t.data().iter().map(|g| g.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(t.grad(y).unwrap()), bits(&r));
            assert_eq!(t.grad(m).is_some(), m == y || retain);
            for s in [s1, s2, mp, ap, sb] {
                assert_eq!(t.grad(s).is_some(), retain);
            }
            if stats {
                let nodes = t.nodes();
                let wanted = nodes.iter().filter(|n| n.requires_grad).count();
                assert_eq!(nodes.iter().filter(|n| n.grad.is_some()).count(), wanted);
            }
            let grads: Vec<Vec<u32>> = v
                .iter()
                .map(|&a| {
                    t.grad(a)
                        .unwrap()
                        .data()
                        .iter()
                        .map(|g| g.to_bits())
                        .collect()
                })
                .collect();
            (grads, t.deferred_used())
        };
        for training in [true, false] {
            for (other, want_used) in [(0, 2), (1, 2), (2, 2), (3, 1), (4, 2), (5, 2), (6, 2)] {
                let (deferred, used) = run(training, false, other, false);
                let (written, none) = run(training, true, other, false);
                assert_eq!(
                    (used, none),
                    (want_used, 0),
                    "training {training}, case {other}"
                );
                assert!(
                    deferred == written,
                    "training {training}, case {other}: bits differ"
                );
            }
            let (with_stats, none) = run(training, false, 0, true);
            assert_eq!(
                none, 0,
                "training {training}: recipes while recording statistics"
            );
            assert!(with_stats == run(training, true, 0, false).0);
        }
    }

    /// The roofline's accounting (`darts bench --roofline`), counted by hand for three terms
    /// (two BNs, one identity) over n = 2 * 3 * 4 = 24 values each.
    #[test]
    fn weighted_sum_bn_states_its_cost() {
        let cost = |training: bool| {
            let mut t = Tape::new();
            t.set_profiling(true);
            let w = t.leaf(Tensor::zeros([1, 8]), true);
            let xs: Vec<Var> = (0..3)
                .map(|k| {
                    t.leaf(
                        Tensor::from_vec(
                            [2, 3, 2, 2],
                            (0..24).map(|i| ((i * (k + 3)) % 7) as f32).collect(),
                        )
                        .unwrap(),
                        true,
                    )
                })
                .collect();
            let mut rs = [RunningStats::new(3), RunningStats::new(3)];
            let [r0, r1] = &mut rs;
            let o = BatchNormOptions {
                training,
                ..Default::default()
            };
            let terms = vec![
                (0, xs[0], Norm::Bn(Some(r0))),
                (4, xs[1], Norm::Identity),
                (6, xs[2], Norm::Bn(Some(r1))),
            ];
            let y = weighted_sum_bn(&mut t, w, 0, terms, o).unwrap();
            let l = crate::sum(&mut t, y).unwrap();
            t.backward(l).unwrap();
            let op = &t.take_profile()["weighted_sum_bn"];
            (op.forward, op.backward)
        };
        let n = 24.0;
        let (f, b) = cost(true);
        // Forward: 2 statistics passes + 3 terms' reads + 1 write; 4 flops per term and per
        // statistics value.
        assert_eq!((f.flops, f.bytes), (4.0 * 5.0 * n, 4.0 * 6.0 * n));
        // Backward: g and 3 inputs read twice, 3 gradients written; 18 flops per term.
        assert_eq!((b.flops, b.bytes), (18.0 * 3.0 * n, 4.0 * 11.0 * n));
        let (f, _) = cost(false);
        assert_eq!(
            (f.flops, f.bytes),
            (4.0 * 3.0 * n, 4.0 * 4.0 * n),
            "eval mode: no statistics pass"
        );
    }

    #[test]
    fn weighted_sum_bn_checks_arguments() {
        let mut t = Tape::new();
        let w = t.leaf(Tensor::zeros([2, 8]), true);
        let x = t.leaf(Tensor::full([2, 3, 2, 2], 1.0), true);
        let flat = t.leaf(Tensor::full([4], 1.0), true);
        let other = t.leaf(Tensor::full([2, 4, 2, 2], 1.0), true);
        let o = BatchNormOptions::default();
        let err = |t: &mut Tape, terms| weighted_sum_bn(t, w, 1, terms, o).unwrap_err().to_string();
        assert!(err(&mut t, vec![(8, x, Norm::Identity)]).contains("column 8"));
        assert!(
            err(&mut t, vec![(1, x, Norm::Identity), (1, x, Norm::Identity)]).contains("twice")
        );
        assert!(err(
            &mut t,
            vec![(1, x, Norm::Identity), (2, other, Norm::Identity)]
        )
        .contains("weighted_sum_bn"));
        assert!(err(&mut t, vec![(1, flat, Norm::Identity)]).contains("at least [N, C]"));
        assert!(err(&mut t, vec![]).contains("at least one term"));
        let mut small = RunningStats::new(2);
        assert!(err(&mut t, vec![(1, x, Norm::Bn(Some(&mut small)))]).contains("running stats"));
        let eval = BatchNormOptions {
            training: false,
            ..o
        };
        let e = weighted_sum_bn(&mut t, w, 0, vec![(1, x, Norm::Bn(None))], eval).unwrap_err();
        assert!(e.to_string().contains("eval mode needs running statistics"));
        assert!(weighted_sum_bn(&mut t, w, 2, vec![(1, x, Norm::Identity)], o).is_err());
    }

    #[test]
    fn composes_with_maxw_and_checks_arguments() {
        let mut t = Tape::new();
        let alpha = t.leaf(Tensor::zeros([2, 8]), true);
        let x = t.leaf(Tensor::full([1, 1, 2, 2], 1.0), true);
        let w = crate::maxw(&mut t, alpha).unwrap();
        let y = weighted_sum(&mut t, w, 1, &[(3, x)]).unwrap();
        assert_eq!(t.value(y).data(), &[1.0; 4]); // all alphas equal: every Max-W weight is 1
                                                  // Unequal alphas: row 1 = [0, 1, 0, ...]. p = softmax, Max-W w_k = 1 - max(p) + p_k, so
                                                  // w_1 = 1 and every other w_k = 1 - (e - 1) / (e + 7); y = w_1 * a + w_5 * b.
        let mut t = Tape::new();
        let mut rows = vec![0.0f32; 16];
        rows[8 + 1] = 1.0;
        let alpha = t.leaf(Tensor::from_vec([2, 8], rows).unwrap(), true);
        let a = t.leaf(
            Tensor::from_vec([1, 1, 1, 2], vec![2.0, -1.0]).unwrap(),
            true,
        );
        let b = t.leaf(
            Tensor::from_vec([1, 1, 1, 2], vec![0.5, 3.0]).unwrap(),
            true,
        );
        let w = crate::maxw(&mut t, alpha).unwrap();
        let y = weighted_sum(&mut t, w, 1, &[(1, a), (5, b)]).unwrap();
        let e = std::f64::consts::E;
        let w5 = 1.0 - (e - 1.0) / (e + 7.0);
        let want = [2.0 + w5 * 0.5, -1.0 + w5 * 3.0];
        for (got, want) in t.value(y).data().iter().zip(want) {
            assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert!(weighted_sum(&mut t, w, 2, &[(3, x)]).is_err());
        assert!(weighted_sum(&mut t, w, 0, &[(8, x)]).is_err());
        assert!(weighted_sum(&mut t, w, 0, &[(1, x), (1, x)]).is_err());
    }

    /// A term's BN statistics from its producer (`separable_conv_stats`, `max_pool2d_stats`,
    /// `avg_pool2d_stats`: planes taken in cache) give the bits of the BN taking them itself:
    /// the mixed op's values, every input's gradient, the running statistics. Other planes give
    /// other values; planes of the wrong length are an error.
    #[test]
    fn plane_statistics_from_the_producer_give_the_same_bits() {
        let mut rng = tensor::Rng::new(12);
        let x = Tensor::uniform([3, 2, 6, 6], -1.0, 1.0, &mut rng);
        let w_dw = Tensor::uniform([2, 1, 3, 3], -1.0, 1.0, &mut rng);
        let w_pw = Tensor::uniform([4, 2, 1, 1], -1.0, 1.0, &mut rng);
        let z = Tensor::uniform([3, 4, 6, 6], -1.0, 1.0, &mut rng);
        let alphas = Tensor::uniform([1, 8], -1.0, 1.0, &mut rng);
        let o = crate::Conv2dOptions {
            padding: 1,
            pre_relu: true,
            ..Default::default()
        };
        let run = |planes: bool| {
            let mut t = Tape::new();
            let [x, w_dw, w_pw, z, a] =
                [&x, &w_dw, &w_pw, &z, &alphas].map(|v| t.leaf(v.clone(), true));
            let mut running = RunningStats {
                mean: vec![0.0; 4],
                var: vec![1.0; 4],
            };
            let pool = crate::PoolOptions {
                kernel: 3,
                stride: 1,
                padding: 1,
            };
            let terms = if planes {
                let (y, p) = crate::separable_conv_stats(&mut t, x, w_dw, w_pw, o).unwrap();
                let (m, pm) = crate::max_pool2d_stats(&mut t, z, pool).unwrap();
                let (v, pv) = crate::avg_pool2d_stats(&mut t, z, pool).unwrap();
                vec![
                    (1, m, Norm::BnPlanes(None, pm)),
                    (2, v, Norm::BnPlanes(None, pv)),
                    (4, y, Norm::BnPlanes(Some(&mut running), p)),
                    (5, z, Norm::Identity),
                ]
            } else {
                let y = crate::separable_conv(&mut t, x, w_dw, w_pw, o).unwrap();
                let m = crate::max_pool2d(&mut t, z, pool).unwrap();
                let v = crate::avg_pool2d(&mut t, z, pool).unwrap();
                vec![
                    (1, m, Norm::Bn(None)),
                    (2, v, Norm::Bn(None)),
                    (4, y, Norm::Bn(Some(&mut running))),
                    (5, z, Norm::Identity),
                ]
            };
            let w = crate::maxw(&mut t, a).unwrap();
            let out = weighted_sum_bn(&mut t, w, 0, terms, BatchNormOptions::default()).unwrap();
            let r = Tensor::uniform(
                t.value(out).shape().clone(),
                -1.0,
                1.0,
                &mut tensor::Rng::new(3),
            );
            let l = crate::dot_const(&mut t, out, &r).unwrap();
            t.backward(l).unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            let mut got = vec![bits(t.value(out).data())];
            got.extend(
                [x, w_dw, w_pw, z, a]
                    .iter()
                    .map(|&v| bits(t.grad(v).unwrap().data())),
            );
            got.push(bits(&running.mean));
            got.push(bits(&running.var));
            got
        };
        assert_eq!(run(true), run(false));

        let mut t = Tape::new();
        let [x, w_dw, w_pw, a] = [&x, &w_dw, &w_pw, &alphas].map(|v| t.leaf(v.clone(), true));
        let (y, mut p) = crate::separable_conv_stats(&mut t, x, w_dw, w_pw, o).unwrap();
        let w = crate::maxw(&mut t, a).unwrap();
        let bn = BatchNormOptions::default();
        // The planes are what the BN normalises with: other planes, other values.
        let with = |t: &mut Tape, p: Vec<f32>| {
            let out = weighted_sum_bn(t, w, 0, vec![(2, y, Norm::BnPlanes(None, p))], bn).unwrap();
            t.value(out).data().to_vec()
        };
        let shifted = p.iter().map(|v| v + 1.0).collect();
        assert_ne!(with(&mut t, p.clone()), with(&mut t, shifted));
        p.pop();
        let e = weighted_sum_bn(&mut t, w, 0, vec![(2, y, Norm::BnPlanes(None, p))], bn);
        assert!(e.unwrap_err().to_string().contains("plane statistics"));
    }
}
