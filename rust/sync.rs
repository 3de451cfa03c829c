//! Locking shared by the core's thread-safe types and the bindings.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lock `mutex`, recovering the data if a previous holder panicked (every
/// critical section leaves the data consistent before anything can fail).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
