//! The exit codes every imgpipe tool uses: one table, shown in every `--help` and in the README.
//!
//! "The answer is no" (a failed gate, drift found by `--check`) is kept apart from "something broke",
//! as grep keeps "no match" apart from "error". The failure codes follow sysexits(3), so a buildspec
//! can tell bad input from an unreachable service from a permission problem without parsing text.

/// An exit status of an imgpipe tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Code(pub u8);

/// The tool did what was asked.
pub const SUCCESS: Code = Code(0);
/// The answer is no: a gate failed, or `--check` found a difference. Nothing broke.
pub const NO: Code = Code(1);
/// The command line is wrong (unknown flag, missing value). Printed by the argument parser.
pub const USAGE: Code = Code(2);
/// The input data is wrong: malformed JSON, a field of the wrong type, an invalid tag, policy or name.
pub const DATA: Code = Code(65);
/// The scan did not produce a verdict: it failed, the image is unsupported, or findings are
/// unavailable. Fail closed: nothing is known about the image.
pub const SCAN_FAILED: Code = Code(3);
/// A tag already names another image where it may not move (an immutable tag).
pub const CONFLICT: Code = Code(4);
/// A file named on the command line cannot be read.
pub const NO_INPUT: Code = Code(66);
/// A service did not answer: the Docker daemon, a registry, the AWS endpoint.
pub const UNAVAILABLE: Code = Code(69);
/// A bug in the tool. Please report it.
pub const SOFTWARE: Code = Code(70);
/// A local file could not be written (Docker config, an artifact).
pub const IO: Code = Code(74);
/// A deadline passed (a scan that did not finish, a service too slow to answer). Retrying may help.
pub const TIMEOUT: Code = Code(75);
/// Authentication or permission failed: missing, expired or denied credentials.
pub const NO_PERM: Code = Code(77);
/// The configuration is wrong: no region, an unknown profile, an unreadable Docker config.
pub const CONFIG: Code = Code(78);

/// Every code with its one-line meaning, in order: the source of the help text and the README table.
pub const TABLE: &[(Code, &str)] = &[
    (SUCCESS, "success"),
    (
        NO,
        "the answer is no: a gate failed, or --check found a difference",
    ),
    (USAGE, "usage error: a wrong flag or argument"),
    (
        SCAN_FAILED,
        "the scan gave no verdict: it failed, the image is unsupported, or findings are unavailable",
    ),
    (
        CONFLICT,
        "a tag already names another image and may not move (immutable tag)",
    ),
    (
        DATA,
        "bad input data: malformed JSON, a wrong field type, an invalid name, tag or policy",
    ),
    (NO_INPUT, "an input file cannot be read"),
    (
        UNAVAILABLE,
        "a service did not answer: Docker daemon, registry or AWS endpoint",
    ),
    (SOFTWARE, "internal error (a bug: please report it)"),
    (IO, "a local file could not be written"),
    (TIMEOUT, "a deadline passed; retrying may help"),
    (
        NO_PERM,
        "authentication or permission failed: missing, expired or denied credentials",
    ),
    (
        CONFIG,
        "configuration error: no region, an unknown profile, an unreadable Docker config",
    ),
];

impl Code {
    /// The meaning of this code, as listed in [`TABLE`].
    #[must_use]
    pub fn meaning(self) -> &'static str {
        TABLE
            .iter()
            .find(|(code, _)| *code == self)
            .map_or("unknown", |(_, meaning)| meaning)
    }
}

impl From<Code> for std::process::ExitCode {
    fn from(code: Code) -> Self {
        std::process::ExitCode::from(code.0)
    }
}

/// The `EXIT STATUS` section appended to every tool's `--help`.
#[must_use]
pub fn help_section() -> String {
    use std::fmt::Write as _;
    let mut text = String::from("EXIT STATUS:\n");
    for (code, meaning) in TABLE {
        let _ = writeln!(text, "  {:>3}  {meaning}", code.0);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for (code, meaning) in TABLE {
            assert!(seen.insert(code.0), "code {} listed twice", code.0);
            assert!(!meaning.is_empty());
        }
        assert_eq!(NO_PERM.meaning(), TABLE[11].1);
    }

    #[test]
    fn help_lists_every_code() {
        let help = help_section();
        for (code, meaning) in TABLE {
            assert!(help.contains(&format!("{:>3}  {meaning}", code.0)));
        }
    }
}
