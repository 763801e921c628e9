//! DARTS and sharpDARTS Max-W architecture search on the engine (SPEC sections 1-4).

mod error;
pub mod model;
pub mod params;
pub mod data;
pub mod optim;
pub mod primitives;
pub mod schedule;
pub mod weighting;

pub use error::{DartsError, Result};
pub use model::{NetConfig, Supernet};
pub use weighting::Weighting;
