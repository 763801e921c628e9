//! Workspace root: hosts tests/ and benches/.
