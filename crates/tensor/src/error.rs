use std::fmt;

/// Everything the engine reports instead of panicking. Each variant says what was wrong and where.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Two shapes that had to agree did not. `op` names the operation.
    ShapeMismatch {
        /// The operation.
        op: &'static str,
        /// The shape it needed.
        expected: Vec<usize>,
        /// The shape it got.
        got: Vec<usize>,
    },
    /// A shape that is invalid on its own (wrong rank, zero size, too small for a kernel, ...).
    BadShape {
        /// The operation.
        op: &'static str,
        /// The offending shape.
        shape: Vec<usize>,
        /// What is wrong with it.
        why: String,
    },
    /// A buffer whose length does not match its declared shape.
    LenMismatch {
        /// The buffer.
        what: &'static str,
        /// The length its shape implies.
        expected: usize,
        /// Its actual length.
        got: usize,
    },
    /// An argument outside its valid range (stride 0, label >= classes, ...).
    BadArgument {
        /// The operation.
        op: &'static str,
        /// What is wrong with the argument.
        why: String,
    },
    /// A misuse of the autodiff tape (backward of a non-scalar, a handle from another tape, ...).
    Tape(String),
}

/// The engine's result type.
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
