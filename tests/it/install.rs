//! The release archive and its installer: `scripts/release.sh --from` packs the already-built
//! binaries (the slow glibc-2.17 release build itself is not run here), `scripts/install.sh`
//! installs from it only what its SHA-256 vouches for. Also the man pages and completions every
//! tool generates from its own command line (`--generate`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::harness::{Outcome, bin_dir, program, root, tool};

const VERSION: &str = "0.0.0-test";
const ARCHIVE: &str = "imgpipe-0.0.0-test-x86_64-linux.tar.gz";

/// A release archive of the debug imgpipe with two tools linked (ecr-login, with its
/// credential-helper link, and img-tag), made once by scripts/release.sh, with its SHA256SUMS.
fn dist() -> &'static Path {
    static DIST: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIST.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new("bash")
            .arg(root().join("scripts/release.sh"))
            .args(["--from"])
            .arg(bin_dir())
            .args(["--only", "ecr-login,img-tag", "--version", VERSION, "--out"])
            .arg(dir.path())
            .output()
            .expect("running scripts/release.sh");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "scripts/release.sh --from failed ({}):\n{stderr}",
            output.status
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            dir.path().join(ARCHIVE).to_string_lossy(),
            "release.sh prints the archive's path\n{stderr}"
        );
        dir
    })
    .path()
}

fn install(args: &[&str]) -> Outcome {
    program(&root().join("scripts/install.sh")).args(args).run()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A copy of the release (archive and SHA256SUMS) whose archive has one byte changed.
fn tampered() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in [ARCHIVE, "SHA256SUMS"] {
        std::fs::copy(dist().join(name), dir.path().join(name)).unwrap();
    }
    let archive = dir.path().join(ARCHIVE);
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&archive, bytes).unwrap();
    dir
}

#[test]
fn the_release_lists_its_archive_and_installer_in_sha256sums() {
    let sums = std::fs::read_to_string(dist().join("SHA256SUMS")).unwrap();
    let names: Vec<&str> = sums
        .lines()
        .map(|line| line.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(names, [ARCHIVE, "install.sh"], "{sums}");
    let status = Command::new("sha256sum")
        .args(["-c", "--strict", "--quiet", "SHA256SUMS"])
        .current_dir(dist())
        .status()
        .unwrap();
    assert!(status.success(), "sha256sum -c disagrees with SHA256SUMS");
}

#[test]
fn installs_from_a_verified_archive_and_the_tools_run_and_a_second_run_changes_nothing() {
    let target = tempfile::tempdir().unwrap();
    let prefix = target.path().join("bin");
    let share = target.path().join("share");
    let archive = dist().join(ARCHIVE);
    let out = install(&[
        "--prefix",
        path(&prefix),
        "--share",
        path(&share),
        path(&archive),
    ]);
    out.success();
    assert_eq!(out.stdout, "", "install.sh writes nothing on stdout{out:?}");
    assert!(out.stderr.contains("verified"), "{out:?}");

    // One binary, imgpipe, as built; every tool a link to it, never a copy.
    assert_eq!(
        std::fs::read(prefix.join("imgpipe")).unwrap(),
        std::fs::read(bin_dir().join("imgpipe")).unwrap(),
        "imgpipe installed is not imgpipe built"
    );
    for name in ["ecr-login", "img-tag"] {
        let installed = prefix.join(name);
        assert_eq!(
            std::fs::read_link(&installed).unwrap(),
            PathBuf::from("imgpipe")
        );
        let out = program(&installed).args(["--version"]).run();
        out.success();
        assert!(out.stdout.starts_with(name), "{out:?}");
    }
    let helper = prefix.join("docker-credential-ecr-login");
    assert_eq!(
        std::fs::read_link(&helper).unwrap(),
        PathBuf::from("imgpipe")
    );
    let out = program(&helper).args(["version"]).run();
    out.success();
    assert!(
        out.stdout.starts_with("docker-credential-ecr-login"),
        "{out:?}"
    );
    let man = std::fs::read_to_string(share.join("man/man1/ecr-login.1")).unwrap();
    assert!(man.contains(".SH \"EXIT STATUS\""), "{man}");
    let completion =
        std::fs::read_to_string(share.join("bash-completion/completions/img-tag")).unwrap();
    assert!(completion.contains("--field"), "{completion}");

    // Again, from a file:// URL: nothing to do, nothing changed.
    let url = format!("file://{}", archive.display());
    let out = install(&["--prefix", path(&prefix), "--share", path(&share), &url]);
    out.success();
    assert!(out.stderr.contains(" 0 file(s) installed"), "{out:?}");
    program(&prefix.join("img-tag"))
        .args(["--version"])
        .run()
        .success();
}

#[test]
fn a_tampered_archive_is_refused_and_nothing_is_installed() {
    let bad = tampered();
    let target = tempfile::tempdir().unwrap();
    let prefix = target.path().join("bin");
    let archive = bad.path().join(ARCHIVE);
    install(&["--prefix", path(&prefix), path(&archive)])
        .fails(65, &["checksum mismatch", ARCHIVE, "nothing was installed"]);
    assert!(!prefix.exists(), "the prefix was created");
}

#[test]
fn a_pinned_checksum_is_enforced_and_an_unlisted_archive_refused() {
    let target = tempfile::tempdir().unwrap();
    let prefix = target.path().join("bin");
    let archive = dist().join(ARCHIVE);
    let wrong = "0".repeat(64);
    install(&[
        "--prefix",
        path(&prefix),
        "--sha256",
        &wrong,
        path(&archive),
    ])
    .fails(65, &["checksum mismatch", &wrong]);
    assert!(!prefix.exists(), "the prefix was created");

    let empty = tempfile::tempdir().unwrap();
    let sums = empty.path().join("SHA256SUMS");
    std::fs::write(&sums, "").unwrap();
    install(&[
        "--prefix",
        path(&prefix),
        "--sums",
        path(&sums),
        path(&archive),
    ])
    .fails(65, &["no checksum for", ARCHIVE]);
    assert!(!prefix.exists(), "the prefix was created");

    let sums = std::fs::read_to_string(dist().join("SHA256SUMS")).unwrap();
    let right = sums.split_whitespace().next().unwrap().to_uppercase();
    install(&[
        "--prefix",
        path(&prefix),
        "--sha256",
        &right,
        path(&archive),
    ])
    .success();
    assert!(prefix.join("img-tag").exists());
}

#[test]
fn a_missing_archive_and_bad_flags_are_reported_on_one_line() {
    let target = tempfile::tempdir().unwrap();
    let prefix = target.path().join("bin");
    let missing = target.path().join(ARCHIVE);
    install(&["--prefix", path(&prefix), path(&missing)]).fails(66, &["no such file"]);
    install(&["--sha256", "abc", path(&missing)]).fails(2, &["--sha256", "64 hexadecimal"]);
    install(&["--frobnicate"]).fails(2, &["unknown option"]);
    assert!(!prefix.exists(), "the prefix was created");
}

/// Every tool in tools/ (each builds one binary of its directory's name), but the multi-call
/// `imgpipe`, which is all of them and has no man page of its own.
fn tools() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("tools"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "imgpipe" && bin_dir().join(name).exists())
        .collect();
    names.sort();
    assert!(names.len() >= 6, "found only {names:?}");
    names
}

#[test]
fn every_tool_generates_a_man_page_with_examples_and_exit_status() {
    for name in tools() {
        let out = tool(&name).args(["--generate", "man"]).run();
        out.success();
        let page = &out.stdout;
        for wanted in [
            &format!(".TH {name} 1"),
            ".SH SYNOPSIS",
            ".SH OPTIONS",
            ".SH EXAMPLES",
            ".SH \"EXIT STATUS\"",
            "the answer is no: a gate failed",
            "\\-\\-field",
        ] {
            assert!(
                page.contains(wanted),
                "{name}'s man page lacks {wanted:?}{out:?}"
            );
        }
        assert!(!page.contains(".SH EXTRA"), "{out:?}");
        assert!(
            !page.contains("\\-\\-generate"),
            "the hidden flag shows{out:?}"
        );
    }
}

#[test]
fn every_tool_generates_shell_completions_that_know_its_flags() {
    for name in tools() {
        for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
            let out = tool(&name).args(["--generate", shell]).run();
            out.success();
            assert!(out.stdout.contains(&name), "{shell}{out:?}");
            assert!(out.stdout.contains("no-input"), "{shell}{out:?}");
        }
    }
    let bash = tool("ecr-repo").args(["--generate", "bash"]).run();
    assert!(bash.stdout.contains("--repository"), "{bash:?}");
    assert!(bash.stdout.contains("complete -F"), "{bash:?}");
}

#[test]
fn generate_is_hidden_from_help_and_checks_its_value() {
    let help = tool("img-tag").args(["--help"]).run();
    help.success();
    assert!(!help.stdout.contains("--generate"), "{help:?}");
    let out = tool("img-tag").args(["--generate", "troff"]).run();
    out.code(2);
    assert!(out.stderr.contains("man"), "{out:?}");
    assert_eq!(out.stdout, "");
}

#[test]
fn a_release_folder_gives_the_archive_for_this_machine_and_nothing_else() {
    // The folder's own SHA256SUMS picks the archive for `uname -m` (x86_64 here).
    let target = tempfile::tempdir().unwrap();
    let prefix = target.path().join("bin");
    let folder = format!("file://{}/", dist().display());
    let out = install(&["--prefix", path(&prefix), &folder]);
    out.success();
    assert!(
        out.stderr.contains(&format!("verified {ARCHIVE}")),
        "{out:?}"
    );
    program(&prefix.join("img-tag"))
        .args(["--version"])
        .run()
        .success();

    // A folder whose SHA256SUMS names no archive of the release's form for this machine (one
    // with a path in it, one for another CPU) installs nothing.
    let hostile = tempfile::tempdir().unwrap();
    std::fs::copy(dist().join(ARCHIVE), hostile.path().join(ARCHIVE)).unwrap();
    let sum = std::fs::read_to_string(dist().join("SHA256SUMS")).unwrap();
    let hex = sum.split_whitespace().next().unwrap();
    std::fs::write(
        hostile.path().join("SHA256SUMS"),
        format!(
            "{hex}  ../{ARCHIVE}\n{hex}  imgpipe-0.0.0-test-aarch64-linux.tar.gz\n{hex}  x/{ARCHIVE}\n"
        ),
    )
    .unwrap();
    let elsewhere = target.path().join("elsewhere");
    let folder = format!("{}/", hostile.path().display());
    install(&["--prefix", path(&elsewhere), &folder]).fails(
        78,
        &[
            "lists no imgpipe archive for x86_64",
            "nothing was installed",
        ],
    );
    assert!(!elsewhere.exists(), "the prefix was created");
    install(&["--sha256", hex, &folder]).fails(2, &["--sha256 pins one archive"]);
}
