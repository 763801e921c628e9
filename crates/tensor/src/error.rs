use std::fmt;

/// Everything the engine reports instead of panicking. Each variant says what was wrong and where.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Two shapes that had to agree did not. `op` names the operation.
    ShapeMismatch {
        op: &'static str,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A shape that is invalid on its own (wrong rank, zero size, too small for a kernel, ...).
    BadShape {
        op: &'static str,
        shape: Vec<usize>,
        why: String,
    },
    /// A buffer whose length does not match its declared shape.
    LenMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// An argument outside its valid range (stride 0, label >= classes, ...).
    BadArgument { op: &'static str, why: String },
    /// A misuse of the autodiff tape (backward of a non-scalar, a handle from another tape, ...).
    Tape(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ShapeMismatch { op, expected, got } => {
                write!(
                    f,
                    "{op}: shape mismatch: expected {expected:?}, got {got:?}"
                )
            }
            Error::BadShape { op, shape, why } => write!(f, "{op}: bad shape {shape:?}: {why}"),
            Error::LenMismatch {
                what,
                expected,
                got,
            } => {
                write!(
                    f,
                    "{what}: buffer holds {got} values, its shape needs {expected}"
                )
            }
            Error::BadArgument { op, why } => write!(f, "{op}: {why}"),
            Error::Tape(why) => write!(f, "tape: {why}"),
        }
    }
}

impl std::error::Error for Error {}
