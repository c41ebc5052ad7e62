//! Every tool, every error class it can meet: the exit code is the one the README's table gives
//! for that class, and the error is one line on stderr.

use crate::harness::{Run, TOOLS, any_digest, service, tool};
use crate::hostile::{Listener, Reply};

/// The codes of the README's exit-code table, with their meanings.
fn readme_codes() -> Vec<(i32, String)> {
    let readme = std::fs::read_to_string(crate::harness::root().join("README.md")).unwrap();
    let table = readme
        .split("## Exit codes")
        .nth(1)
        .expect("README has an Exit codes section");
    table
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let code = cells.get(1)?.parse().ok()?;
            Some((code, (*cells.get(2)?).to_owned()))
        })
        .collect()
}

/// A loopback address where nothing listens.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// One provoked error: the class, the tool run, and the words its one line must hold.
struct Case {
    class: i32,
    run: Run,
    words: &'static [&'static str],
}

fn case(class: i32, run: Run, words: &'static [&'static str]) -> Case {
    Case { class, run, words }
}

/// The arguments that take each AWS tool to its first AWS call.
const AWS_TOOLS: [(&str, &[&str]); 4] = [
    ("ecr-login", &["--no-input"]),
    ("ecr-repo", &["--repository", "app", "--no-input"]),
    (
        "scan-gate",
        &["--repository", "app", "--tag", "v1", "--no-input"],
    ),
    (
        "lifecycle-set",
        &[
            "--repository",
            "app",
            "--expire-untagged-after",
            "14",
            "--no-input",
        ],
    ),
];

/// Usage errors and bad input, for every tool.
fn usage_and_data_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for name in TOOLS {
        cases.push(case(
            2,
            tool(name).args(["--no-such-flag"]),
            &["--no-such-flag"],
        ));
        // What each tool needs besides its input document to get to reading it.
        let args: &[&str] = match name {
            "lifecycle-set" => &["--expire-untagged-after", "14"],
            _ => &[],
        };
        cases.push(case(
            65,
            tool(name).args(args).stdin("{\"repository\": "),
            &["line 1"],
        ));
    }
    for (name, flag, value) in [
        ("img-push", "--deadline", "9223372036854775807"),
        ("img-manifest", "--deadline", "9223372036854775807"),
        ("scan-gate", "--timeout", "18446744073709551615s"),
        ("ecr-login", "--min-valid", "40000d"),
        (
            "lifecycle-set",
            "--ecr-preview-timeout",
            "18446744073709551615s",
        ),
    ] {
        cases.push(case(2, tool(name).args([flag, value]), &["100 years"]));
    }
    cases
}

/// The AWS tools: an endpoint that does not answer, no region, a profile that does not exist.
fn aws_cases(closed: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for (name, args) in AWS_TOOLS {
        cases.push(case(
            69,
            tool(name).args(args).env("AWS_ENDPOINT_URL_ECR", closed),
            &[],
        ));
        cases.push(case(
            78,
            tool(name)
                .args(args)
                .env_remove("AWS_REGION")
                .env_remove("AWS_DEFAULT_REGION"),
            &["no AWS region"],
        ));
        // Environment credentials do not hide a profile that does not exist.
        cases.push(case(
            78,
            tool(name)
                .args(args)
                .args(["--profile", "no-such-profile"])
                .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
                .env("AWS_SECRET_ACCESS_KEY", "example"),
            &["profile 'no-such-profile' does not exist"],
        ));
    }
    // The same from the CI variable that names it.
    cases.push(case(
        78,
        tool("ecr-repo")
            .args(["--repository", "app", "--no-input"])
            .env("AWS_PROFILE", "no-such-profile")
            .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "example"),
        &["profile 'no-such-profile' does not exist"],
    ));
    cases
}

/// Engines and registries that do not answer, refuse or hang; a Docker config that is wrong.
/// `dir` holds the files the runs need.
fn service_and_config_cases(dir: &std::path::Path, closed: &str, hang: &Listener) -> Vec<Case> {
    let mut cases = Vec::new();
    let context = dir.join("context");
    std::fs::create_dir(&context).unwrap();
    std::fs::write(context.join("Dockerfile"), "FROM scratch\n").unwrap();
    cases.push(case(
        69,
        tool("img-build")
            .args(["--no-input", "-t", "app:1"])
            .args([&context])
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        &["no Docker daemon"],
    ));
    let registry = service("IMGPIPE_REGISTRY");
    cases.push(case(
        69,
        tool("img-push")
            .args(["--registry", &registry, "--repository", "app", "--tag", "1"])
            .args(["--image", "app:1", "--no-input"])
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        &["no Docker daemon"],
    ));
    cases.push(case(
        69,
        tool("img-manifest")
            .args([
                "--image",
                &format!(
                    "{}/app@{}",
                    closed.trim_start_matches("http://"),
                    any_digest()
                ),
                "--tag",
                "t",
            ])
            .args(["--no-input", "--attempts", "1"]),
        &["cannot reach registry"],
    ));
    let auth = service("IMGPIPE_AUTH_REGISTRY");
    let retag = [
        "--repository",
        "app",
        "--tag",
        "t",
        "--from",
        "v1",
        "--no-input",
    ];
    cases.push(case(
        77,
        tool("img-push")
            .args(["--retag", "--registry", &auth])
            .args(retag),
        &["requires credentials"],
    ));
    cases.push(case(
        77,
        tool("img-manifest").args([
            "--image",
            &format!("{auth}/app@{}", any_digest()),
            "--tag",
            "t",
            "--no-input",
        ]),
        &["requires credentials"],
    ));
    cases.push(case(
        75,
        tool("img-push")
            .args(["--retag", "--registry", &hang.addr, "--deadline", "2"])
            .args(retag),
        &[],
    ));
    let corrupt = dir.join("docker");
    std::fs::create_dir(&corrupt).unwrap();
    std::fs::write(corrupt.join("config.json"), "{not json").unwrap();
    cases.push(case(
        78,
        tool("img-push")
            .env("DOCKER_CONFIG", &corrupt)
            .args(["--retag", "--registry", &registry])
            .args(retag),
        &["cannot be parsed"],
    ));
    cases
}

/// Local files that cannot be read or written.
fn file_cases(dir: &std::path::Path) -> Vec<Case> {
    let findings = dir.join("findings.json");
    std::fs::write(
        &findings,
        r#"{"imageScanStatus": {"status": "COMPLETE"}, "imageScanFindings": {"findings": []}}"#,
    )
    .unwrap();
    vec![
        case(
            66,
            tool("lifecycle-set").args([
                "--repository",
                "app",
                "--policy",
                "/nonexistent/policy.json",
            ]),
            &["/nonexistent/policy.json"],
        ),
        case(
            66,
            tool("scan-gate").args(["--findings", "/nonexistent/findings.json", "--no-input"]),
            &["/nonexistent/findings.json"],
        ),
        case(
            66,
            tool("lifecycle-set")
                .args(["--repository", "app", "--policy"])
                .args([dir]),
            &["a directory"],
        ),
        case(
            74,
            tool("scan-gate")
                .args(["--repository", "app", "--no-input", "--quiet", "--findings"])
                .args([&findings])
                .args(["--junit", "/nonexistent/dir/report.xml"]),
            &["/nonexistent/dir/report.xml"],
        ),
    ]
}

#[test]
fn every_tool_exits_with_the_documented_code_for_each_error_class() {
    let table = readme_codes();
    let closed = format!("http://{}", closed_port());
    let hang = Listener::start(|_| Reply::Hang);
    let dir = tempfile::tempdir().unwrap();
    let mut cases = usage_and_data_cases();
    cases.extend(aws_cases(&closed));
    cases.extend(service_and_config_cases(dir.path(), &closed, &hang));
    cases.extend(file_cases(dir.path()));

    let mut provoked = std::collections::BTreeSet::new();
    for Case { class, run, words } in cases {
        assert!(
            table.iter().any(|(code, _)| *code == class),
            "the README's table has no code {class}"
        );
        let out = run.kill_after(std::time::Duration::from_secs(120)).run();
        if class == 2 {
            out.code(2);
            for word in words {
                assert!(out.stderr.contains(word), "stderr lacks {word:?}{out:?}");
            }
        } else {
            out.fails(class, words);
        }
        provoked.insert(class);
    }
    // 0 is every other test; 1, 3 and 4 are answers (a gate, a scan, a conflict) provoked by
    // the tests of scan-gate, lifecycle-set and img-push; 70 is a bug.
    for (code, _) in &table {
        let elsewhere = [0, 1, 3, 4, 70].contains(code);
        assert!(
            elsewhere || provoked.contains(code),
            "no case provokes exit {code}"
        );
    }
}

/// Runs `tool` as the unprivileged user `nobody` (the tests run as root, whom no permission
/// stops), through util-linux's `setpriv`.
fn as_nobody(tool: &str) -> Run {
    crate::harness::program(std::path::Path::new("/usr/bin/setpriv")).args([
        std::ffi::OsStr::new("--reuid=65534"),
        std::ffi::OsStr::new("--regid=65534"),
        std::ffi::OsStr::new("--clear-groups"),
        crate::harness::bin_dir().join(tool).as_os_str(),
    ])
}

#[test]
fn a_permission_error_is_66_to_read_and_74_to_write() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = dir.path().join("policy.json");
    std::fs::write(&secret, "{}").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    as_nobody("lifecycle-set")
        .args(["--repository", "app", "--policy"])
        .args([&secret])
        .run()
        .fails(66, &["policy.json", "permission denied"]);

    let findings = dir.path().join("findings.json");
    std::fs::write(
        &findings,
        r#"{"imageScanStatus": {"status": "COMPLETE"}, "imageScanFindings": {"findings": []}}"#,
    )
    .unwrap();
    std::fs::set_permissions(&findings, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The directory is root's: nobody may not create the report in it.
    as_nobody("scan-gate")
        .args(["--repository", "app", "--no-input", "--quiet", "--findings"])
        .args([&findings])
        .args(["--junit"])
        .args([dir.path().join("report.xml")])
        .run()
        .fails(74, &["report.xml", "permission denied"]);
}
