//! The Python bindings: thin wrappers that convert arguments, call the pure
//! modules and map their errors onto `replaycore.errors`.

pub mod args;
pub mod cache;
pub mod digest;
pub mod errors;
pub mod journal;
pub mod keys;
pub mod records;
pub mod replay;
pub mod sequence;
pub mod store;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lock `mutex`, recovering the data if a previous holder panicked (every
/// critical section leaves the data consistent before anything can fail).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
