//! Files outside the context stay unread, and every file a tool reads is a regular file of a
//! bounded size: the regression tests of issue 15's "Files outside the context" section.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::harness::{Outcome, tool};

/// What a hostile link would leak: a value only this test's environment holds.
const MARKER: &str = "imgpipe-secret-environment-marker";

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

fn link(target: impl AsRef<Path>, at: &Path) {
    std::os::unix::fs::symlink(target, at).unwrap();
}

/// img-build's default build on `context`, with the marker in its environment; a run that
/// hangs is killed and fails the test.
fn build(context: &Path, extra: &[&str]) -> Outcome {
    tool("img-build")
        .args(["--no-input", "--tag", "local/reads:1"])
        .args(extra)
        .args([context])
        .env("CODEBUILD_SECRET", MARKER)
        .kill_after(Duration::from_secs(60))
        .run()
}

/// img-tag's content tag over `context`, which hashes what img-build would send.
fn content_tag(context: &Path) -> Outcome {
    tool("img-tag")
        .args(["--repository", "app", "--tag", "content", "--context"])
        .args([context])
        .env("CODEBUILD_SECRET", MARKER)
        .kill_after(Duration::from_secs(60))
        .run()
}

#[test]
fn a_dockerfile_linked_out_of_the_context_is_refused_unread() {
    let context = tempfile::tempdir().unwrap();
    link("/proc/self/environ", &context.path().join("Dockerfile"));
    let out = build(context.path(), &[]);
    out.fails(
        65,
        &[
            "Dockerfile",
            "/proc/self/environ",
            "outside the build context",
        ],
    )
    .hides(MARKER);
    content_tag(context.path())
        .fails(65, &["outside the build context"])
        .hides(MARKER);

    // Named with -f, a path inside the context that links out is still a link.
    let named = context.path().join("Dockerfile");
    build(context.path(), &["-f", named.to_str().unwrap()])
        .fails(65, &["outside the build context"])
        .hides(MARKER);
}

#[test]
fn a_dockerignore_linked_out_of_the_context_or_to_a_device_is_refused() {
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let ignore = context.path().join(".dockerignore");
    link("/dev/zero", &ignore);
    build(context.path(), &[]).fails(65, &[".dockerignore", "/dev/zero", "outside"]);
    content_tag(context.path()).fails(65, &[".dockerignore", "/dev/zero", "outside"]);

    let secret = tempfile::tempdir().unwrap();
    std::fs::write(secret.path().join("ignore"), format!("{MARKER}\n")).unwrap();
    std::fs::remove_file(&ignore).unwrap();
    link(secret.path().join("ignore"), &ignore);
    build(context.path(), &["--explain-context"])
        .fails(65, &[".dockerignore", "outside"])
        .hides(MARKER);
}

#[test]
fn fifos_in_place_of_the_dockerfile_or_dockerignore_fail_at_once() {
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    mkfifo(&context.path().join(".dockerignore"));
    build(context.path(), &[]).fails(66, &[".dockerignore", "FIFO", "not a regular file"]);
    content_tag(context.path()).fails(66, &[".dockerignore", "FIFO"]);

    let other = tempfile::tempdir().unwrap();
    mkfifo(&other.path().join("Dockerfile"));
    build(other.path(), &[]).fails(66, &["Dockerfile", "FIFO"]);
    // Outside the context, named with -f: docker's rule lets it be read, but not a FIFO.
    let outside = tempfile::tempdir().unwrap();
    let fifo = outside.path().join("Dockerfile.ci");
    mkfifo(&fifo);
    std::fs::remove_file(context.path().join(".dockerignore")).unwrap();
    build(context.path(), &["-f", fifo.to_str().unwrap()]).fails(66, &["Dockerfile.ci", "FIFO"]);
    build(context.path(), &["-f", "/dev/zero"]).fails(66, &["/dev/zero", "character device"]);
}

#[test]
fn an_explicit_dockerfile_outside_the_context_is_still_read() {
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("app.txt"), "x").unwrap();
    let outside = tempfile::tempdir().unwrap();
    let file = outside.path().join("Dockerfile.ci");
    std::fs::write(&file, "FROM scratch\nCOPY app.txt /\n").unwrap();
    let out = build(
        context.path(),
        &["--explain-context", "-f", file.to_str().unwrap()],
    );
    let doc = out.success().document();
    // The default builder receives the context (app.txt) and the Dockerfile apart from it.
    assert_eq!(doc["build"]["context"]["files"], 1, "{out:?}");
    assert!(
        out.stderr
            .contains("Dockerfile.ci from outside the context"),
        "{out:?}"
    );
}

#[test]
fn policies_findings_and_configs_must_be_regular_bounded_utf8_files() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.json");
    mkfifo(&fifo);
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 5 << 20]).unwrap();
    let latin1 = dir.path().join("latin1.json");
    std::fs::write(&latin1, b"{\"rules\": \"caf\xe9\"}").unwrap();
    let lifecycle = |policy: &Path| {
        tool("lifecycle-set")
            .args(["--repository", "app", "--policy"])
            .args([policy])
            .kill_after(Duration::from_secs(30))
            .run()
    };
    lifecycle(&fifo).fails(66, &["policy file", "FIFO"]);
    lifecycle(Path::new("/dev/zero")).fails(66, &["character device"]);
    lifecycle(dir.path()).fails(66, &["a directory"]);
    lifecycle(&big).fails(65, &["larger than 4 MiB"]);
    lifecycle(&latin1).fails(65, &["not UTF-8"]);
    lifecycle(&dir.path().join("missing.json")).fails(66, &["missing.json"]);

    let gate = |flag: &str, path: &Path| {
        tool("scan-gate")
            .args(["--no-input", "--repository", "app", flag])
            .args([path])
            .kill_after(Duration::from_secs(30))
            .run()
    };
    gate("--findings", &fifo).fails(66, &["FIFO"]);
    gate("--findings", Path::new("/dev/zero")).fails(66, &["character device"]);
    gate("--findings", &latin1).fails(65, &["not UTF-8"]);
    let findings = dir.path().join("findings.json");
    std::fs::write(
        &findings,
        json!({"imageScanStatus": {"status": "COMPLETE"}, "imageScanFindings": {"findings": []}})
            .to_string(),
    )
    .unwrap();
    tool("scan-gate")
        .args(["--no-input", "--repository", "app", "--findings"])
        .args([&findings])
        .args(["--allowlist"])
        .args([&fifo])
        .kill_after(Duration::from_secs(30))
        .run()
        .fails(66, &["allowlist", "FIFO"]);

    // The Docker config is configuration: a FIFO there is exit 78, at once.
    let config = tempfile::tempdir().unwrap();
    mkfifo(&config.path().join("config.json"));
    tool("ecr-login")
        .args(["--no-input", "--region", "us-east-1"])
        .env("DOCKER_CONFIG", config.path())
        .kill_after(Duration::from_secs(30))
        .run()
        .fails(78, &["config.json", "FIFO"]);
}

#[test]
fn an_input_record_without_end_is_cut_off() {
    let mut input = b"{\"repository\": \"".to_vec();
    input.resize(input.len() + (17 << 20), b'a');
    tool("img-tag")
        .args(["--repository", "app"])
        .stdin(input)
        .kill_after(Duration::from_secs(60))
        .run()
        .fails(65, &["input record 1", "larger than 16 MiB"]);
}
