//! The statistics of a study, as pure functions on numbers: means, spreads, Student-t confidence
//! intervals (one-sample and paired), genotype agreement (Jaccard) and the stability epoch.
//!
//! The t distribution is computed from the regularised incomplete beta function
//! (`P(|T| > t) = I_{df/(df+t^2)}(df/2, 1/2)`), evaluated by its continued fraction; quantiles by
//! bisection on that. Accurate to about 1e-10, far below what a handful of seeds can resolve.
use darts::primitives::Primitive;
use darts::Genotype;
use serde::Serialize;
use std::collections::BTreeSet;

/// Mean, sample standard deviation and a 95 % Student-t interval of a sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator); `None` below two values.
    pub std: Option<f64>,
    /// 95 % confidence interval of the mean, `mean +- t_{0.975, n-1} std / sqrt(n)`; `None` below
    /// two values.
    pub ci95: Option<(f64, f64)>,
}

/// Summarises `xs`; `None` for an empty sample.
pub fn summarize(xs: &[f64]) -> Option<Summary> {
    let n = xs.len();
    if n == 0 {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Some(Summary {
            n,
            mean,
            std: None,
            ci95: None,
        });
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let std = var.sqrt();
    let half = t_quantile(0.975, (n - 1) as f64) * std / (n as f64).sqrt();
    Some(Summary {
        n,
        mean,
        std: Some(std),
        ci95: Some((mean - half, mean + half)),
    })
}

/// A paired comparison: differences `a_i - b_i` over the same seeds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Paired {
    pub n: usize,
    pub mean_difference: f64,
    pub ci95: Option<(f64, f64)>,
    /// Two-sided p-value of the paired t test (mean difference 0); `None` below two pairs or when
    /// every difference is the same.
    pub p_value: Option<f64>,
}

impl Paired {
    /// Whether the 95 % interval excludes zero.
    pub fn significant(&self) -> bool {
        matches!(self.ci95, Some((lo, hi)) if lo > 0.0 || hi < 0.0)
    }
}

/// The paired t analysis of `a` against `b` (same length, same seed order).
pub fn paired(a: &[f64], b: &[f64]) -> Option<Paired> {
    assert_eq!(a.len(), b.len(), "paired samples");
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let s = summarize(&d)?;
    let p_value = match s.std {
        Some(sd) if sd > 0.0 => {
            let t = s.mean / (sd / (s.n as f64).sqrt());
            Some(t_two_sided_p(t, (s.n - 1) as f64))
        }
        _ => None,
    };
    Some(Paired {
        n: s.n,
        mean_difference: s.mean,
        ci95: s.ci95,
        p_value,
    })
}

/// `P(|T| >= |t|)` for Student's t with `df` degrees of freedom.
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    reg_inc_beta(df / 2.0, 0.5, df / (df + t * t))
}

/// The `p`-quantile (0.5 < p < 1) of Student's t with `df` degrees of freedom.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    assert!(p > 0.5 && p < 1.0 && df > 0.0);
    let tail = 2.0 * (1.0 - p); // the two-sided tail mass at the quantile
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while t_two_sided_p(hi, df) > tail {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_two_sided_p(mid, df) > tail {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// ln Gamma(x) for x > 0 (Lanczos, g = 7, 9 terms).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let mut a = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularised incomplete beta function I_x(a, b).
fn reg_inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    // The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
    // I_x(a, b) = 1 - I_{1-x}(b, a) otherwise.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

/// The continued fraction of I_x(a, b) (modified Lentz).
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        for aa in [
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ] {
            d = 1.0 + aa * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + aa / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// The edges of a genotype as (cell, primitive, input, node) sets.
pub fn edges(g: &Genotype) -> BTreeSet<(&'static str, Primitive, usize, usize)> {
    let mut set = BTreeSet::new();
    for (cell, gene) in [("normal", &g.normal), ("reduce", &g.reduce)] {
        for (k, &(op, input)) in gene.iter().enumerate() {
            set.insert((cell, op, input, k / 2));
        }
    }
    set
}

/// |A n B| / |A u B| of two genotypes' edge sets (1 for two empty sets).
pub fn jaccard(a: &Genotype, b: &Genotype) -> f64 {
    let (ea, eb) = (edges(a), edges(b));
    let union = ea.union(&eb).count();
    if union == 0 {
        return 1.0;
    }
    ea.intersection(&eb).count() as f64 / union as f64
}

/// The mean Jaccard index over all pairs of `genotypes`; `None` below two.
pub fn mean_pairwise_jaccard(genotypes: &[Genotype]) -> Option<f64> {
    let mut sum = 0.0;
    let mut pairs = 0usize;
    for i in 0..genotypes.len() {
        for j in i + 1..genotypes.len() {
            sum += jaccard(&genotypes[i], &genotypes[j]);
            pairs += 1;
        }
    }
    (pairs > 0).then(|| sum / pairs as f64)
}

/// The first epoch (counted from 1) from which the derived genotype no longer changes: the epoch
/// of the earliest genotype equal to every later one. `None` for an empty history.
pub fn stability_epoch(per_epoch: &[Genotype]) -> Option<usize> {
    let last = per_epoch.last()?;
    let mut first = per_epoch.len();
    while first > 1 && per_epoch[first - 2] == *last {
        first -= 1;
    }
    Some(first)
}

/// The share of a cell's edges whose primitive has no parameters (`none`, the pools,
/// `skip_connect`).
pub fn parameter_free_share(gene: &[(Primitive, usize)]) -> f64 {
    if gene.is_empty() {
        return 0.0;
    }
    let free = gene.iter().filter(|(op, _)| op.is_parameter_free()).count();
    free as f64 / gene.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn t_quantiles_match_the_printed_tables() {
        // Two-sided 95 % critical values of Student's t (scipy.stats.t.ppf(0.975, df)).
        for (df, t) in [
            (1.0, 12.706_204_736),
            (2.0, 4.302_652_730),
            (3.0, 3.182_446_305),
            (4.0, 2.776_445_105),
            (9.0, 2.262_157_163),
            (29.0, 2.045_229_642),
            (1000.0, 1.962_339_081),
        ] {
            close(t_quantile(0.975, df), t, 1e-6);
        }
        close(t_quantile(0.995, 5.0), 4.032_142_984, 1e-6);
        // The two-sided p of t = 2.0 with 10 df (scipy: 2 * t.sf(2, 10)).
        close(t_two_sided_p(2.0, 10.0), 0.073_388_034_6, 1e-8);
        close(t_two_sided_p(0.0, 3.0), 1.0, 1e-12);
    }

    /// Both sides of the incomplete beta's symmetry switch (|t| below about 1.7 takes the
    /// `1 - I_{1-x}(b, a)` side), a far tail, and ln Gamma below 1/2 (its reflection), against
    /// values at 30 digits from `scripts/golden_stats.py` (mpmath).
    #[test]
    fn p_values_and_ln_gamma_match_high_precision_values() {
        for (t, df, p) in [
            (0.5, 10.0, 0.627893605742973),
            (1.0, 1000.0, 0.317552418084672),
            (0.1, 3.0, 0.926652348800806),
            (1.5, 2.0, 0.272393124891001),
            (1.2, 7.0, 0.269171936827206),
            (3.0, 50.0, 0.00420170318706825),
            (10.0, 1.0, 0.0634510348611071),
            (6.0, 30.0, 1.39427687672047e-6),
        ] {
            close(t_two_sided_p(t, df), p, 1e-12 + 1e-10 * p);
            close(t_two_sided_p(-t, df), p, 1e-12 + 1e-10 * p);
        }
        for (x, v) in [
            (0.25, 1.2880225246980774),
            (0.5, 0.5723649429247001),
            (1.5, -0.12078223763524522),
            (3.0, std::f64::consts::LN_2), // ln Gamma(3) = ln 2
            (10.5, 13.940625219403763),
            (100.5, 361.4355404677776),
        ] {
            close(ln_gamma(x), v, 1e-12 * v.abs().max(1.0));
        }
    }

    #[test]
    fn summary_of_a_known_sample() {
        let s = summarize(&[0.90, 0.92, 0.94]).unwrap();
        close(s.mean, 0.92, 1e-12);
        close(s.std.unwrap(), 0.02, 1e-12);
        let half = 4.302_652_730 * 0.02 / 3f64.sqrt();
        let (lo, hi) = s.ci95.unwrap();
        close(lo, 0.92 - half, 1e-8);
        close(hi, 0.92 + half, 1e-8);
        // Two values are the fewest with a spread: sd |a - b| / sqrt(2), t_{0.975, 1} = 12.706.
        let two = summarize(&[0.5, 0.7]).unwrap();
        close(two.std.unwrap(), 0.2 / 2f64.sqrt(), 1e-12);
        close(two.ci95.unwrap().1, 0.6 + 12.706_204_736 * 0.1, 1e-8);
        let one = summarize(&[0.5]).unwrap();
        assert_eq!((one.n, one.mean, one.std, one.ci95), (1, 0.5, None, None));
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn paired_analysis_of_known_differences() {
        // Differences 0.02, 0.04, 0.03, 0.05: mean 0.035, sd 0.012910, t = 5.4222, df 3.
        let p = paired(&[0.92, 0.94, 0.93, 0.95], &[0.90, 0.90, 0.90, 0.90]).unwrap();
        close(p.mean_difference, 0.035, 1e-12);
        let sd = (0.000_5f64 / 3.0).sqrt();
        let half = 3.182_446_305 * sd / 2.0;
        close(p.ci95.unwrap().0, 0.035 - half, 1e-8);
        assert!(p.significant());
        close(p.p_value.unwrap(), 0.012_307_551_8, 1e-8); // scipy.stats.ttest_rel
                                                          // A difference that changes sign is not significant.
        let q = paired(&[0.91, 0.89, 0.92], &[0.90, 0.90, 0.90]).unwrap();
        assert!(!q.significant());
        assert!(q.p_value.unwrap() > 0.05);
        // Every difference the same: no spread, so no t statistic and no p-value (t would be
        // infinite); the interval collapses onto the difference.
        let same = paired(&[1.5, 2.5], &[1.0, 2.0]).unwrap();
        assert_eq!((same.mean_difference, same.ci95), (0.5, Some((0.5, 0.5))));
        assert_eq!(same.p_value, None);
        // A single pair: neither.
        let one = paired(&[0.95], &[0.90]).unwrap();
        assert_eq!((one.n, one.ci95, one.p_value), (1, None, None));
        assert!(!one.significant());
    }

    fn g(normal: &[(&str, usize)], reduce: &[(&str, usize)]) -> Genotype {
        let v = |c: &[(&str, usize)]| {
            c.iter()
                .map(|(o, i)| (Primitive::parse(o).unwrap(), *i))
                .collect()
        };
        Genotype {
            normal: v(normal),
            normal_concat: vec![2],
            reduce: v(reduce),
            reduce_concat: vec![2],
        }
    }

    #[test]
    fn jaccard_counts_op_input_node_edges() {
        let a = g(
            &[("sep_conv_3x3", 0), ("skip_connect", 1)],
            &[("max_pool_3x3", 0), ("max_pool_3x3", 1)],
        );
        // Same op and input but in the other cell type: a different edge.
        let b = g(
            &[("sep_conv_3x3", 0), ("skip_connect", 0)],
            &[("max_pool_3x3", 0), ("sep_conv_3x3", 0)],
        );
        // Shared: normal (sep,0,node0), reduce (max,0,node0): 2 of 6 distinct edges.
        close(jaccard(&a, &b), 2.0 / 6.0, 1e-12);
        close(jaccard(&a, &a), 1.0, 0.0);
        close(
            mean_pairwise_jaccard(&[a.clone(), b.clone(), a.clone()]).unwrap(),
            (2.0 / 6.0 + 1.0 + 2.0 / 6.0) / 3.0,
            1e-12,
        );
        // A node's two edges in the other order are the same node's edges; in another node they
        // are not.
        let swapped = g(
            &[("skip_connect", 1), ("sep_conv_3x3", 0)],
            &[("max_pool_3x3", 1), ("max_pool_3x3", 0)],
        );
        close(jaccard(&a, &swapped), 1.0, 0.0);
        let next_node = g(
            &[
                ("sep_conv_3x3", 0),
                ("skip_connect", 1),
                ("skip_connect", 1),
            ],
            &[("max_pool_3x3", 0), ("max_pool_3x3", 1)],
        );
        // a's 4 edges plus (normal, skip, 1, node 1): 4 of 5.
        close(jaccard(&a, &next_node), 4.0 / 5.0, 1e-12);
        assert!(mean_pairwise_jaccard(&[a]).is_none());
    }

    #[test]
    fn stability_epoch_is_where_the_final_genotype_starts() {
        let a = g(&[("sep_conv_3x3", 0), ("skip_connect", 1)], &[]);
        let b = g(&[("skip_connect", 0), ("skip_connect", 1)], &[]);
        assert_eq!(stability_epoch(&[a.clone(), b.clone(), b.clone()]), Some(2));
        assert_eq!(stability_epoch(&[b.clone(), a.clone(), b.clone()]), Some(3));
        assert_eq!(stability_epoch(&[b.clone(), b.clone()]), Some(1));
        assert_eq!(stability_epoch(&[]), None);
    }

    #[test]
    fn parameter_free_share_counts_pools_and_skips() {
        let gene = g(
            &[
                ("sep_conv_3x3", 0),
                ("skip_connect", 1),
                ("max_pool_3x3", 0),
                ("avg_pool_3x3", 2),
            ],
            &[],
        );
        close(parameter_free_share(&gene.normal), 0.75, 0.0);
    }
}
