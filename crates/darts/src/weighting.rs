//! How an edge's alphas become mixture weights.
use crate::Result;
use autograd::{Tape, Var};

/// DARTS's softmax, or sharpDARTS's Max-W (`1 - max(softmax) + softmax`, max not detached).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weighting {
    Softmax,
    Maxw,
}

impl Weighting {
    /// Mixture weights [14, 8] from one alpha matrix.
    pub fn apply(self, t: &mut Tape, alpha: Var) -> Result<Var> {
        Ok(match self {
            Weighting::Softmax => ops::softmax(t, alpha)?,
            Weighting::Maxw => ops::maxw(t, alpha)?,
        })
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "softmax" => Some(Weighting::Softmax),
            "maxw" => Some(Weighting::Maxw),
            _ => None,
        }
    }
}
