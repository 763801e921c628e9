use std::path::PathBuf;

/// Everything a search, a data file or a checkpoint can report. Each message names the file, flag
/// or tensor concerned.
#[derive(Debug)]
pub enum DartsError {
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A data file exists but its contents are wrong (magic number, truncation, label range, ...).
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        why: String,
    },
    /// A checkpoint is missing tensors, has extra or mis-shaped ones, or is not a safetensors file.
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        why: String,
    },
    /// An invalid option or combination of options.
    Config(String),
    /// A genotype that cannot be parsed or does not describe a valid cell.
    Genotype(String),
    /// The loss became NaN or infinite.
    NonFinite {
        /// The epoch it happened in (0-based).
        epoch: usize,
        /// The step within the epoch.
        step: usize,
        /// Which value (validation loss, training loss, a parameter after the update).
        what: String,
    },
    /// An engine error (shapes, arguments).
    Engine(tensor::Error),
    /// Another live process holds the directory's lock.
    Locked {
        /// The directory.
        dir: PathBuf,
        /// The holder's process id, when its lock file names one.
        pid: Option<String>,
    },
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, DartsError>;

impl std::fmt::Display for DartsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DartsError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            DartsError::Data { path, why } => write!(f, "{}: {why}", path.display()),
            DartsError::Checkpoint { path, why } => write!(f, "{}: {why}", path.display()),
            DartsError::Config(why) => write!(f, "invalid configuration: {why}"),
            DartsError::Genotype(why) => write!(f, "genotype: {why}"),
            DartsError::NonFinite { epoch, step, what } => {
                write!(f, "non-finite {what} at epoch {epoch}, step {step}")
            }
            DartsError::Engine(e) => write!(f, "{e}"),
            DartsError::Locked { dir, pid } => write!(
                f,
                "{} is in use by another darts process{} (wait for it to end, or choose another directory)",
                dir.display(),
                pid.as_ref().map_or(String::new(), |p| format!(" (pid {p})"))
            ),
        }
    }
}

impl std::error::Error for DartsError {
    /// The underlying I/O or engine error, for callers that walk the chain.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DartsError::Io { source, .. } => Some(source),
            DartsError::Engine(e) => Some(e),
            _ => None,
        }
    }
}

impl From<tensor::Error> for DartsError {
    fn from(e: tensor::Error) -> Self {
        DartsError::Engine(e)
    }
}

/// Wraps an io::Error with the path it concerns.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DartsError {
    let path = path.into();
    move |source| DartsError::Io { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn io_and_engine_errors_keep_their_source() {
        let e = io("/x/y")(std::io::Error::new(std::io::ErrorKind::NotFound, "gone"));
        assert_eq!(e.to_string(), "/x/y: gone");
        let src = e.source().expect("the io::Error");
        assert_eq!(src.to_string(), "gone");
        assert!(src.downcast_ref::<std::io::Error>().is_some());
        let e = DartsError::from(tensor::Tensor::from_vec([2], vec![1.0]).unwrap_err());
        assert!(e
            .source()
            .unwrap()
            .downcast_ref::<tensor::Error>()
            .is_some());
        assert!(DartsError::Config("x".into()).source().is_none());
    }
}
