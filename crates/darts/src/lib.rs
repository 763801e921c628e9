#![deny(missing_docs)]
//! DARTS and sharpDARTS Max-W architecture search on the engine (SPEC sections 1-4).
//!
//! # Embedding a search
//!
//! Data from memory, a progress callback that hears every step and epoch, a checkpoint at an
//! epoch's end, a cancel flag (raised here from the callback; any thread may raise it), and an
//! exact resume from the checkpoint (`examples/embed_search.rs` is the longer version):
//!
//! ```
//! use darts::{data::Dataset, Event, Outcome, Search, SearchConfig};
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use tensor::{Rng, Tensor};
//!
//! # fn main() -> darts::Result<()> {
//! // 64 images 3x8x8 of 2 classes (yours would come from a file or a camera).
//! let x = Tensor::randn([64, 3, 8, 8], 1.0, &mut Rng::new(1));
//! let data = Dataset::from_tensors(&x, (0..64).map(|i| i % 2).collect(), 2)?;
//! let config = SearchConfig { channels: 2, layers: 2, epochs: 3, batch: 8, ..SearchConfig::default() };
//! let mut search = Search::new(config, data.classes, data.channels)?;
//!
//! let path = std::env::temp_dir().join(format!("darts-doc-{}.safetensors", std::process::id()));
//! let cancel = AtomicBool::new(false);
//! let mut steps = 0;
//! let outcome = search.run(&data, &cancel, &mut |event| match event {
//!     Event::Step(_) => steps += 1,
//!     Event::Epoch(s) => {
//!         s.save(&path).expect("checkpoint written");
//!         cancel.store(true, Ordering::SeqCst); // stop after the first epoch
//!     }
//! })?;
//! assert_eq!((outcome, steps, search.position().0), (Outcome::Cancelled, 4, 1));
//!
//! let mut resumed = Search::load(&path)?; // later, perhaps in another process
//! resumed.run(&data, &AtomicBool::new(false), &mut |_| {})?;
//! assert!(resumed.is_finished());
//! println!("{}", resumed.genotype().to_python());
//! std::fs::remove_file(&path).ok();
//! # Ok(())
//! # }
//! ```
//!
//! # Predicting with a trained network
//!
//! Train the evaluation network of a genotype (here the DARTS paper's cell), save it, load it and
//! predict (`examples/predict.rs` is the longer version):
//!
//! ```
//! use darts::checkpoint::{load_model, save_model};
//! use darts::train::{TrainConfig, Trainer};
//! use darts::{data::Dataset, Genotype};
//! use std::sync::atomic::AtomicBool;
//! use tensor::{Rng, Tensor};
//!
//! # fn main() -> darts::Result<()> {
//! let x = Tensor::randn([32, 3, 8, 8], 1.0, &mut Rng::new(2));
//! let data = Dataset::from_tensors(&x, (0..32).map(|i| i % 2).collect(), 2)?;
//! let config = TrainConfig {
//!     channels: 2, layers: 2, epochs: 1, batch: 8, auxiliary_weight: 0.0, cutout: 0,
//!     ..TrainConfig::default()
//! };
//! let genotype = Genotype::builtin("DARTS_V2").expect("built in");
//! let mut trainer = Trainer::new(config, &genotype, data.classes, data.channels)?;
//! trainer.run(&data, None, &AtomicBool::new(false), &mut |_| {})?;
//!
//! let path = std::env::temp_dir().join(format!("darts-doc-model-{}.safetensors", std::process::id()));
//! let m = &trainer.model();
//! save_model(&path, &m.net, &m.params, &m.bns)?;
//! let mut model = load_model(&path)?;
//! let (images, _labels) = data.batch(&[0, 1, 2], None);
//! let logits = model.predict(&images)?; // [3, classes], eval mode
//! assert_eq!(logits.dims(), &[3, 2]);
//! std::fs::remove_file(&path).ok();
//! # Ok(())
//! # }
//! ```

pub mod architect;
pub mod checkpoint;
pub mod data;
mod error;
pub mod evalnet;
pub mod forward;
pub mod genotype;
mod layers;
pub mod lock;
pub mod meter;
pub mod model;
pub mod optim;
pub mod params;
pub mod pass;
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
