#![deny(missing_docs)]
//! DARTS and sharpDARTS Max-W architecture search on the engine (SPEC sections 1-4).

pub mod architect;
pub mod checkpoint;
pub mod data;
mod error;
pub mod evalnet;
pub mod genotype;
mod layers;
pub mod lock;
pub mod meter;
pub mod model;
pub mod optim;
pub mod params;
pub mod primitives;
pub mod render;
pub mod schedule;
pub mod search;
pub mod train;
pub mod weighting;

pub use error::{DartsError, Result};
pub use genotype::Genotype;
pub use model::{NetConfig, Supernet};
pub use search::{Event, Order, Outcome, Search, SearchConfig};
pub use weighting::Weighting;
