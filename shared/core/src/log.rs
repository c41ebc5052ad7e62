//! Messages for people, on stderr, each line prefixed with the tool's name.
//!
//! stdout carries data only; everything a person reads goes through here. `-q` keeps only errors,
//! `-v` adds detail. Colour is used only when stderr is a terminal and `NO_COLOR` is unset.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use anstyle::{AnsiColor, Style};

/// How much to say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Errors only (`-q`).
    Error = 0,
    /// Warnings.
    Warn = 1,
    /// What the tool did (the default).
    Info = 2,
    /// Detail (`-v`).
    Verbose = 3,
}

static TOOL: OnceLock<&'static str> = OnceLock::new();
static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the tool name used as the prefix and the level from `-q`/`-v` counts.
pub fn init(tool: &'static str, quiet: bool, verbose: u8) {
    let _ = TOOL.set(tool);
    let level = if quiet {
        Level::Error
    } else if verbose > 0 {
        Level::Verbose
    } else {
        Level::Info
    };
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// The tool's name, as given to [`init`].
#[must_use]
pub fn tool() -> &'static str {
    TOOL.get().copied().unwrap_or("imgpipe")
}

/// Whether messages at `level` are shown.
#[must_use]
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Whether stderr is a terminal (live progress) rather than a CI log (plain, throttled lines).
#[must_use]
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

fn colour() -> bool {
    stderr_is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `text` with every control character but tab (C0, DEL, C1: newline, carriage return, ESC,
/// ...) written as a Rust-style escape (`\n`, `\u{1b}`). Messages quote outside input (branch
/// names, registry answers, file names, finding titles); escaped, such input cannot forge a log
/// line of its own or drive the terminal.
#[must_use]
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\t';
    if !text.contains(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            escaped.extend(c.escape_debug());
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

/// Where messages go instead of straight to stderr while a live display owns the terminal.
type Sink = Box<dyn Fn(&str) + Send + Sync>;

fn sink() -> &'static std::sync::RwLock<Option<Sink>> {
    static SINK: OnceLock<std::sync::RwLock<Option<Sink>>> = OnceLock::new();
    SINK.get_or_init(|| std::sync::RwLock::new(None))
}

/// Sends every message line to `to` (a live display prints it above its rows, so the two never
/// tear each other), or, with `None`, back to stderr.
pub fn redirect(to: Option<Sink>) {
    let mut slot = sink()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *slot = to;
}

/// Writes one message at `level`, on one line: control characters in it are escaped (see
/// [`escape_controls`]). A failed write to stderr is ignored: there is nowhere left to report it.
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let text = args.to_string();
    let args = escape_controls(&text);
    let label = match level {
        Level::Error => Some(("error", AnsiColor::Red)),
        Level::Warn => Some(("warning", AnsiColor::Yellow)),
        Level::Info | Level::Verbose => None,
    };
    let line = match label {
        Some((label, colour_of)) if colour() => {
            let style = Style::new().bold().fg_color(Some(colour_of.into()));
            format!(
                "{}: {}{label}:{} {args}",
                tool(),
                style.render(),
                style.render_reset()
            )
        }
        Some((label, _)) => format!("{}: {label}: {args}", tool()),
        None => format!("{}: {args}", tool()),
    };
    let redirected = sink()
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(to) = redirected.as_ref() {
        to(&line);
    } else {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// Logs what the tool did, unless `-q`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($arg)*)) };
}

/// Logs a warning, unless `-q`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, format_args!($($arg)*)) };
}

/// Logs detail, with `-v`.
#[macro_export]
macro_rules! verbose {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Verbose, format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_kept() {
        assert_eq!(
            escape_controls("plain text\twith tab"),
            "plain text\twith tab"
        );
        assert_eq!(
            escape_controls("x\nimg-tag: error: forged"),
            "x\\nimg-tag: error: forged"
        );
        assert_eq!(escape_controls("\u{1b}[31mred\r"), "\\u{1b}[31mred\\r");
        assert_eq!(
            escape_controls("c1 \u{9b} del \u{7f}"),
            "c1 \\u{9b} del \\u{7f}"
        );
        assert_eq!(escape_controls("é ü 日本"), "é ü 日本");
    }
}
