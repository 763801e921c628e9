//! Per-thread scratch for a kernel's temporaries: values a sample's work writes and reads back
//! before it ends (the separable block's z and dz, im2col's columns, the channels-last frames).
//!
//! Each kernel declares its own buffer ([`Buffer`], a `thread_local!`), so one kernel may call
//! another's sample function while it holds its own. A buffer grows to the largest request its
//! thread has met and is then reused: a search step allocates nothing here after its first, and a
//! thread's next sample finds the same lines in its cache (a slot per sample, written once each
//! step, came from memory: the separable backward at batch 64 touched 12.8 MiB of them per call).
//! Contents are unspecified: every user writes what it reads, so results never depend on which
//! thread ran a sample, nor on what ran there before.
use std::cell::RefCell;
use std::thread::LocalKey;

/// A thread's scratch buffer (declare one per kernel with `thread_local!`).
pub(crate) type Buffer = LocalKey<RefCell<Vec<f32>>>;

/// Runs `f` on `len` values of this thread's `buffer`. `f` must not take the same buffer again
/// (a kernel's sample work never does: it runs no rayon inside). In this crate's tests the values
/// are NaN each time, so a kernel that reads one it did not write shows.
pub(crate) fn with<R>(buffer: &'static Buffer, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    buffer.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len {
            s.resize(len, 0.0);
        }
        let s = &mut s[..len];
        if cfg!(test) {
            s.fill(f32::NAN);
        }
        f(s)
    })
}
