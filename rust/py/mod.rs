//! The Python bindings: thin wrappers that convert arguments, call the pure
//! modules and convert their results and errors (`errors`, the one mapping
//! onto `replaycore.errors`). Compiled with the `python` feature only.

pub mod args;
pub mod cache;
pub mod construct;
pub mod digest;
pub mod errors;
pub mod journal;
pub mod keys;
pub mod records;
pub mod replay;
pub mod sequence;
pub mod store;

pub(crate) use crate::sync::lock;
