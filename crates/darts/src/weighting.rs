//! How an edge's alphas become mixture weights.
use crate::Result;
use autograd::{Tape, Var};

/// sharpDARTS's Max-W (`1 - max(softmax) + softmax`, max not detached), or DARTS's softmax.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Weighting {
    /// sharpDARTS: `1 - max(softmax(a)) + softmax(a)`.
    Maxw,
    /// DARTS: `softmax(a)`.
    Softmax,
}

impl Weighting {
    /// Mixture weights [14, 8] from one alpha matrix.
    pub fn apply(self, t: &mut Tape, alpha: Var) -> Result<Var> {
        Ok(match self {
            Weighting::Softmax => ops::softmax(t, alpha)?,
            Weighting::Maxw => ops::maxw(t, alpha)?,
        })
    }
}
