//! The one error type the tools return: what went wrong, how to fix it, and the exit code.
//!
//! Every error is printed once, by [`crate::cli::main_from`], as a single line on stderr:
//! `tool: error: <message> (<hint>)`. Messages are built where the error arises, so they can name
//! the file, socket, endpoint or field involved. They never contain a secret: callers hold secrets
//! in [`crate::secret::Secret`], whose formatting hides the value.

use std::fmt;

use crate::exit::{self, Code};

/// An error with its exit code and, where there is one, the fix.
#[derive(Debug)]
pub struct Error {
    code: Code,
    message: String,
    hint: Option<String>,
    broken_pipe: bool,
}

/// The result type of the tools' fallible functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with the given exit code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
            broken_pipe: false,
        }
    }

    /// Bad input data ([`exit::DATA`]).
    pub fn data(message: impl Into<String>) -> Self {
        Self::new(exit::DATA, message)
    }

    /// A configuration problem ([`exit::CONFIG`]).
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(exit::CONFIG, message)
    }

    /// A service that did not answer ([`exit::UNAVAILABLE`]).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(exit::UNAVAILABLE, message)
    }

    /// Authentication or permission failed ([`exit::NO_PERM`]).
    pub fn no_perm(message: impl Into<String>) -> Self {
        Self::new(exit::NO_PERM, message)
    }

    /// A deadline passed ([`exit::TIMEOUT`]).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(exit::TIMEOUT, message)
    }

    /// A bug ([`exit::SOFTWARE`]).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(exit::SOFTWARE, message)
    }

    /// A failed read of a local file or stream: `what` names the file and the action, e.g.
    /// `reading policy file policy.json`. Whatever the cause (missing, denied, a directory), a
    /// file that cannot be read is [`exit::NO_INPUT`]; text that is not UTF-8 is bad data
    /// ([`exit::DATA`]).
    #[must_use]
    pub fn read_io(what: impl fmt::Display, err: &std::io::Error) -> Self {
        let code = match err.kind() {
            std::io::ErrorKind::InvalidData => exit::DATA,
            _ => exit::NO_INPUT,
        };
        Self::new(code, format!("{what}: {}", describe_io(err)))
    }

    /// A failed write of a local file or stream, e.g. `writing image_uri.txt`: always
    /// [`exit::IO`], whatever the cause (a missing directory, permission, a full disk). A closed
    /// stdout is marked as such, see [`Error::is_broken_pipe`].
    #[must_use]
    pub fn write_io(what: impl fmt::Display, err: &std::io::Error) -> Self {
        let mut error = Self::new(exit::IO, format!("{what}: {}", describe_io(err)));
        error.broken_pipe = err.kind() == std::io::ErrorKind::BrokenPipe;
        error
    }

    /// Adds the fix, printed after the message.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Puts `context` in front of the message: `context: message`.
    #[must_use]
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The exit code.
    #[must_use]
    pub fn code(&self) -> Code {
        self.code
    }

    /// The message, without the hint.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The fix, if one is known.
    #[must_use]
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Whether the error is a closed stdout (`tool | head -1`), which is a quiet success.
    #[must_use]
    pub fn is_broken_pipe(&self) -> bool {
        self.broken_pipe
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// An I/O error in words, without Rust's `(os error N)` suffix.
#[must_use]
pub fn describe_io(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_lowercase(),
        None => text,
    }
}

/// The error and its sources, joined by `: `, with repeats dropped (libraries often repeat
/// their source's text in their own).
#[must_use]
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        let text = match e.downcast_ref::<std::io::Error>() {
            Some(io) => describe_io(io),
            None => e.to_string(),
        };
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_puts_the_hint_after_the_message() {
        let err = Error::config("no AWS region").with_hint("pass --region or set AWS_REGION");
        assert_eq!(
            err.to_string(),
            "no AWS region (pass --region or set AWS_REGION)"
        );
        assert_eq!(err.code(), exit::CONFIG);
    }

    #[test]
    fn io_errors_map_to_codes_and_drop_the_os_error_number() {
        let missing = std::io::Error::from_raw_os_error(2);
        let err = Error::read_io("reading policy.json", &missing);
        assert_eq!(err.code(), exit::NO_INPUT);
        assert_eq!(
            err.to_string(),
            "reading policy.json: no such file or directory"
        );
        let denied = std::io::Error::from_raw_os_error(13);
        assert_eq!(Error::read_io("reading a", &denied).code(), exit::NO_INPUT);
        assert_eq!(Error::write_io("writing a", &denied).code(), exit::IO);
        assert_eq!(Error::write_io("writing a", &missing).code(), exit::IO);
        let text = std::io::Error::from(std::io::ErrorKind::InvalidData);
        assert_eq!(Error::read_io("reading a", &text).code(), exit::DATA);
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(Error::write_io("writing stdout", &pipe).is_broken_pipe());
    }

    #[test]
    fn chain_joins_sources_without_repeats() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "request failed")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = Outer(std::io::Error::from_raw_os_error(111));
        assert_eq!(chain(&err), "request failed: connection refused");
    }
}
