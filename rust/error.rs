//! The one error type of the pure Rust core.
//!
//! Every input-dependent failure is a typed [`Error`] carrying the name of the
//! argument it is about (exactly as the Python API spells it: `"step_idx"`,
//! `"rows[3].episode"`, `"parts[1]"` ...) and a readable message. The bindings
//! (`py::errors`) map each variant onto one class of `replaycore.errors`.

use std::fmt;

/// A failure of the pure core, with the argument it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// An argument of the wrong type (`InvalidArgumentType`, also a `TypeError`).
    Type { argument: String, message: String },
    /// An argument whose value is refused (`InvalidArgument`, a `ValueError`).
    Value { argument: String, message: String },
    /// A string that is not a legacy idempotency key (`InvalidKeyFormat`).
    KeyFormat { argument: String, message: String },
    /// A broken internal invariant: a bug, never caused by input.
    Internal { message: String },
}

impl Error {
    /// A type error about `argument`.
    pub fn type_error(argument: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Type {
            argument: argument.into(),
            message: message.into(),
        }
    }

    /// A value error about `argument`.
    pub fn value_error(argument: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Value {
            argument: argument.into(),
            message: message.into(),
        }
    }

    /// A malformed key in `argument`.
    pub fn key_format(argument: impl Into<String>, message: impl Into<String>) -> Self {
        Error::KeyFormat {
            argument: argument.into(),
            message: message.into(),
        }
    }

    /// The "lone surrogate" value error of a text argument; `index` counts code points.
    pub fn lone_surrogate(argument: impl Into<String>, index: usize, shown: &str) -> Self {
        let argument = argument.into();
        let message = format!("{argument} holds a lone surrogate at index {index}: {shown}");
        Error::Value { argument, message }
    }

    /// The "must be in low..=high" value error of an integer argument.
    pub fn out_of_range(
        argument: impl Into<String>,
        low: i128,
        high: i128,
        shown: impl fmt::Display,
    ) -> Self {
        let argument = argument.into();
        let message = format!("{argument} must be in {low}..={high}, got {shown}");
        Error::Value { argument, message }
    }

    /// The argument name this error is about (None for internal errors).
    pub fn argument(&self) -> Option<&str> {
        match self {
            Error::Type { argument, .. }
            | Error::Value { argument, .. }
            | Error::KeyFormat { argument, .. } => Some(argument),
            Error::Internal { .. } => None,
        }
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        match self {
            Error::Type { message, .. }
            | Error::Value { message, .. }
            | Error::KeyFormat { message, .. }
            | Error::Internal { message } => message,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_message_names_argument_and_value() {
        let err = Error::out_of_range("step_idx", 0, 4294967295, -1);
        assert_eq!(err.argument(), Some("step_idx"));
        assert_eq!(err.message(), "step_idx must be in 0..=4294967295, got -1");
    }

    #[test]
    fn surrogate_message() {
        let err = Error::lone_surrogate("run_id", 3, "'ab\\ud800'");
        assert!(matches!(err, Error::Value { .. }));
        assert_eq!(
            err.to_string(),
            "run_id holds a lone surrogate at index 3: 'ab\\ud800'"
        );
    }
}
