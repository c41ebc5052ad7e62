//! `imgpipe`: every imgpipe tool in one binary, as uutils' multi-call `coreutils` is.
//!
//! Called by a tool's name (a link named `img-push`, `ecr-login`,
//! `docker-credential-ecr-login`, ...), it is that tool. Called as `imgpipe`, the first
//! argument names the tool (`imgpipe img-push --tag 1.4.2`), and `imgpipe --list` prints the
//! names, one a line, which is what a release links. The tools are the tool crates' libraries;
//! one binary carries the AWS SDK, HTTP and TLS stack once instead of eight times.

use std::ffi::OsString;
use std::io::Write as _;
use std::process::ExitCode;

/// A tool's entry point: its command line, `args[0]` being the name it was called by.
type Main = fn(Vec<OsString>) -> ExitCode;

/// A tool's entry: its name, and its library's `run` through the shared `main`.
macro_rules! tool {
    ($name:literal, $krate:ident) => {
        ($name, |args| {
            shared::cli::main_from($name, $krate::run, args)
        })
    };
}

/// Every tool, by the name it is called by. The one list of them: `--list` prints it.
const TOOLS: &[(&str, Main)] = &[
    ("ecr-login", ecr_login::main_from),
    ("docker-credential-ecr-login", ecr_login::main_from),
    tool!("ecr-repo", ecr_repo),
    tool!("img-tag", img_tag),
    tool!("img-build", img_build),
    tool!("img-push", img_push),
    tool!("scan-gate", scan_gate),
    tool!("lifecycle-set", lifecycle_set),
    tool!("img-manifest", img_manifest),
];

/// The tool called `name`, if there is one.
fn tool(name: &str) -> Option<Main> {
    TOOLS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, main)| *main)
}

/// The file name of a path as given in `argv[0]`.
fn base_name(arg: &OsString) -> String {
    std::path::Path::new(arg)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

const USAGE: &str = "usage: imgpipe TOOL [ARGS...] | imgpipe --list | imgpipe --version
Every imgpipe tool in one binary: link it as a tool's name (img-push, ecr-login,
docker-credential-ecr-login, ...) or name the tool first. `imgpipe --list` prints the tools;
`imgpipe TOOL --help` shows one.";

fn main() -> ExitCode {
    shared::cli::install_panic_hook();
    let args: Vec<OsString> = std::env::args_os().collect();
    let called_as = args.first().map(base_name).unwrap_or_default();
    if let Some(main) = tool(&called_as) {
        return main(args);
    }
    let first = args.get(1).map(|a| a.to_string_lossy().into_owned());
    if let Some(main) = first.as_deref().and_then(tool) {
        // The tool's own command line: its name first, as if called by it.
        return main(args.into_iter().skip(1).collect());
    }
    match first.as_deref() {
        Some("--list") => {
            let names: String = TOOLS.iter().flat_map(|(n, _)| [*n, "\n"]).collect();
            print(&names)
        }
        Some("--version" | "-V") => print(&format!("imgpipe {}\n", env!("CARGO_PKG_VERSION"))),
        Some("--help" | "-h") => print(&format!("{USAGE}\n")),
        other => {
            let said = match other {
                None => "no tool given".to_owned(),
                Some(name) => format!(
                    "'{}' is not an imgpipe tool",
                    shared::log::escape_controls(name)
                ),
            };
            // One line on stderr, the exit code of a usage error (README's table).
            let _ = writeln!(
                std::io::stderr(),
                "imgpipe: error: {said} (imgpipe --list shows the tools; imgpipe TOOL --help shows one)"
            );
            ExitCode::from(shared::exit::USAGE.0)
        }
    }
}

/// Writes data to stdout; a closed stdout is not an error (`imgpipe --list | head -1`).
fn print(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            let _ = writeln!(std::io::stderr(), "imgpipe: error: writing stdout: {e}");
            ExitCode::from(shared::exit::IO.0)
        }
        _ => ExitCode::SUCCESS,
    }
}
