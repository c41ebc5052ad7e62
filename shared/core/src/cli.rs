//! What every tool's command line has in common, and the `main` they all share.
//!
//! A tool's entry in `imgpipe` is one call: `shared::cli::main_from::<Cli>("tool", tool::run, args)`. It
//! adds the exit-code table to `--help`, answers the hidden `--generate man|bash|...` (man page
//! and completions, see [`crate::generate`]), sets up logging, runs the tool, prints an error once as
//! a single line on stderr, and turns a closed stdout (`tool | head -1`) into a quiet success.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

use crate::document::Document;
use crate::error::{Error, Result};
use crate::exit::{self, Code};
use crate::generate;
use crate::io::{Input, Output, stdin_input};
use crate::log;

/// Flags every tool takes.
#[derive(Args, Clone, Debug, Default)]
pub struct Common {
    /// Do not read documents from stdin; work from flags alone. (Nothing is read either when
    /// stdin is a terminal or empty.)
    #[arg(long, global = true)]
    pub no_input: bool,

    /// Print only this field of each output document, raw (strings as they are, arrays one item
    /// per line), for use in shell: e.g. `--field image_uri`. Dotted paths reach nested fields.
    #[arg(long, value_name = "NAME", global = true)]
    pub field: Option<String>,

    /// Print only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Print more detail on stderr.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// A tool's parsed command line, giving access to the common flags.
pub trait Cli: clap::Parser {
    /// The common flags.
    fn common(&self) -> &Common;
}

/// The `main` of every tool: parses the command line `args` into `C`, runs `run`, and exits with
/// its code. `args[0]` is the name the tool was called by, as in `std::env::args_os()`; the
/// multi-call `imgpipe` binary calls it with the tool's arguments.
pub fn main_from<C: Cli>(
    tool: &'static str,
    run: fn(&C) -> Result<Code>,
    args: Vec<std::ffi::OsString>,
) -> ExitCode {
    let command = command::<C>();
    let matches = match command
        .clone()
        .arg(generate::arg())
        .try_get_matches_from(args)
    {
        Ok(matches) => matches,
        Err(err) => return usage_error(tool, &err),
    };
    if let Some(kind) = matches.get_one::<generate::Kind>(generate::ARG) {
        log::init(tool, false, 0);
        return match generate::write(*kind, command, &mut std::io::stdout().lock()) {
            Err(err) if !err.is_broken_pipe() => {
                report(&err);
                err.code().into()
            }
            _ => exit::SUCCESS.into(),
        };
    }
    let cli = match C::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => return usage_error(tool, &err),
    };
    log::init(tool, cli.common().quiet, cli.common().verbose);
    let code = match run(&cli) {
        Ok(code) => code,
        Err(err) if err.is_broken_pipe() => exit::SUCCESS,
        Err(err) => {
            report(&err);
            err.code()
        }
    };
    code.into()
}

/// A tool's full command line: its own, with the exit-code table appended to the long help
/// (after its EXAMPLES). `--help`, the man page and the completions all come from this.
#[must_use]
pub fn command<C: Cli>() -> clap::Command {
    let command = C::command();
    let help = match command.get_after_long_help() {
        Some(examples) => format!("{examples}\n\n{}", exit::help_section()),
        None => exit::help_section(),
    };
    command.after_long_help(help)
}

/// Prints an error as the one line a person reads.
pub fn report(err: &Error) {
    log::write(
        log::Level::Error,
        format_args!("{}", one_line(&err.to_string())),
    );
}

/// Ends a run whose command line clap refused: `--help` and `--version` print as clap prints
/// them; a usage error becomes the one line every other error is (`tool: error: ... (see tool
/// --help)`), exit 2.
fn usage_error(tool: &'static str, err: &clap::Error) -> ExitCode {
    if !err.use_stderr() {
        err.exit();
    }
    log::init(tool, false, 0);
    // clap's first paragraph says what is wrong (a list of missing arguments continues it on
    // indented lines); the usage and the "try --help" line after it are left for --help.
    let rendered = err.render().to_string();
    let paragraph: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .skip_while(|line| line.is_empty())
        .take_while(|line| !line.is_empty())
        .collect();
    let text = paragraph.join(" ");
    let message = text.strip_prefix("error: ").unwrap_or(&text);
    report(&Error::new(exit::USAGE, message).with_hint(format!("see {tool} --help")));
    exit::USAGE.into()
}

/// Folds a message onto one line: libraries' multi-line texts become `; `-separated parts.
#[must_use]
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A panic, in any thread, is a bug: one line on stderr, the children held by
/// [`crate::child::Killed`] killed, and exit 70 (internal error) at once. The release build
/// aborts on a panic (`panic = "abort"`, Cargo.toml), so the hook ends the process itself,
/// before anything unwinds or aborts: the same line and code in every build. The binary installs
/// it first thing, before it parses its command line.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .map_or_else(
                || "a panic".to_owned(),
                |text| log::escape_controls(&one_line(text)).into_owned(),
            );
        let place = info
            .location()
            .map(|at| format!(" at {}:{}", at.file(), at.line()))
            .unwrap_or_default();
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(
            stderr,
            "{}: internal error: {what}{place} (this is a bug in imgpipe: please report it with the command you ran)",
            log::tool()
        );
        drop(stderr);
        crate::child::kill_all();
        std::process::exit(i32::from(exit::SOFTWARE.0));
    }));
}

/// What a step gives back: its document, and its answer ([`exit::SUCCESS`], or [`exit::NO`]
/// when a gate failed or `--check` found a difference). A plain [`Document`] is a yes.
#[derive(Debug)]
pub struct Answer {
    /// The document to write.
    pub doc: Document,
    /// The step's answer.
    pub code: Code,
}

impl Answer {
    /// The document, with the answer no ([`exit::NO`]) when `no` holds.
    #[must_use]
    pub fn no_if(no: bool, doc: Document) -> Self {
        let code = if no { exit::NO } else { exit::SUCCESS };
        Self { doc, code }
    }
}

impl From<Document> for Answer {
    fn from(doc: Document) -> Self {
        Self {
            doc,
            code: exit::SUCCESS,
        }
    }
}

/// Runs `step` on each input document and writes each result to stdout, flushed at once, and
/// returns the answer: no ([`exit::NO`]) if any step said no, as ripgrep's "no match".
///
/// With no input, `step` runs once on an empty document. The first error stops the run: records
/// already written stay written, and nothing is written for the failing one.
pub async fn pipeline<F, R>(common: &Common, step: F) -> Result<Code>
where
    F: AsyncFnMut(Document) -> Result<R>,
    R: Into<Answer>,
{
    pipeline_over(common, common.no_input, "", &[], step).await
}

/// Like [`pipeline`], for tools that act on several things named on the command line
/// (`--repository a --repository b`): each input document is handed to `step` once per value,
/// with `field` set to that value, and each result is written. Without values, as [`pipeline`].
/// `no_input` says whether stdin holds documents (a tool may read something else from it).
pub async fn pipeline_over<F, R>(
    common: &Common,
    no_input: bool,
    field: &str,
    values: &[String],
    mut step: F,
) -> Result<Code>
where
    F: AsyncFnMut(Document) -> Result<R>,
    R: Into<Answer>,
{
    let mut output = Output::stdout(common.field.clone());
    let mut answer = exit::SUCCESS;
    let mut run = async |doc: Document, output: &mut Output<_>| -> Result<()> {
        output.check(&doc)?;
        let docs = if values.is_empty() {
            vec![doc]
        } else {
            values
                .iter()
                .map(|value| {
                    let mut one = doc.clone();
                    one.set(field, value.as_str());
                    one
                })
                .collect()
        };
        for one in docs {
            let Answer { doc, code } = step(one).await?.into();
            if code != exit::SUCCESS {
                answer = code;
            }
            output.write(doc)?;
        }
        Ok(())
    };
    let mut seen = 0usize;
    if let Input::Stream(records) = stdin_input(no_input) {
        for record in records {
            seen += 1;
            run(record?, &mut output).await?;
        }
    }
    if seen == 0 {
        run(Document::new(), &mut output).await?;
    }
    Ok(answer)
}

/// A single-threaded async runtime for a tool's work: the tools do one thing at a time, and a
/// small runtime starts fast.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Error::internal(format!(
                "starting the async runtime: {}",
                crate::error::describe_io(&e)
            ))
        })
}

/// Parses a `--platform` value, `os/architecture[/variant]` (see [`crate::platform`]).
pub fn platform(text: &str) -> std::result::Result<crate::platform::Platform, String> {
    crate::platform::Platform::parse(text).map_err(|e| {
        format!(
            "{} (write os/architecture[/variant], e.g. linux/amd64 or linux/arm64)",
            e.message()
        )
    })
}

/// Parses a `KEY=VALUE` flag value (`--label`, `--tag` of ecr-repo): the key is everything
/// before the first `=` and may not be empty; the value may be empty or hold more `=`.
pub fn key_value(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    /// Set for the copy of this test that the test runs, to the file where that copy writes the
    /// pid of the child it holds before it panics under the hook.
    const PANICKING_CHILD: &str = "IMGPIPE_TEST_PANICKING_CHILD";

    /// The hook ends the process, whatever the build's panic strategy: a panic in a worker
    /// thread gives the one line and exit 70, not an unwound or aborted (SIGABRT) process, and
    /// kills the children held (a private ssh-agent, in img-build), which no Drop would.
    #[test]
    fn a_panic_in_any_thread_is_one_line_on_stderr_exit_70_and_no_child_left() {
        if let Some(pid_file) = std::env::var_os(PANICKING_CHILD) {
            super::install_panic_hook();
            // Its output goes nowhere, so that the run's pipes close when the run ends.
            let sleeper = Command::new("sleep")
                .arg("600")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let held = crate::child::Killed::hold(sleeper);
            std::fs::write(pid_file, held.pid().to_string()).unwrap();
            let worker = std::thread::spawn(|| panic!("the list of tags\nwas \x1b[2Jempty"));
            let _ = worker.join();
            // Only reached if the hook let the thread unwind: the run then exits 0, not 70.
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "cli::tests::a_panic_in_any_thread_is_one_line_on_stderr_exit_70_and_no_child_left",
                "--test-threads=1",
            ])
            .env(PANICKING_CHILD, &pid_file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(70), "stderr: {stderr}");
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("internal error"))
            .collect();
        assert_eq!(lines.len(), 1, "stderr: {stderr}");
        assert!(
            lines[0].starts_with("imgpipe: internal error: the list of tags; was ")
                && !lines[0].contains('\x1b')
                && lines[0].contains("empty at shared/core/src/cli.rs:")
                && lines[0].ends_with(
                    "(this is a bug in imgpipe: please report it with the command you ran)"
                ),
            "{}",
            lines[0]
        );
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the child {pid} outlived the panic"
        );
    }
}
