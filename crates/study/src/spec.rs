//! What a study is: the arms (search settings crossed, plus baseline cells), the seeds, and the
//! search and training sizes every arm shares. Parsed from the command line's comma lists once,
//! here; everything after works on these typed values.
use crate::{Result, StudyError};
use clap::ValueEnum;
use darts::optim::GradTransform;
use darts::{Genotype, Order, Weighting};
use serde::{Deserialize, Serialize};

/// Network and schedule size of one stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    pub channels: usize,
    pub layers: usize,
    pub epochs: usize,
    pub batch: usize,
}

/// A cell trained without a search, on the same seeds and budget as the searched ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Baseline {
    /// `random:K`: K cells drawn uniformly from the search space without `none`; cell j is
    /// `Genotype::random(j)`.
    Random { cells: usize },
    /// A published genotype by name (`DARTS_V1`, `DARTS_V2`).
    Named { name: String },
}

/// Everything that decides a study's results. Two invocations with equal specs are the same study
/// (threads and jobs are not part of it: they do not change any number).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudySpec {
    /// `synthetic`, `cifar10:DIR` or `idx:DIR`, as `darts search --data` takes it.
    pub data: String,
    pub subset: Option<usize>,
    pub weightings: Vec<Weighting>,
    pub grad_transforms: Vec<GradTransform>,
    pub orders: Vec<Order>,
    pub seeds: Vec<u64>,
    pub baselines: Vec<Baseline>,
    pub search: Sizes,
    pub train: Sizes,
}

fn usage(msg: String) -> StudyError {
    StudyError::usage(msg)
}

/// Splits a comma list, refusing empty items and repeats.
fn items<'a>(flag: &str, text: &'a str) -> Result<Vec<&'a str>> {
    let list: Vec<&str> = text.split(',').map(str::trim).collect();
    if list.iter().any(|s| s.is_empty()) {
        return Err(usage(format!("{flag} {text}: empty item in the list")));
    }
    for (i, s) in list.iter().enumerate() {
        if list[..i].contains(s) {
            return Err(usage(format!("{flag} {text}: '{s}' is given twice")));
        }
    }
    Ok(list)
}

/// A comma list of the library's option values, by the names the single-run flags take.
fn parse_each<T: ValueEnum>(flag: &str, text: &str) -> Result<Vec<T>> {
    let known: Vec<String> = T::value_variants()
        .iter()
        .filter_map(|v| Some(v.to_possible_value()?.get_name().to_string()))
        .collect();
    items(flag, text)?
        .into_iter()
        .map(|s| {
            T::from_str(s, false).map_err(|_| {
                usage(format!(
                    "{flag}: unknown value '{s}' (known: {})",
                    known.join(", ")
                ))
            })
        })
        .collect()
}

/// `--weighting maxw,softmax`.
pub fn parse_weightings(text: &str) -> Result<Vec<Weighting>> {
    parse_each("--weighting", text)
}

/// `--grad-transform none,subtract-max`.
pub fn parse_grad_transforms(text: &str) -> Result<Vec<GradTransform>> {
    parse_each("--grad-transform", text)
}

/// `--order first,second`.
pub fn parse_orders(text: &str) -> Result<Vec<Order>> {
    parse_each("--order", text)
}

/// `--seeds N` (seeds 1..=N) or `--seeds a,b,c` (a list; `7,` is the one seed 7).
pub fn parse_seeds(text: &str) -> Result<Vec<u64>> {
    let bad = || {
        usage(format!(
            "--seeds {text}: expected a count (3) or a comma list of seeds (1,5,9)"
        ))
    };
    if !text.contains(',') {
        let n: u64 = text.trim().parse().map_err(|_| bad())?;
        if n == 0 || n > 1000 {
            return Err(usage(format!("--seeds {n}: the count must be 1 to 1000")));
        }
        return Ok((1..=n).collect());
    }
    let list: Vec<&str> = text.split(',').map(str::trim).collect();
    // `text` holds a comma, so a trailing empty item has at least one item before it.
    let list: Vec<&str> = match list.split_last() {
        Some((&"", rest)) => rest.to_vec(),
        _ => list,
    };
    let joined = list.join(",");
    items("--seeds", &joined)?
        .into_iter()
        .map(|s| s.parse().map_err(|_| bad()))
        .collect()
}

/// `--baselines random:K,DARTS_V2,DARTS_V1` (or `none`).
pub fn parse_baselines(text: &str) -> Result<Vec<Baseline>> {
    if text.trim() == "none" {
        return Ok(Vec::new());
    }
    items("--baselines", text)?
        .into_iter()
        .map(|s| {
            if let Some(k) = s.strip_prefix("random:") {
                match k.parse::<usize>() {
                    Ok(cells) if (1..=100).contains(&cells) => Ok(Baseline::Random { cells }),
                    _ => Err(usage(format!(
                        "--baselines {s}: K in random:K must be 1 to 100"
                    ))),
                }
            } else if s == "random" {
                Ok(Baseline::Random { cells: 1 })
            } else if Genotype::builtin(s).is_some() {
                Ok(Baseline::Named {
                    name: s.to_string(),
                })
            } else {
                let names: Vec<&str> = darts::genotype::BUILTIN.iter().map(|(n, _)| *n).collect();
                Err(usage(format!(
                    "--baselines: unknown baseline '{s}' (known: random:K, {}, none)",
                    names.join(", ")
                )))
            }
        })
        .collect()
}

impl StudySpec {
    /// Refuses a study with nothing to run or sizes a run would refuse later.
    pub fn validate(&self) -> Result<()> {
        let search_arms = self.weightings.len() * self.grad_transforms.len() * self.orders.len();
        if search_arms == 0 && self.baselines.is_empty() {
            return Err(usage("the grid is empty: give at least one --weighting, --grad-transform and --order value, or a baseline".into()));
        }
        if self.seeds.is_empty() {
            return Err(usage("--seeds: at least one seed".into()));
        }
        for (stage, s) in [("search", &self.search), ("train", &self.train)] {
            if s.channels == 0 || s.layers == 0 || s.epochs == 0 || s.batch < 2 {
                return Err(usage(format!(
                    "{stage} sizes must be positive with a batch of at least 2: {s:?}"
                )));
            }
        }
        Ok(())
    }
}

/// The smallest valid study (one arm, one seed, batches of 2): the tests' starting point.
#[cfg(test)]
pub(crate) fn smallest() -> StudySpec {
    let sizes = Sizes {
        channels: 2,
        layers: 2,
        epochs: 1,
        batch: 2,
    };
    StudySpec {
        data: "synthetic".into(),
        subset: None,
        weightings: vec![Weighting::Maxw],
        grad_transforms: vec![GradTransform::None],
        orders: vec![Order::First],
        seeds: vec![1],
        baselines: Vec::new(),
        search: sizes.clone(),
        train: sizes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_bad_values_are_named() {
        assert_eq!(
            parse_weightings("maxw,softmax").unwrap(),
            vec![Weighting::Maxw, Weighting::Softmax]
        );
        assert_eq!(parse_orders("second").unwrap(), vec![Order::Second]);
        let e = parse_weightings("maxw,sofmax").unwrap_err().to_string();
        assert!(e.contains("'sofmax'") && e.contains("maxw, softmax"), "{e}");
        assert!(parse_grad_transforms("none,,subtract-max").is_err());
        assert!(parse_orders("first,first")
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }

    #[test]
    fn seeds_are_a_count_or_a_list() {
        assert_eq!(parse_seeds("3").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_seeds("5,9").unwrap(), vec![5, 9]);
        assert_eq!(parse_seeds("7,").unwrap(), vec![7]);
        assert!(parse_seeds("0").is_err());
        assert!(parse_seeds("x").is_err());
        assert!(parse_seeds("1,1").is_err());
        assert!(parse_seeds(",").is_err());
        assert_eq!(parse_seeds("1000").unwrap().len(), 1000);
        assert!(parse_seeds("1001")
            .unwrap_err()
            .to_string()
            .contains("1 to 1000"));
    }

    /// Each rule of `validate` on its own: the smallest valid study passes, and one value
    /// past each bound is refused with the rule named.
    #[test]
    fn validate_names_each_rule() {
        assert!(smallest().validate().is_ok());
        let refused = |edit: &dyn Fn(&mut StudySpec), says: &str| {
            let mut s = smallest();
            edit(&mut s);
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        };
        refused(&|s| s.weightings.clear(), "the grid is empty");
        refused(&|s| s.grad_transforms.clear(), "the grid is empty");
        refused(&|s| s.orders.clear(), "the grid is empty");
        refused(&|s| s.seeds.clear(), "at least one seed");
        refused(&|s| s.search.channels = 0, "search sizes");
        refused(&|s| s.search.layers = 0, "search sizes");
        refused(&|s| s.search.epochs = 0, "search sizes");
        refused(&|s| s.search.batch = 1, "search sizes");
        refused(&|s| s.train.channels = 0, "train sizes");
        refused(&|s| s.train.batch = 1, "train sizes");
        // Baselines alone are a study (no search arm).
        let mut s = smallest();
        s.weightings.clear();
        s.baselines = vec![Baseline::Random { cells: 1 }];
        assert!(s.validate().is_ok());
    }

    #[test]
    fn baselines_parse() {
        assert_eq!(
            parse_baselines("random:2,DARTS_V2").unwrap(),
            vec![
                Baseline::Random { cells: 2 },
                Baseline::Named {
                    name: "DARTS_V2".into()
                }
            ]
        );
        assert!(parse_baselines("none").unwrap().is_empty());
        assert!(parse_baselines("random:0").is_err());
        assert!(parse_baselines("NASNet")
            .unwrap_err()
            .to_string()
            .contains("DARTS_V1"));
    }
}
