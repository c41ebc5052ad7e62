//! Man pages and shell completions, generated from the same `clap::Command` that parses the
//! command line, so they cannot drift from `--help`.
//!
//! Every tool takes a hidden `--generate KIND` (handled once, in [`crate::cli::main_from`]) that
//! writes one of them to stdout; `scripts/release.sh` uses it to put a man page and completions
//! for every tool into the release archive:
//!
//! ```sh
//! ecr-repo --generate man > ecr-repo.1
//! ecr-repo --generate bash > /usr/share/bash-completion/completions/ecr-repo
//! ```
//!
//! The long help's trailing sections (`EXAMPLES:`, `EXIT STATUS:`, a tool's own such as
//! `POLICY:`) become man page sections of the same names with the same text, instead of the
//! single `EXTRA` section clap_mangen would make of them.

use std::io::Write;

use clap::{Arg, ArgAction, Command, ValueEnum};
use clap_complete::Shell;
use clap_mangen::roff::{Roff, roman};

use crate::error::{Error, Result};

/// The id (and long name) of the hidden argument.
pub const ARG: &str = "generate";

/// What `--generate` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A man page (roff, section 1).
    Man,
    /// A bash completion script.
    Bash,
    /// A zsh completion script.
    Zsh,
    /// A fish completion script.
    Fish,
    /// An elvish completion script.
    Elvish,
    /// A PowerShell completion script.
    Powershell,
}

impl Kind {
    fn shell(self) -> Option<Shell> {
        match self {
            Kind::Man => None,
            Kind::Bash => Some(Shell::Bash),
            Kind::Zsh => Some(Shell::Zsh),
            Kind::Fish => Some(Shell::Fish),
            Kind::Elvish => Some(Shell::Elvish),
            Kind::Powershell => Some(Shell::PowerShell),
        }
    }
}

/// The hidden `--generate KIND` argument. It is exclusive: given alone, it also skips a tool's
/// required arguments, so `tool --generate man` works for every tool.
#[must_use]
pub fn arg() -> Arg {
    Arg::new(ARG)
        .long(ARG)
        .value_name("KIND")
        .value_parser(clap::builder::EnumValueParser::<Kind>::new())
        .action(ArgAction::Set)
        .exclusive(true)
        .hide(true)
        .help("Write a man page or a shell completion script to stdout")
}

/// Writes `kind` for `command` (the tool's full command, with its help sections) to `out`.
pub fn write(kind: Kind, command: Command, out: &mut dyn Write) -> Result<()> {
    let mut command = command;
    let name = command.get_name().to_owned();
    let written = match kind.shell() {
        Some(shell) => {
            clap_complete::generate(shell, &mut command, name, out);
            Ok(())
        }
        None => out.write_all(man(command).as_bytes()),
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| Error::write_io("writing to standard output", &e))
}

/// The man page of `command`, with its long help's trailing sections as man page sections.
#[must_use]
pub fn man(command: Command) -> String {
    let sections = command
        .get_after_long_help()
        .or_else(|| command.get_after_help())
        .map(|text| help_sections(&text.to_string()))
        .unwrap_or_default();
    let version = command.get_version().unwrap_or_default().to_owned();
    let command = command
        .after_help(None::<&str>)
        .after_long_help(None::<&str>);
    let mut page = Vec::new();
    // Rendering into memory cannot fail.
    let _ = clap_mangen::Man::new(command)
        .source(format!("imgpipe {version}"))
        .manual("imgpipe manual")
        .render(&mut page);
    let page = String::from_utf8_lossy(&page).into_owned();

    let mut roff = Roff::new();
    for (heading, lines) in &sections {
        roff.control("SH", [heading.as_str()]);
        roff.control("nf", []);
        for line in lines {
            roff.text([roman(line.as_str())]);
        }
        roff.control("fi", []);
    }
    // Roff::render starts with a preamble that the page already has.
    let preamble = Roff::new().render();
    let rendered = roff.render();
    let extra = rendered.strip_prefix(&preamble).unwrap_or(&rendered);
    // Before the VERSION section, where man pages keep their examples and exit statuses.
    match page.find("\n.SH VERSION") {
        Some(at) => format!("{}\n{extra}{}", &page[..at], &page[at + 1..]),
        None => format!("{page}{extra}"),
    }
}

/// Splits long help text into `(HEADING, lines)` sections: a line such as `EXIT STATUS:` (capital
/// letters and spaces, ending in a colon, not indented) starts one. Lines lose the indentation
/// they all share; text before the first heading goes under `NOTES`.
fn help_sections(text: &str) -> Vec<(String, Vec<String>)> {
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(heading) = heading(line) {
            sections.push((heading.to_owned(), Vec::new()));
            continue;
        }
        if sections.is_empty() {
            if line.trim().is_empty() {
                continue;
            }
            sections.push(("NOTES".to_owned(), Vec::new()));
        }
        if let Some((_, lines)) = sections.last_mut() {
            lines.push(line.trim_end().to_owned());
        }
    }
    for (_, lines) in &mut sections {
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        let indent = lines
            .iter()
            .filter(|l| !l.is_empty())
            .map(|l| l.len() - l.trim_start().len())
            .min()
            .unwrap_or(0);
        for line in lines.iter_mut() {
            if !line.is_empty() {
                line.drain(..indent);
            }
        }
    }
    sections
}

fn heading(line: &str) -> Option<&str> {
    let name = line.strip_suffix(':')?;
    let is_heading = name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_uppercase() || c == ' ');
    is_heading.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command as `cli::main_from` hands it over: without the hidden argument itself (bash
    /// completion would list it).
    fn toy() -> Command {
        Command::new("toy")
            .version("1.2.3")
            .about("A toy tool")
            .arg(
                Arg::new("repository")
                    .long("repository")
                    .required(true)
                    .help("Repository name"),
            )
            .after_long_help(format!(
                "EXAMPLES:\n  # Make one\n  toy --repository a\n\n{}",
                crate::exit::help_section()
            ))
    }

    #[test]
    fn headings_are_capitals_and_a_colon_at_the_start_of_a_line() {
        for (line, expected) in [
            ("EXAMPLES:", Some("EXAMPLES")),
            ("EXIT STATUS:", Some("EXIT STATUS")),
            ("CREDENTIAL HELPER:", Some("CREDENTIAL HELPER")),
            ("  EXAMPLES:", None),
            ("Examples:", None),
            ("EXAMPLES", None),
            (":", None),
            ("  # ecr-login --registry HOST:", None),
        ] {
            assert_eq!(heading(line), expected, "{line:?}");
        }
    }

    #[test]
    fn help_text_splits_into_sections_without_their_shared_indent() {
        let sections =
            help_sections("intro\nEXAMPLES:\n  # one\n    two\n\nEXIT STATUS:\n  0  ok\n\n");
        assert_eq!(
            sections,
            vec![
                ("NOTES".to_owned(), vec!["intro".to_owned()]),
                (
                    "EXAMPLES".to_owned(),
                    vec!["# one".to_owned(), "  two".to_owned()]
                ),
                ("EXIT STATUS".to_owned(), vec!["0  ok".to_owned()]),
            ]
        );
    }

    #[test]
    fn the_man_page_has_the_long_help_sections_and_no_extra_section() {
        let page = man(toy());
        for wanted in [
            ".TH toy 1",
            ".SH EXAMPLES",
            "toy \\-\\-repository a",
            ".SH \"EXIT STATUS\"",
            "the answer is no",
            "\\-\\-repository",
        ] {
            assert!(page.contains(wanted), "man page lacks {wanted:?}:\n{page}");
        }
        assert!(!page.contains(".SH EXTRA"), "{page}");
        assert!(
            page.find(".SH \"EXIT STATUS\"") < page.find(".SH VERSION"),
            "{page}"
        );
    }

    #[test]
    fn every_kind_names_the_tool_and_its_flag() {
        for kind in Kind::value_variants() {
            let mut out = Vec::new();
            write(*kind, toy(), &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("toy"), "{kind:?}:\n{text}");
            assert!(text.contains("repository"), "{kind:?}:\n{text}");
        }
    }

    #[test]
    fn generate_alone_skips_required_arguments() {
        let matches = toy()
            .arg(arg())
            .try_get_matches_from(["toy", "--generate", "man"])
            .unwrap();
        assert_eq!(matches.get_one::<Kind>(ARG), Some(&Kind::Man));
        let err = toy()
            .arg(arg())
            .try_get_matches_from(["toy", "--repository", "a", "--generate", "bash"])
            .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
