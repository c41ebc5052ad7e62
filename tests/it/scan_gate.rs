//! `scan-gate` against the ECR API server (moto): images registered with PutImage, scans started
//! with StartImageScan, and the findings set through the server's API for configuring results
//! (`POST /moto-api/static/ecr/scan-finding-results`).
//!
//! How that server hands out results, read from moto/ecr/models.py (moto 5.2.5), shapes these
//! tests: results posted for a repository queue up per image when that image's findings are
//! first read; each distinct request `imageId` then gets the next queued result and keeps it.
//! scan-gate always asks by the same id (the digest), so one image shows one result for good: a
//! status cannot change between polls, and a `nextToken` in a result comes back on every
//! request. So: each test uses its own repository (one result each), waiting is shown with
//! ScanNotFound (no scan until the test starts one) and with a status that never finishes, and
//! paging can only be shown as "many findings in one response" and "a token repeated".

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{aws_cli, service, tool, unique};

const FAST: [&str; 6] = [
    "--poll-interval",
    "200ms",
    "--settle",
    "0s",
    "--timeout",
    "60s",
];

fn create_repository(name: &str) {
    let (ok, text) = aws_cli(&["ecr", "create-repository", "--repository-name", name]);
    assert!(ok, "creating {name}: {text}");
}

/// Registers an image (a unique manifest) in `repository` and returns its digest.
fn put_image(repository: &str, tag: &str) -> String {
    let seed = unique("layer");
    let layer = format!("sha256:{}", sha_like(&seed));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
                   "digest": format!("sha256:{}", "c".repeat(64))},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1, "digest": layer}]
    });
    let (ok, text) = aws_cli(&[
        "ecr",
        "put-image",
        "--repository-name",
        repository,
        "--image-tag",
        tag,
        "--image-manifest",
        &manifest.to_string(),
    ]);
    assert!(ok, "put-image: {text}");
    let value: Value = serde_json::from_str(&text).unwrap();
    value["image"]["imageId"]["imageDigest"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// 64 hex digits derived from `seed` (not a real hash: only unique).
fn sha_like(seed: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for byte in seed.bytes().cycle().take(32) {
        let _ = write!(out, "{byte:02x}");
    }
    let tail = format!("{:x}", seed.len());
    format!("{}{tail}", &out[..64 - tail.len()])
}

/// Sets the DescribeImageScanFindings response for the next image of `repository` read.
fn set_result(repository: &str, status: &str, description: &str, findings: &Value) {
    let mut result = json!({
        "registryId": "123456789012",
        "repositoryName": repository,
        "imageId": {},
        "imageScanStatus": {"status": status, "description": description},
    });
    if !findings.is_null() {
        result["imageScanFindings"] = findings.clone();
    }
    post_result(&result);
}

fn post_result(result: &Value) {
    let body = json!({"results": [result], "region": "us-east-1"}).to_string();
    let url = format!(
        "{}/moto-api/static/ecr/scan-finding-results",
        service("IMGPIPE_ECR_API")
    );
    let output = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
            &url,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(body.as_bytes())?;
            child.wait_with_output()
        })
        .expect("running curl");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "201",
        "setting scan results"
    );
}

fn start_scan(repository: &str, digest: &str) {
    let image_id = format!("imageDigest={digest}");
    let (ok, text) = aws_cli(&[
        "ecr",
        "start-image-scan",
        "--repository-name",
        repository,
        "--image-id",
        &image_id,
    ]);
    assert!(ok, "start-image-scan: {text}");
}

fn basic(name: &str, severity: &str, package: &str) -> Value {
    json!({"name": name, "severity": severity, "uri": format!("https://nvd.example/{name}"),
           "attributes": [{"key": "package_name", "value": package},
                          {"key": "package_version", "value": "1.0"},
                          {"key": "CVSS3_SCORE", "value": "7.5"}]})
}

/// A repository with one image whose scan has run and returns `findings` with `status`.
fn scanned_image(prefix: &str, status: &str, findings: &Value) -> (String, String) {
    let repository = unique(prefix);
    create_repository(&repository);
    let digest = put_image(&repository, "v1");
    set_result(&repository, status, "set by the test", findings);
    start_scan(&repository, &digest);
    (repository, digest)
}

fn document(repository: &str, digest: &str) -> String {
    json!({"repository": repository, "digest": digest, "tags": ["v1"], "keep": {"me": 1}})
        .to_string()
}

/// The test cases of a JUnit file, parsed by Python's XML parser (a parser we did not write):
/// (classname, name, outcome) with outcome failure, skipped or passed.
fn junit_cases(path: &Path) -> Vec<(String, String, String)> {
    let python = Path::new(&service("IMGPIPE_AWS_CLI")).with_file_name("python3");
    let script = r#"
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "testsuites", root.tag
cases = []
for suite in root.findall("testsuite"):
    listed = suite.findall("testcase")
    assert int(suite.get("tests")) == len(listed), (suite.get("tests"), len(listed))
    assert int(suite.get("failures")) == sum(1 for c in listed if c.find("failure") is not None)
    for case in listed:
        outcome = "failure" if case.find("failure") is not None else "skipped" if case.find("skipped") is not None else "passed"
        cases.append([case.get("classname"), case.get("name"), outcome])
print(json.dumps(cases))
"#;
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .expect("running python3");
    assert!(
        output.status.success(),
        "the JUnit file is not valid XML or not consistent: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(path).unwrap_or_default()
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn basic_findings_fail_on_critical_with_junit_then_pass_within_budgets() {
    let findings = json!({
        "findingSeverityCounts": {"CRITICAL": 1, "HIGH": 3, "LOW": 1},
        "findings": [
            basic("CVE-2024-0001", "CRITICAL", "openssl"),
            basic("CVE-2024-0002", "HIGH", "zlib"),
            basic("CVE-2024-0002", "HIGH", "zlib-dev"),
            basic("CVE-2024-0003", "HIGH", "curl<&>\"'"),
            basic("CVE-2024-0004", "LOW", "tar"),
        ]
    });
    let (repository, digest) = scanned_image("gate-basic", "COMPLETE", &findings);
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("scan.xml");

    let out = tool("scan-gate")
        .args(["--fail-on", "critical", "--junit"])
        .args([&junit])
        .args(FAST)
        .stdin(document(&repository, &digest))
        .run();
    let doc = out.code(1).document();
    assert_eq!(doc["keep"], json!({"me": 1}), "other fields pass through");
    let scan = &doc["scan"];
    assert_eq!(scan["verdict"], "fail");
    assert_eq!(scan["status"], "COMPLETE");
    assert_eq!(scan["image"], format!("{repository}@{digest}"));
    assert_eq!(scan["findings_total"], 5);
    assert_eq!(scan["counts"]["after_allowlist"]["CRITICAL"], 1);
    assert_eq!(scan["counts"]["after_allowlist"]["HIGH"], 3);
    assert_eq!(scan["failing_total"], 1);
    assert_eq!(scan["failing"][0]["id"], "CVE-2024-0001");
    assert_eq!(scan["failing"][0]["package"], "openssl");
    assert_eq!(scan["reasons"], json!(["1 CRITICAL (findings), 0 allowed"]));
    assert_eq!(scan["reported_severity_counts"]["HIGH"], 3);
    assert!(out.stderr.contains("FAIL: 1 CRITICAL"), "{out:?}");

    let cases = junit_cases(&junit);
    assert_eq!(cases.len(), 5, "{cases:?}");
    assert_eq!(cases[0].1, "CVE-2024-0001 (openssl 1.0)");
    assert_eq!(cases[0].2, "failure");
    assert!(cases[1..].iter().all(|c| c.2 == "passed"), "{cases:?}");
    assert!(
        cases
            .iter()
            .any(|c| c.1 == "CVE-2024-0003 (curl<&>\"' 1.0)"),
        "escaped and read back: {cases:?}"
    );

    // (flags, exit code, HIGH counted, CRITICAL counted)
    let table: [(&[&str], i32, u64, u64); 5] = [
        (&["--budget", "critical=1,high=3"], 0, 3, 1),
        (&["--budget", "critical=1,high=2"], 1, 3, 1),
        (
            &["--budget", "critical=1,high=2", "--count", "cves"],
            0,
            2,
            1,
        ),
        (
            &["--budget", "critical=1,high=2", "--count", "packages"],
            1,
            3,
            1,
        ),
        (
            &["--fail-on", "low", "--budget", "critical=1,high=3"],
            1,
            3,
            1,
        ),
    ];
    for (flags, code, high, critical) in table {
        let out = tool("scan-gate")
            .args(flags)
            .args(FAST)
            .stdin(document(&repository, &digest))
            .run();
        let scan = out.code(code).document()["scan"].clone();
        assert_eq!(
            scan["counts"]["after_allowlist"]["HIGH"], high,
            "{flags:?}{out:?}"
        );
        assert_eq!(
            scan["counts"]["after_allowlist"]["CRITICAL"], critical,
            "{flags:?}"
        );
        assert_eq!(scan["verdict"], if code == 0 { "pass" } else { "fail" });
    }
}

#[test]
fn the_image_is_found_by_tag_when_there_is_no_digest() {
    let (repository, _digest) = scanned_image(
        "gate-tag",
        "COMPLETE",
        &json!({"findings": [basic("CVE-1", "MEDIUM", "a")]}),
    );
    let doc = tool("scan-gate")
        .args(FAST)
        .stdin(json!({"repository": repository, "tags": ["v1", "other"]}).to_string())
        .run()
        .success()
        .document();
    assert_eq!(doc["scan"]["image"], format!("{repository}:v1"));
    assert_eq!(doc["scan"]["verdict"], "pass");
}

#[test]
fn enhanced_findings_fix_score_exploit_and_suppressed() {
    let enhanced = |id: &str,
                    severity: &str,
                    status: &str,
                    fix: &str,
                    exploit: &str,
                    score: f64| {
        json!({"awsAccountId": "123456789012", "findingArn": format!("arn:aws:inspector2:us-east-1:123456789012:finding/{id}"),
               "severity": severity, "status": status, "fixAvailable": fix, "exploitAvailable": exploit,
               "score": score, "title": format!("{id} - pkg"), "type": "PACKAGE_VULNERABILITY",
               "packageVulnerabilityDetails": {"vulnerabilityId": id, "source": "NVD",
                 "vulnerablePackages": [{"name": "pkg", "version": "1.0", "fixedInVersion": if fix == "NO" { "NotAvailable" } else { "1.1" }}]}})
    };
    let findings = json!({"enhancedFindings": [
        enhanced("CVE-2024-1000", "CRITICAL", "SUPPRESSED", "YES", "YES", 9.8),
        enhanced("CVE-2024-1001", "CRITICAL", "CLOSED", "YES", "YES", 9.8),
        enhanced("CVE-2024-1002", "HIGH", "ACTIVE", "NO", "YES", 8.0),
        enhanced("CVE-2024-1003", "HIGH", "ACTIVE", "YES", "NO", 8.0),
        enhanced("CVE-2024-1004", "HIGH", "ACTIVE", "YES", "YES", 5.0),
        enhanced("CVE-2024-1005", "HIGH", "ACTIVE", "PARTIAL", "YES", 8.5),
        enhanced("CVE-2024-1006", "UNTRIAGED", "ACTIVE", "YES", "YES", 0.0),
    ]});
    let (repository, digest) = scanned_image("gate-enhanced", "ACTIVE", &findings);
    // (flags, HIGH counted, failing ids)
    let table: [(&[&str], u64, &[&str]); 5] = [
        (
            &[],
            4,
            &[
                "CVE-2024-1002",
                "CVE-2024-1003",
                "CVE-2024-1004",
                "CVE-2024-1005",
            ],
        ),
        (
            &["--ignore-unfixed"],
            3,
            &["CVE-2024-1003", "CVE-2024-1004", "CVE-2024-1005"],
        ),
        (
            &["--min-score", "7"],
            3,
            &["CVE-2024-1002", "CVE-2024-1003", "CVE-2024-1005"],
        ),
        (
            &["--exploitable-only"],
            3,
            &["CVE-2024-1002", "CVE-2024-1004", "CVE-2024-1005"],
        ),
        (
            &["--ignore-unfixed", "--min-score", "7", "--exploitable-only"],
            1,
            &["CVE-2024-1005"],
        ),
    ];
    for (flags, high, failing) in table {
        let out = tool("scan-gate")
            .args(["--fail-on", "high"])
            .args(flags)
            .args(FAST)
            .stdin(document(&repository, &digest))
            .run();
        let scan = out.code(1).document()["scan"].clone();
        assert_eq!(scan["scanner"], "ecr-enhanced");
        assert_eq!(
            scan["status"], "ACTIVE",
            "ACTIVE is an answer, not a reason to wait"
        );
        assert_eq!(
            scan["counts"]["after_allowlist"]["CRITICAL"], 0,
            "suppressed and closed never count{out:?}"
        );
        assert_eq!(
            scan["counts"]["after_allowlist"]["HIGH"], high,
            "{flags:?}{out:?}"
        );
        assert_eq!(scan["not_counted"]["suppressed"], 1);
        assert_eq!(scan["not_counted"]["closed"], 1);
        let mut ids: Vec<&str> = scan["failing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, failing, "{flags:?}");
    }
    // UNTRIAGED ranks below the rest: it fails only when named.
    let out = tool("scan-gate")
        .args(["--fail-on", "untriaged", "--budget", "high=9"])
        .args(FAST)
        .stdin(document(&repository, &digest))
        .run();
    assert_eq!(
        out.code(1).document()["scan"]["reasons"],
        json!(["1 UNTRIAGED (findings), 0 allowed"])
    );
}

#[test]
fn waits_through_scan_not_found_until_the_scan_exists() {
    let repository = unique("gate-wait");
    create_repository(&repository);
    let digest = put_image(&repository, "v1");
    set_result(
        &repository,
        "COMPLETE",
        "done",
        &json!({"findings": [basic("CVE-9", "HIGH", "x")]}),
    );
    let mut command = tool("scan-gate")
        .args(FAST)
        .args([
            "-v",
            "--no-input",
            "--repository",
            &repository,
            "--digest",
            &digest,
        ])
        .into_command();
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = command.spawn().unwrap();
    // The tool polls and sees ScanNotFound; then the scan starts.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    start_scan(&repository, &digest);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("ScanNotFound"), "it waited: {stderr}");
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["scan"]["counts"]["after_allowlist"]["HIGH"], 1);
}

#[test]
fn start_scan_starts_a_basic_scan_and_reports_a_refusal() {
    let repository = unique("gate-start");
    create_repository(&repository);
    let digest = put_image(&repository, "v1");
    set_result(&repository, "COMPLETE", "done", &json!({"findings": []}));
    let out = tool("scan-gate")
        .args(FAST)
        .args([
            "--no-input",
            "--start-scan",
            "--repository",
            &repository,
            "--digest",
            &digest,
        ])
        .run();
    out.success();
    assert!(out.stderr.contains("started a basic scan"), "{out:?}");
    // A scan exists now; ECR (and the server) refuse a second within 24 hours.
    let (ok, text) = aws_cli(&[
        "ecr",
        "start-image-scan",
        "--repository-name",
        &repository,
        "--image-id",
        &format!("imageDigest={digest}"),
    ]);
    assert!(!ok && text.contains("LimitExceededException"), "{text}");
}

#[test]
fn no_scan_and_unfinished_scans_time_out() {
    let repository = unique("gate-noscan");
    create_repository(&repository);
    let digest = put_image(&repository, "v1");
    tool("scan-gate")
        .args([
            "--no-input",
            "--repository",
            &repository,
            "--digest",
            &digest,
            "--timeout",
            "1s",
            "--poll-interval",
            "200ms",
        ])
        .run()
        .fails(
            75,
            &["gave no answer within 1s", "no scan yet", "--start-scan"],
        );

    let (repository, digest) = scanned_image("gate-pending", "IN_PROGRESS", &Value::Null);
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("scan.xml");
    tool("scan-gate")
        .args(["--timeout", "1s", "--poll-interval", "200ms", "--junit"])
        .args([&junit])
        .stdin(document(&repository, &digest))
        .run()
        .fails(75, &["last: IN_PROGRESS", "raise --timeout"]);
    let cases = junit_cases(&junit);
    assert_eq!(
        cases,
        [(
            format!("{repository}@{digest}"),
            "scan".to_owned(),
            "failure".to_owned()
        )]
    );
}

#[test]
fn every_status_without_a_verdict_fails_closed() {
    for status in [
        "FAILED",
        "UNSUPPORTED_IMAGE",
        "LIMIT_EXCEEDED",
        "SCAN_ELIGIBILITY_EXPIRED",
        "FINDINGS_UNAVAILABLE",
        "IMAGE_ARCHIVED",
        "SOME_FUTURE_STATUS",
    ] {
        let (repository, digest) = scanned_image("gate-status", status, &Value::Null);
        let out = tool("scan-gate")
            .args(FAST)
            .stdin(document(&repository, &digest))
            .run();
        out.fails(
            3,
            &[&format!("ended {status}: set by the test"), &repository],
        );
    }
}

#[test]
fn many_findings_are_all_read_and_a_repeated_page_token_is_refused() {
    let many: Vec<Value> = (0..2500)
        .map(|i| {
            basic(
                &format!("CVE-2024-{i:05}"),
                if i % 100 == 0 { "CRITICAL" } else { "MEDIUM" },
                "pkg",
            )
        })
        .collect();
    let (repository, digest) = scanned_image("gate-many", "COMPLETE", &json!({"findings": many}));
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("scan.xml");
    let out = tool("scan-gate")
        .args(["--junit"])
        .args([&junit])
        .args(FAST)
        .stdin(document(&repository, &digest))
        .run();
    let scan = out.code(1).document()["scan"].clone();
    assert_eq!(scan["findings_total"], 2500);
    assert_eq!(scan["counts"]["after_allowlist"]["CRITICAL"], 25);
    assert_eq!(scan["failing_total"], 25);
    let cases = junit_cases(&junit);
    assert_eq!(cases.len(), 500, "CodeBuild's limit");
    assert!(
        cases[..25].iter().all(|c| c.2 == "failure"),
        "failures first"
    );
    assert_eq!(cases[499].1, "more findings");

    // The server returns a result's nextToken on every request: a real ECR never repeats one.
    let repository = unique("gate-token");
    create_repository(&repository);
    let digest = put_image(&repository, "v1");
    post_result(
        &json!({"repositoryName": repository, "imageId": {}, "nextToken": "page-2",
        "imageScanStatus": {"status": "COMPLETE"}, "imageScanFindings": {"findings": [basic("CVE-1", "LOW", "a")]}}),
    );
    start_scan(&repository, &digest);
    tool("scan-gate")
        .args(FAST)
        .stdin(document(&repository, &digest))
        .run()
        .fails(69, &["same page token twice"]);
}

fn write(dir: &Path, name: &str, value: &Value) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path
}

#[test]
fn allowlist_expiry_unused_entries_and_strict_mode_offline() {
    let dir = tempfile::tempdir().unwrap();
    let saved = write(
        dir.path(),
        "findings.json",
        &json!({
            "imageScanStatus": {"status": "COMPLETE", "description": "ok"},
            "imageScanFindings": {"findings": [
                basic("CVE-2024-0001", "CRITICAL", "openssl"),
                basic("CVE-2024-0002", "CRITICAL", "zlib"),
                basic("CVE-2024-0003", "HIGH", "curl"),
            ]}
        }),
    );
    let allowlist = write(
        dir.path(),
        "allow.json",
        &json!({"entries": [
            {"id": "CVE-2024-0001", "reason": "not reachable", "expires": "2999-12-31"},
            {"id": "CVE-2024-0002", "reason": "was waiting for a fix", "expires": "2000-01-01"},
            {"id": "CVE-2024-0002", "reason": "other repo", "expires": "2999-12-31", "repository": "someone-else"},
            {"id": "CVE-2024-0404", "reason": "gone", "expires": "2999-12-31"},
        ]}),
    );
    let base = |extra: &[&str]| {
        tool("scan-gate")
            .args(["--no-input", "--repository", "my-app", "--findings"])
            .args([&saved])
            .args(["--allowlist"])
            .args([&allowlist])
            .args(extra)
            .run()
    };
    let out = base(&["--budget", "critical=1"]);
    let scan = out.code(0).document()["scan"].clone();
    assert_eq!(scan["source"], "file");
    assert_eq!(scan["counts"]["before_allowlist"]["CRITICAL"], 2);
    assert_eq!(scan["counts"]["after_allowlist"]["CRITICAL"], 1);
    assert_eq!(scan["allowlist"]["applied"][0]["id"], "CVE-2024-0001");
    assert_eq!(scan["allowlist"]["expired"][0]["findings"], 1);
    let unused: Vec<&str> = scan["allowlist"]["unused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(unused, ["other repo", "gone"]);
    assert!(out.stderr.contains("expired on 2000-01-01"), "{out:?}");
    assert!(
        out.stderr
            .contains("allowlist entry 4 (CVE-2024-0404) matched no finding"),
        "{out:?}"
    );

    let out = base(&["--budget", "critical=1", "--strict-allowlist"]);
    let scan = out.code(1).document()["scan"].clone();
    assert_eq!(scan["reasons"].as_array().unwrap().len(), 2, "{out:?}");
    assert!(
        scan["reasons"][1]
            .as_str()
            .unwrap()
            .contains("CVE-2024-0404")
    );

    let bad = write(
        dir.path(),
        "bad.json",
        &json!([{"id": "CVE-1", "reason": "r", "expiry": "2030-01-01"}]),
    );
    tool("scan-gate")
        .args(["--no-input", "--findings"])
        .args([&saved])
        .args(["--allowlist"])
        .args([&bad])
        .run()
        .fails(65, &["allowlist", "unknown field `expiry`"]);
}

#[test]
fn offline_reports_from_trivy_grype_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let trivy = write(
        dir.path(),
        "trivy.json",
        &json!({"SchemaVersion": 2, "ArtifactName": "app:1", "Results": [
        {"Target": "app:1 (debian 12.5)", "Vulnerabilities": [
            {"VulnerabilityID": "CVE-2024-1", "PkgName": "libc6", "InstalledVersion": "2.36", "Severity": "CRITICAL", "Status": "affected"},
            {"VulnerabilityID": "CVE-2024-2", "PkgName": "bash", "InstalledVersion": "5.2", "FixedVersion": "5.2.1", "Severity": "HIGH", "Status": "fixed"}
        ]}]}),
    );
    let out = tool("scan-gate")
        .args(["--no-input", "--fail-on", "high", "--findings"])
        .args([&trivy])
        .run();
    assert_eq!(out.code(1).document()["scan"]["failing_total"], 2);
    let out = tool("scan-gate")
        .args([
            "--no-input",
            "--fail-on",
            "high",
            "--ignore-unfixed",
            "--findings",
        ])
        .args([&trivy])
        .run();
    let scan = out.code(1).document()["scan"].clone();
    assert_eq!(scan["scanner"], "trivy");
    assert_eq!(scan["failing"][0]["id"], "CVE-2024-2");

    let grype = json!({"matches": [{"vulnerability": {"id": "GHSA-xxxx", "severity": "Medium", "fix": {"state": "fixed", "versions": ["2.0"]}},
                                     "artifact": {"name": "lodash", "version": "1.0"}}]});
    let out = tool("scan-gate")
        .args(["--fail-on", "critical", "--findings", "-"])
        .stdin(grype.to_string())
        .run();
    let scan = out.success().document()["scan"].clone();
    assert_eq!(scan["scanner"], "grype");
    assert_eq!(scan["counts"]["after_allowlist"]["MEDIUM"], 1);

    tool("scan-gate")
        .args(["--findings", "-"])
        .stdin("{\"foo\": 1}")
        .run()
        .fails(65, &["findings stdin", "neither"]);
    let failed = write(
        dir.path(),
        "failed.json",
        &json!({"imageScanStatus": {"status": "FAILED", "description": "boom"}}),
    );
    tool("scan-gate")
        .args(["--no-input", "--findings"])
        .args([&failed])
        .run()
        .fails(3, &["FAILED", "boom"]);
}

#[test]
fn bad_input_is_refused_before_any_wait() {
    tool("scan-gate")
        .args(["--no-input"])
        .run()
        .fails(65, &["no repository named"]);
    tool("scan-gate")
        .args(["--no-input", "--repository", "app"])
        .run()
        .fails(65, &["no image named", "--digest"]);
    tool("scan-gate")
        .stdin(json!({"repository": "app", "digest": "sha256:abc"}).to_string())
        .run()
        .fails(65, &["is not a digest"]);
    let repository = unique("gate-missing");
    create_repository(&repository);
    tool("scan-gate")
        .args(["--no-input", "--repository", &repository, "--tag", "nope"])
        .run()
        .fails(65, &["is not in ECR", "push it first"]);
}

#[test]
fn an_image_index_is_gated_platform_by_platform() {
    let repository = unique("gate-index");
    create_repository(&repository);
    let amd64 = put_image(&repository, "amd64");
    let arm64 = put_image(&repository, "arm64");
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 1, "digest": amd64,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 1, "digest": arm64,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ]
    });
    let (ok, text) = aws_cli(&[
        "ecr",
        "put-image",
        "--repository-name",
        &repository,
        "--image-tag",
        "multi",
        "--image-manifest",
        &index.to_string(),
    ]);
    assert!(ok, "put-image of the index: {text}");
    let value: Value = serde_json::from_str(&text).unwrap();
    let index_digest = value["image"]["imageId"]["imageDigest"]
        .as_str()
        .unwrap()
        .to_owned();
    // Each platform image gets its own result, addressed by its digest.
    for (digest, description, finding) in [
        (&amd64, "clean", basic("CVE-2024-0100", "LOW", "tar")),
        (
            &arm64,
            "one critical",
            basic("CVE-2024-0101", "CRITICAL", "openssl"),
        ),
    ] {
        post_result(&json!({
            "registryId": "123456789012",
            "repositoryName": repository,
            "imageId": {"imageDigest": digest},
            "imageScanStatus": {"status": "COMPLETE", "description": description},
            "imageScanFindings": {"findings": [finding]},
        }));
    }
    start_scan(&repository, &amd64);
    start_scan(&repository, &arm64);

    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("scan.xml");
    let out = tool("scan-gate")
        .args(["--fail-on", "critical", "--junit"])
        .args([&junit])
        .args(FAST)
        .stdin(document(&repository, &index_digest))
        .run();
    let doc = out.code(1).document();
    let scan = &doc["scan"];
    assert_eq!(scan["multi_platform"], true);
    assert_eq!(scan["verdict"], "fail");
    let platforms = scan["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 2);
    assert_eq!(platforms[0]["platform"], "linux/amd64");
    assert_eq!(platforms[0]["digest"], amd64.as_str());
    assert_eq!(platforms[0]["verdict"], "pass");
    assert_eq!(platforms[1]["platform"], "linux/arm64/v8");
    assert_eq!(platforms[1]["verdict"], "fail");
    assert_eq!(platforms[1]["failing"][0]["id"], "CVE-2024-0101");
    assert!(
        out.stderr
            .contains("multi-platform image: gating 2 platform images"),
        "{out:?}"
    );
    let suites: Vec<String> = junit_cases(&junit)
        .into_iter()
        .map(|(class, _, _)| class)
        .collect();
    assert!(
        suites.iter().any(|c| c.contains(&amd64)) && suites.iter().any(|c| c.contains(&arm64)),
        "{suites:?}"
    );
}
