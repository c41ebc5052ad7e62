//! Registry-level operations against the real registry and Docker Engine: `img-push --retag`
//! copies a manifest under new tags with no layer traffic (proved from the registry's own request
//! log), and `img-build --skip-if-present` skips an unchanged context, hands the digest to
//! `img-push`, and builds again when a source file changes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Outcome, Refs, build_small, pipe, registry_manifest, service, tool, unique};

const LIST_TYPE: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The `Docker-Content-Digest` and `Content-Type` the registry answers a HEAD of a tag with,
/// read by curl (a client we did not write); `None` when there is no such tag.
fn registry_head(host: &str, repository: &str, reference: &str) -> Option<(String, String)> {
    registry_manifest(host, repository, reference, None)
        .map(|served| (served.digest, served.content_type))
}

/// The plain registry's request log (its "response completed" lines), kept by services.sh.
fn registry_log() -> PathBuf {
    Path::new(&service("IMGPIPE_STATE_DIR")).join("logs/registry.log")
}

fn log_len() -> usize {
    std::fs::read(registry_log()).map_or(0, |b| b.len())
}

/// The request lines the registry logged for `repository` since byte `from`, waiting until
/// one of them contains `until` (the log is written as requests complete).
fn requests_since(from: usize, repository: &str, until: &str) -> Vec<String> {
    let started = Instant::now();
    loop {
        let bytes = std::fs::read(registry_log()).unwrap();
        let text = String::from_utf8_lossy(&bytes[from.min(bytes.len())..]).into_owned();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains(&format!("http.request.uri=/v2/{repository}/")))
            .map(str::to_owned)
            .collect();
        if lines.iter().any(|l| l.contains(until)) || started.elapsed() > Duration::from_secs(10) {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Pushes a fresh image as `repository:tag` with img-push; returns its digest.
fn push_new(registry: &str, repository: &str, tag: &str, refs: &mut Refs) -> String {
    let reference = format!("{registry}/{repository}:{tag}");
    let id = build_small(&reference, repository);
    refs.0.push(reference);
    let out = tool("img-push")
        .args([
            "--no-input",
            "--registry",
            registry,
            "--repository",
            repository,
        ])
        .args(["--tag", tag, "--image", &id])
        .run();
    out.success();
    out.document()["digest"].as_str().unwrap().to_owned()
}

#[test]
fn retag_promotes_a_tag_by_copying_the_manifest_with_no_blob_traffic() {
    let registry = service("IMGPIPE_REGISTRY");
    let repository = unique("regops-retag");
    let mut refs = Refs(Vec::new());
    let digest = push_new(&registry, &repository, "sha-abc1234", &mut refs);
    // Nothing local is needed: the image is gone from the Engine before the retag.
    drop(refs);

    let from = log_len();
    let out = tool("img-push")
        .args(["--no-input", "--retag", "--from", "sha-abc1234"])
        .args(["--registry", &registry, "--repository", &repository])
        .args(["--tag", "prod", "--tag", "sha-abc1234"])
        .run();
    out.success();
    let doc = out.document();
    assert_eq!(doc["digest"], digest.as_str(), "{out:?}");
    assert_eq!(
        doc["digest_uri"],
        format!("{registry}/{repository}@{digest}").as_str()
    );
    assert_eq!(
        doc["image_uri"],
        format!("{registry}/{repository}:prod").as_str()
    );
    assert_eq!(doc["push"]["tags_pushed"], serde_json::json!(["prod"]));
    assert_eq!(
        doc["push"]["tags_present"],
        serde_json::json!(["sha-abc1234"])
    );
    assert_eq!(doc["push"]["retag"]["from"], "sha-abc1234");
    assert!(doc.get("image_id").is_none(), "{out:?}");
    assert!(
        out.stderr.contains("already present"),
        "the tag at the digest is reported as present{out:?}"
    );

    // The registry's API: prod resolves to the same manifest.
    let (prod, _) = registry_head(&registry, &repository, "prod").expect("prod exists");
    assert_eq!(prod, digest);

    // The registry's log: the manifest went in under prod, and no blob was read or written.
    let lines = requests_since(from, &repository, "manifests/prod");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("http.request.method=PUT") && l.contains("manifests/prod")),
        "the registry logged no PUT of manifests/prod: {lines:#?}"
    );
    let blobs: Vec<&String> = lines.iter().filter(|l| l.contains("/blobs/")).collect();
    assert!(blobs.is_empty(), "the retag touched blobs: {blobs:#?}");
    let puts = lines
        .iter()
        .filter(|l| l.contains("http.request.method=PUT"))
        .count();
    assert_eq!(
        puts, 1,
        "one PUT (prod), none for the present tag: {lines:#?}"
    );

    // Again: everything present, nothing stored.
    let from = log_len();
    let again = tool("img-push")
        .args(["--no-input", "--retag", "--from", &digest])
        .args(["--registry", &registry, "--repository", &repository])
        .args(["--tag", "prod"])
        .run();
    again.success();
    assert_eq!(
        again.document()["push"]["tags_pushed"],
        serde_json::json!([])
    );
    let lines = requests_since(from, &repository, "manifests/prod");
    assert!(
        !lines.iter().any(|l| l.contains("http.request.method=PUT")),
        "a present tag was stored again: {lines:#?}"
    );
}

#[test]
fn retag_copies_a_manifest_list_byte_for_byte() {
    let registry = service("IMGPIPE_REGISTRY");
    let repository = unique("regops-list");
    let mut refs = Refs(Vec::new());
    let child = push_new(&registry, &repository, "amd64", &mut refs);
    let (_, child_type) = registry_head(&registry, &repository, "amd64").unwrap();
    let size = registry_manifest(&registry, &repository, &child, None)
        .unwrap()
        .body
        .len();
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": LIST_TYPE,
        "manifests": [{
            "mediaType": child_type,
            "size": size,
            "digest": child,
            "platform": {"architecture": "amd64", "os": "linux"}
        }]
    })
    .to_string();
    let put = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .args([
            "-H",
            &format!("Content-Type: {LIST_TYPE}"),
            "--data-binary",
            &list,
        ])
        .arg(format!("http://{registry}/v2/{repository}/manifests/multi"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&put.stdout),
        "201",
        "PUT of the list"
    );
    let (list_digest, list_type) = registry_head(&registry, &repository, "multi").unwrap();
    assert_eq!(list_type, LIST_TYPE);

    let out = tool("img-push")
        .args(["--no-input", "--retag", "--from", "multi"])
        .args(["--registry", &registry, "--repository", &repository])
        .args(["--tag", "multi-prod"])
        .run();
    out.success();
    assert_eq!(out.document()["digest"], list_digest.as_str());
    let (digest, media_type) = registry_head(&registry, &repository, "multi-prod").unwrap();
    assert_eq!(digest, list_digest, "the same bytes give the same digest");
    assert_eq!(media_type, LIST_TYPE, "the media type is kept");
}

#[test]
fn retag_of_a_missing_source_is_one_line_and_exit_65() {
    let registry = service("IMGPIPE_REGISTRY");
    let repository = unique("regops-missing");
    let mut refs = Refs(Vec::new());
    push_new(&registry, &repository, "there", &mut refs);
    let missing_digest = format!("sha256:{}", "0".repeat(64));
    for from in ["not-there", missing_digest.as_str()] {
        tool("img-push")
            .args(["--no-input", "--retag", "--from", from])
            .args(["--registry", &registry, "--repository", &repository])
            .args(["--tag", "prod"])
            .run()
            .fails(65, &["cannot retag", from]);
    }
    // A repository the registry has never seen.
    let nowhere = unique("regops-nowhere");
    tool("img-push")
        .args(["--no-input", "--retag", "--from", "there"])
        .args(["--registry", &registry, "--repository", &nowhere])
        .args(["--tag", "prod"])
        .run()
        .fails(65, &["cannot retag", &nowhere]);
    assert!(registry_head(&registry, &repository, "prod").is_none());
}

/// `img-tag | img-build --skip-if-present --no-cache | img-push` on `dir`, with the tag rules
/// `raw:<tag>` and `content`, and the Docker Engine at `docker_host`. Returns the last
/// document (img-build's `build` passes through img-push) and img-push's outcome.
fn pipeline(
    dir: &Path,
    registry: &str,
    repository: &str,
    tag: &str,
    docker_host: &str,
) -> (Value, Outcome) {
    let context = dir.to_string_lossy().into_owned();
    let mut piped = pipe([
        tool("img-tag")
            .args(["--no-input", "--context", &context])
            .args(["--commit", &"1".repeat(40), "--branch", "main"])
            .args(["--registry", registry, "--repository", repository])
            .args(["--tag", &format!("raw:{tag}"), "--tag", "content"]),
        tool("img-build")
            .args(["--skip-if-present", "--no-cache", &context])
            .env("DOCKER_HOST", docker_host),
        tool("img-push").env("DOCKER_HOST", docker_host),
    ]);
    let doc = piped.success().document();
    (doc, piped.stages.pop().expect("img-push"))
}

#[test]
fn skip_if_present_skips_an_unchanged_context_and_builds_a_changed_one() {
    let registry = service("IMGPIPE_REGISTRY");
    let repository = unique("regops-skip");
    let dir = tempfile::tempdir().unwrap();
    // A rebuild (no cache) stamps a new time, so it would give a new digest.
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN date +%s%N > /stamp\nCOPY app.txt /app.txt\n",
            service("IMGPIPE_BASE_IMAGE")
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("app.txt"), "one\n").unwrap();
    let name = format!("{registry}/{repository}");
    let _refs = Refs(vec![
        format!("{name}:sha-1111111"),
        format!("{name}:sha-3333333"),
    ]);

    // First run: nothing there, so it builds and pushes (the content tag included).
    let docker = service("DOCKER_HOST");
    let (built, pushed) = pipeline(dir.path(), &registry, &repository, "sha-1111111", &docker);
    assert_eq!(built["build"]["skipped"], false, "{pushed:?}");
    let first = pushed.document();
    let digest = first["digest"].as_str().unwrap().to_owned();
    let content_tag = first["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|t| t.starts_with("ctx-"))
        .expect("img-tag's content tag")
        .to_owned();
    assert_eq!(
        registry_head(&registry, &repository, &content_tag)
            .unwrap()
            .0,
        digest
    );

    // Second run, same sources: no build, the digest handed over, only the new tag added. No
    // Docker Engine is needed for that: the one named here does not exist.
    let (built, pushed) = pipeline(
        dir.path(),
        &registry,
        &repository,
        "sha-2222222",
        "unix:///nonexistent/docker.sock",
    );
    assert_eq!(built["build"]["skipped"], true, "{pushed:?}");
    assert!(
        built["build"]["skip_reason"]
            .as_str()
            .unwrap()
            .contains(&content_tag)
    );
    assert!(
        built.get("image_id").is_none(),
        "nothing was built: {built}"
    );
    assert_eq!(built["digest"], digest.as_str());
    let second = pushed.document();
    assert_eq!(second["digest"], digest.as_str(), "{pushed:?}");
    assert_eq!(
        second["push"]["tags_pushed"],
        serde_json::json!(["sha-2222222"])
    );
    assert_eq!(
        second["push"]["tags_present"],
        serde_json::json!([content_tag])
    );
    assert_eq!(
        second["push"]["retag"]["reason"],
        "img-build skipped the build"
    );
    assert_eq!(
        registry_head(&registry, &repository, "sha-2222222")
            .unwrap()
            .0,
        digest
    );

    // A changed source file: built again, a new image under a new content tag.
    std::fs::write(dir.path().join("app.txt"), "two\n").unwrap();
    let (built, pushed) = pipeline(dir.path(), &registry, &repository, "sha-3333333", &docker);
    assert_eq!(built["build"]["skipped"], false, "{pushed:?}");
    assert!(built["image_id"].is_string());
    let third = pushed.document();
    assert_ne!(third["digest"], digest.as_str());
    assert!(
        !third["tags"]
            .as_array()
            .unwrap()
            .contains(&Value::from(content_tag.as_str())),
        "the changed context has another content tag: {third}"
    );
}

#[test]
fn skip_if_present_builds_with_a_warning_when_the_registry_cannot_be_asked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {}\n", service("IMGPIPE_BASE_IMAGE")),
    )
    .unwrap();
    let repository = unique("regops-down");
    // Port 9 on loopback: nothing listens.
    let reference = format!("127.0.0.1:9/{repository}:x");
    let _refs = Refs(vec![reference.clone()]);
    let input = serde_json::json!({
        "schema_version": 1,
        "references": [reference],
    })
    .to_string();
    let out = tool("img-build")
        .args(["--skip-if-present", &dir.path().to_string_lossy()])
        .stdin(input)
        .run();
    out.success();
    let doc = out.document();
    assert_eq!(doc["build"]["skipped"], false);
    assert!(doc["image_id"].is_string());
    assert!(
        out.stderr.contains("could not look for") && out.stderr.contains("building"),
        "the warning names what happened{out:?}"
    );
}
