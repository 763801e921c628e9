//! Advisory directory locks: one process at a time works in a run (or study) directory.
//!
//! The lock is an OS file lock (`flock`) on `DIR/.lock`, held for as long as the [`DirLock`] lives.
//! The operating system releases it when the process ends in any way (`kill -9` included), so a
//! stale lock left by a dead process never blocks anybody; the file itself stays and holds the pid
//! of the last holder, for messages.
use crate::error::io;
use crate::{DartsError, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Seek, Write};
use std::path::Path;

/// The lock file's name inside a locked directory.
pub const LOCK_FILE: &str = ".lock";

/// A held directory lock; dropping it releases the lock.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

fn open(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))
}

impl DirLock {
    /// Creates `dir` if needed and takes its lock, or fails with [`DartsError::Locked`] naming
    /// the holder's pid.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut file = open(dir)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap_or_default();
                let pid = pid.trim();
                return Err(DartsError::Locked {
                    dir: dir.into(),
                    pid: (!pid.is_empty()).then(|| pid.to_string()),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(dir.join(LOCK_FILE))(e)),
        }
        // The pid is only for messages; failing to record it is harmless.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        Ok(DirLock { _file: file })
    }
}

/// Whether some live process holds the lock of `dir` right now (a probe: takes and drops it).
pub fn is_locked(dir: &Path) -> bool {
    let Ok(file) = OpenOptions::new().read(true).open(dir.join(LOCK_FILE)) else {
        return false;
    };
    matches!(file.try_lock(), Err(TryLockError::WouldBlock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_drops() {
        let dir = std::env::temp_dir().join(format!("darts-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!is_locked(&dir));
        let first = DirLock::acquire(&dir).unwrap();
        assert!(is_locked(&dir));
        let err = DirLock::acquire(&dir).unwrap_err().to_string();
        assert!(
            err.contains("in use") && err.contains(&std::process::id().to_string()),
            "{err}"
        );
        drop(first);
        assert!(!is_locked(&dir));
        drop(DirLock::acquire(&dir).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
