//! The multi-call binary, `imgpipe`: every tool by the name it is called by (a link), or named
//! by the first argument, and `--list`.

use crate::harness::{TOOLS, bin_dir, program};

/// A directory of links to the `imgpipe` binary, as a release lays them out.
fn links(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        std::os::unix::fs::symlink(bin_dir().join("imgpipe"), dir.path().join(name)).unwrap();
    }
    dir
}

#[test]
fn imgpipe_is_each_tool_by_its_name_or_its_first_argument() {
    let imgpipe = bin_dir().join("imgpipe");
    let listed = program(&imgpipe).args(["--list"]).run();
    listed.success();
    let mut names: Vec<&str> = listed.stdout.lines().collect();
    assert!(names.contains(&"docker-credential-ecr-login"), "{listed:?}");
    names.retain(|n| *n != "docker-credential-ecr-login");
    let mut expected = TOOLS.to_vec();
    expected.sort_unstable();
    names.sort_unstable();
    assert_eq!(names, expected, "every tool, and only the tools");

    let dir = links(&TOOLS);
    for name in TOOLS {
        // By a link's name, and as the first argument: the tool's own --version and --help.
        for run in [
            program(&dir.path().join(name)).args(["--version"]),
            program(&imgpipe).args([name, "--version"]),
        ] {
            let out = run.run();
            out.success();
            assert_eq!(
                out.stdout,
                format!("{name} {}\n", env!("CARGO_PKG_VERSION")),
                "{out:?}"
            );
        }
        let help = program(&imgpipe).args([name, "--help"]).run();
        help.success();
        assert!(help.stdout.contains(&format!("Usage: {name}")), "{help:?}");
    }
    // A tool's usage error is the tool's, named by the tool.
    program(&imgpipe)
        .args(["img-push", "--no-such-flag"])
        .run()
        .fails(2, &["img-push", "--no-such-flag"]);
}

#[test]
fn the_credential_helper_answers_by_its_link_and_a_wrong_name_is_a_usage_error() {
    let dir = links(&["docker-credential-ecr-login"]);
    // Docker's credential-helper protocol: a host that is not ECR is not found, exit 1.
    let out = program(&dir.path().join("docker-credential-ecr-login"))
        .args(["get"])
        .stdin("https://registry.example.com")
        .run();
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        "credentials not found in native keychain",
        "{out:?}"
    );

    let imgpipe = bin_dir().join("imgpipe");
    program(&imgpipe)
        .args(["img-pussh", "--help"])
        .run()
        .fails(2, &["'img-pussh' is not an imgpipe tool", "imgpipe --list"]);
    program(&imgpipe)
        .args(["bad\u{1b}[31mname"])
        .run()
        .fails(2, &["not an imgpipe tool"]);
    let bare = program(&imgpipe).run();
    bare.fails(2, &["no tool given"]);
    assert!(!bare.stderr.contains('\u{1b}'));
    // A link by a name imgpipe does not know is imgpipe itself.
    let other = links(&["imgpipe-renamed"]);
    let out = program(&other.path().join("imgpipe-renamed"))
        .args(["--version"])
        .run();
    out.success();
    assert_eq!(
        out.stdout,
        format!("imgpipe {}\n", env!("CARGO_PKG_VERSION"))
    );
}
