//! Argument checks shared by the ops: each returns a typed error naming the op.
use autograd::{Error, Result, Tape, Var};

pub(crate) fn nchw(tape: &Tape, x: Var, op: &'static str) -> Result<[usize; 4]> {
    tape.value(x).shape().nchw(op)
}

pub(crate) fn same_shape(tape: &Tape, a: Var, b: Var, op: &'static str) -> Result<()> {
    tape.value(b).shape().expect_eq(tape.value(a).shape(), op)
}

pub(crate) fn arg(ok: bool, op: &'static str, why: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::BadArgument { op, why: why() })
    }
}

pub(crate) fn shape_is(tape: &Tape, v: Var, want: &[usize], op: &'static str) -> Result<()> {
    let got = tape.value(v).dims();
    if got == want {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            op,
            expected: want.to_vec(),
            got: got.to_vec(),
        })
    }
}
