//! The one error type of the pure Rust core.
//!
//! Every failure of the core is an [`Error`]: an argument refused (carrying
//! the name of the argument exactly as the Python API spells it: `"step_idx"`,
//! `"rows[3].episode"`, `"parts[1]"` ...), bytes that are not a record, a
//! damaged journal, a strict replay violation, a locked journal, a spent
//! reducer, an I/O error from the OS, or a broken internal invariant. The
//! bindings map each variant onto one exception class in one place
//! (`py::errors`).
//!
//! An internal error met below an `io::Read` (where only an `io::Error` can be
//! returned) is made with [`internal_io`] and turned back into
//! [`Error::Internal`] by `From<io::Error>`, so it is never reported as an
//! I/O error.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::io;

use crate::frames::WalkError;
use crate::records::DecodeError;
use crate::replay::Violation;

/// A failure of the pure core.
#[derive(Debug)]
pub enum Error {
    /// An argument of the wrong type (`InvalidArgumentType`, also a `TypeError`).
    Type { argument: String, message: String },
    /// An argument whose value is refused (`InvalidArgument`, a `ValueError`).
    Value { argument: String, message: String },
    /// A string that is not a legacy idempotency key (`InvalidKeyFormat`).
    KeyFormat { argument: String, message: String },
    /// Bytes that should hold one record do not (`RecordDecodeError`).
    Decode(DecodeError),
    /// A journal's bytes are damaged at `offset` (`JournalCorruption`).
    Corruption { offset: u64, reason: String },
    /// A record breaks a replay invariant while replaying strictly
    /// (`ReplayViolation`).
    Violation(Violation),
    /// Another writer holds the journal (`JournalLocked`).
    Locked { message: String },
    /// A reducer used after `finish` (`ReducerFinished`).
    Finished,
    /// An I/O error (`OSError` and its subclasses).
    Io(io::Error),
    /// A broken internal invariant: a bug, never caused by input.
    Internal { message: String },
}

/// The message of [`Error::Finished`].
pub const FINISHED: &str = "the reducer is spent: finish() was already called";

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

    /// A broken internal invariant.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
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

    /// The argument name this error is about (None for every error that is
    /// not about an argument).
    pub fn argument(&self) -> Option<&str> {
        match self {
            Error::Type { argument, .. }
            | Error::Value { argument, .. }
            | Error::KeyFormat { argument, .. } => Some(argument),
            _ => None,
        }
    }

    /// The human-readable message (what `Display` shows).
    pub fn message(&self) -> Cow<'_, str> {
        match self {
            Error::Type { message, .. }
            | Error::Value { message, .. }
            | Error::KeyFormat { message, .. }
            | Error::Locked { message } => Cow::Borrowed(message),
            Error::Finished => Cow::Borrowed(FINISHED),
            other => Cow::Owned(other.to_string()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Type { message, .. }
            | Error::Value { message, .. }
            | Error::KeyFormat { message, .. }
            | Error::Locked { message } => f.write_str(message),
            Error::Decode(err) => err.fmt(f),
            Error::Corruption { offset, reason } => {
                write!(f, "journal corruption at byte {offset}: {reason}")
            }
            Error::Violation(v) => write!(
                f,
                "{}: {} (record {:?}, journal_seq {})",
                v.kind, v.message, v.record_id, v.journal_seq
            ),
            Error::Finished => f.write_str(FINISHED),
            Error::Io(err) => err.fmt(f),
            Error::Internal { message } => write!(f, "replaycore internal error: {message}"),
        }
    }
}

impl PartialEq for Error {
    /// Equal variants with equal fields; I/O errors (not comparable
    /// themselves) are equal when their kind and text are.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Error::Type {
                    argument: a,
                    message: m,
                },
                Error::Type {
                    argument: b,
                    message: n,
                },
            )
            | (
                Error::Value {
                    argument: a,
                    message: m,
                },
                Error::Value {
                    argument: b,
                    message: n,
                },
            )
            | (
                Error::KeyFormat {
                    argument: a,
                    message: m,
                },
                Error::KeyFormat {
                    argument: b,
                    message: n,
                },
            ) => a == b && m == n,
            (Error::Decode(a), Error::Decode(b)) => a == b,
            (
                Error::Corruption {
                    offset: a,
                    reason: m,
                },
                Error::Corruption {
                    offset: b,
                    reason: n,
                },
            ) => a == b && m == n,
            (Error::Violation(a), Error::Violation(b)) => a == b,
            (Error::Locked { message: a }, Error::Locked { message: b })
            | (Error::Internal { message: a }, Error::Internal { message: b }) => a == b,
            (Error::Finished, Error::Finished) => true,
            (Error::Io(a), Error::Io(b)) => a.kind() == b.kind() && a.to_string() == b.to_string(),
            _ => false,
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(err) => Some(err),
            Error::Decode(err) => Some(err),
            _ => None,
        }
    }
}

/// A broken invariant met where only an `io::Error` can be returned.
#[derive(Debug)]
struct Bug(&'static str);

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "replaycore internal error: {}", self.0)
    }
}

impl std::error::Error for Bug {}

/// An `io::Error` standing for a broken internal invariant: converting it to
/// an [`Error`] gives [`Error::Internal`], never [`Error::Io`].
pub fn internal_io(message: &'static str) -> io::Error {
    io::Error::other(Bug(message))
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        match err.get_ref().and_then(|inner| inner.downcast_ref::<Bug>()) {
            Some(bug) => Error::internal(bug.0),
            None => Error::Io(err),
        }
    }
}

impl From<DecodeError> for Error {
    fn from(err: DecodeError) -> Self {
        Error::Decode(err)
    }
}

impl From<Violation> for Error {
    fn from(v: Violation) -> Self {
        Error::Violation(v)
    }
}

impl From<Infallible> for Error {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

impl<E: Into<Error>> From<WalkError<E>> for Error {
    fn from(err: WalkError<E>) -> Self {
        match err {
            WalkError::Corruption { offset, reason } => Error::Corruption { offset, reason },
            WalkError::Io(err) => err.into(),
            WalkError::Stop(stop) => stop.into(),
        }
    }
}

/// A string option of the Python API (`mode="audit"`, `fsync="batch"` ...):
/// its argument name, every value it takes, and the error about any other.
pub trait Choice: Copy + 'static {
    /// The argument, as the Python API spells it.
    const ARGUMENT: &'static str;
    /// Every value, in the order the error lists them.
    const ALL: &'static [Self];

    /// The value's name.
    fn name(self) -> &'static str;

    /// The value named `name`.
    fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|value| value.name() == name)
    }

    /// The error about a value that names none of [`Choice::ALL`], shown as
    /// `shown` (the Python `repr` of what was given).
    fn refused(shown: &str) -> Error {
        let names: Vec<&str> = Self::ALL.iter().map(|value| value.name()).collect();
        let message = format!(
            "{} must be one of {}, got {shown}",
            Self::ARGUMENT,
            names.join(", ")
        );
        Error::value_error(Self::ARGUMENT, message)
    }
}

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

    #[test]
    fn an_internal_io_error_is_internal_and_a_real_one_is_io() {
        let err = Error::from(internal_io("the frame walker moved backwards"));
        let Error::Internal { message } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(message, "the frame walker moved backwards");
        assert_eq!(err.argument(), None);
        assert_eq!(
            err.to_string(),
            "replaycore internal error: the frame walker moved backwards"
        );
        let real = Error::from(io::Error::from_raw_os_error(2));
        let Error::Io(inner) = &real else {
            panic!("{real:?}")
        };
        assert_eq!(inner.raw_os_error(), Some(2));
        // An io::Error wrapping some other error stays an I/O error.
        let other = Error::from(io::Error::other("disk on fire"));
        assert!(matches!(other, Error::Io(_)), "{other:?}");
    }

    #[test]
    fn walk_errors_convert_by_kind() {
        let corrupt = Error::from(WalkError::<Infallible>::Corruption {
            offset: 4,
            reason: "header check failed".to_owned(),
        });
        assert!(matches!(corrupt, Error::Corruption { offset: 4, .. }));
        assert_eq!(
            corrupt.to_string(),
            "journal corruption at byte 4: header check failed"
        );
        let bug = Error::from(WalkError::<Infallible>::Io(internal_io("x")));
        assert!(matches!(bug, Error::Internal { .. }), "{bug:?}");
        let violation = Violation {
            kind: "invalid_state_transition",
            record_id: "r1".to_owned(),
            journal_seq: 3,
            message: "journal records must be strictly increasing".to_owned(),
        };
        let stopped = Error::from(WalkError::Stop(violation.clone()));
        let Error::Violation(v) = &stopped else {
            panic!("{stopped:?}")
        };
        assert_eq!(v, &violation);
        assert_eq!(
            stopped.to_string(),
            "invalid_state_transition: journal records must be strictly increasing \
             (record \"r1\", journal_seq 3)"
        );
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Color {
        Red,
        Blue,
    }

    impl Choice for Color {
        const ARGUMENT: &'static str = "color";
        const ALL: &'static [Self] = &[Color::Red, Color::Blue];

        fn name(self) -> &'static str {
            match self {
                Color::Red => "red",
                Color::Blue => "blue",
            }
        }
    }

    #[test]
    fn a_choice_parses_its_names_and_lists_them_when_refusing() {
        assert_eq!(Color::parse("blue"), Some(Color::Blue));
        assert_eq!(Color::parse("Blue"), None);
        let err = Color::refused("'green'");
        assert_eq!(err.argument(), Some("color"));
        assert_eq!(err.message(), "color must be one of red, blue, got 'green'");
    }
}
