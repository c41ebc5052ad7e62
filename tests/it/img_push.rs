//! `img-push` against the real Docker Engine and registries: every tag at the reported digest as
//! the registry's own API (read with curl, a client we did not write) shows it; credentials stored
//! by `ecr-login`; the base64url `X-Registry-Auth` regression; a registry stopped mid-push;
//! already-present and immutable tags.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{
    Refs, build_small, docker, in_terminal, registry_manifest, service, tool, unique,
};

fn image_id(image: &str) -> String {
    let (ok, text) = docker(&["image", "inspect", "--format", "{{.Id}}", image]);
    assert!(ok, "docker image inspect {image}: {text}");
    text.trim().to_owned()
}

/// What the registry says a tag points at: the Docker-Content-Digest of a HEAD with every
/// manifest type accepted, read by curl.
fn registry_digest(
    host: &str,
    repository: &str,
    tag: &str,
    user: Option<(&str, &str)>,
) -> Option<String> {
    registry_manifest(host, repository, tag, user).map(|served| served.digest)
}

fn input(registry: &str, repository: &str, tags: &[&str], image_id: &str) -> String {
    json!({
        "registry": registry,
        "repository": repository,
        "tags": tags,
        "image_id": image_id,
    })
    .to_string()
}

#[test]
fn pushes_every_tag_to_the_plain_registry_and_writes_the_artifacts_after() {
    let registry = service("IMGPIPE_REGISTRY");
    let repository = unique("push-plain");
    let name = format!("{registry}/{repository}");
    let _refs = Refs(vec![format!("{name}:1.0"), format!("{name}:latest")]);
    let base = image_id(&service("IMGPIPE_BASE_IMAGE"));
    let dir = tempfile::tempdir().unwrap();
    let uri_file = dir.path().join("image_uri.txt");
    let definitions = dir.path().join("imagedefinitions.json");
    let detail = dir.path().join("imageDetail.json");

    let out = tool("img-push")
        .args(["--image-uri-file", &uri_file.to_string_lossy()])
        .args([
            "--imagedefinitions",
            &definitions.to_string_lossy(),
            "--container",
            "web",
        ])
        .args(["--image-detail", &detail.to_string_lossy()])
        .stdin(input(&registry, &repository, &["1.0", "latest"], &base))
        .run();
    let doc = out.success().document();
    let digest = doc["digest"].as_str().unwrap().to_owned();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{out:?}"
    );
    assert_eq!(doc["image_uri"], format!("{name}:1.0"));
    assert_eq!(doc["digest_uri"], format!("{name}@{digest}"));
    assert_eq!(doc["image_id"], base.as_str());
    assert_eq!(doc["push"]["tags_pushed"], json!(["1.0", "latest"]));
    assert_eq!(doc["push"]["tags_present"], json!([]));
    let layers = doc["push"]["layers_pushed"].as_u64().unwrap()
        + doc["push"]["layers_existing"].as_u64().unwrap();
    assert!(layers >= 1, "{out:?}");
    for tag in ["1.0", "latest"] {
        assert_eq!(
            registry_digest(&registry, &repository, tag, None).as_deref(),
            Some(digest.as_str()),
            "tag {tag}{out:?}"
        );
    }
    let summary = out.stderr.lines().last().unwrap();
    assert!(
        summary.starts_with("img-push: pushed ") && summary.contains(&digest),
        "{out:?}"
    );

    assert_eq!(
        std::fs::read_to_string(&uri_file).unwrap(),
        format!("{name}:1.0\n")
    );
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&definitions).unwrap()).unwrap();
    assert_eq!(
        written,
        json!([{"name": "web", "imageUri": format!("{name}:1.0")}])
    );
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&detail).unwrap()).unwrap();
    assert_eq!(written, json!({"ImageURI": format!("{name}@{digest}")}));

    // The same image again, to tags that must not move: already present, and a success.
    let again = tool("img-push")
        .args(["--immutable"])
        .stdin(input(&registry, &repository, &["1.0", "latest"], &base))
        .run();
    let doc = again.success().document();
    assert_eq!(doc["digest"], digest.as_str());
    assert_eq!(doc["push"]["tags_pushed"], json!([]));
    assert_eq!(doc["push"]["tags_present"], json!(["1.0", "latest"]));
    assert!(again.stderr.contains("already present"), "{again:?}");
}

#[test]
fn a_different_image_to_an_immutable_tag_fails_before_upload_and_a_mutable_tag_moves() {
    let registry = service("IMGPIPE_REGISTRY");
    let repository = unique("push-immutable");
    let name = format!("{registry}/{repository}");
    let other_tag = format!("imgpipe-test/{repository}:other");
    let _refs = Refs(vec![
        format!("{name}:1.0"),
        format!("{name}:2.0"),
        other_tag.clone(),
    ]);
    let base = image_id(&service("IMGPIPE_BASE_IMAGE"));
    let first = tool("img-push")
        .stdin(input(&registry, &repository, &["1.0"], &base))
        .run();
    let before = first.success().document()["digest"]
        .as_str()
        .unwrap()
        .to_owned();

    let other = build_small(&other_tag, &repository);
    let dir = tempfile::tempdir().unwrap();
    let uri_file = dir.path().join("image_uri.txt");
    let out = tool("img-push")
        .args([
            "--immutable",
            "--image-uri-file",
            &uri_file.to_string_lossy(),
        ])
        .stdin(input(&registry, &repository, &["2.0", "1.0"], &other))
        .run();
    out.fails(4, &["immutable", "1.0", &before, "nothing was pushed"]);
    assert_eq!(
        registry_digest(&registry, &repository, "1.0", None).as_deref(),
        Some(before.as_str())
    );
    assert_eq!(
        registry_digest(&registry, &repository, "2.0", None),
        None,
        "no tag was pushed before the conflict was found"
    );
    assert!(!uri_file.exists());

    // Without --immutable the plain registry's tag moves to the new image.
    let moved = tool("img-push")
        .stdin(input(&registry, &repository, &["1.0"], &other))
        .run();
    let doc = moved.success().document();
    let after = doc["digest"].as_str().unwrap();
    assert_ne!(after, before);
    assert_eq!(
        registry_digest(&registry, &repository, "1.0", None).as_deref(),
        Some(after)
    );
}

#[test]
fn pushes_to_the_htpasswd_registry_with_credentials_stored_by_ecr_login() {
    let registry = service("IMGPIPE_AUTH_REGISTRY");
    let user = service("IMGPIPE_AUTH_REGISTRY_USER");
    let password = service("IMGPIPE_AUTH_REGISTRY_PASSWORD");
    let repository = unique("push-auth");
    let _refs = Refs(vec![format!("{registry}/{repository}:1")]);
    let base = image_id(&service("IMGPIPE_BASE_IMAGE"));
    let config = tempfile::tempdir().unwrap();

    // Nothing stored: refused before anything is pushed, and named as such.
    tool("img-push")
        .env("DOCKER_CONFIG", config.path())
        .stdin(input(&registry, &repository, &["1"], &base))
        .run()
        .fails(77, &["requires credentials", "ecr-login"]);

    tool("ecr-login")
        .args(["--registry", &registry])
        .env("DOCKER_CONFIG", config.path())
        .run()
        .success();
    let out = tool("img-push")
        .env("DOCKER_CONFIG", config.path())
        .stdin(input(&registry, &repository, &["1"], &base))
        .run();
    let doc = out.success().hides(&password).document();
    let digest = doc["digest"].as_str().unwrap();
    assert!(
        doc["push"]["credentials"]
            .as_str()
            .unwrap()
            .starts_with("auths in "),
        "{out:?}"
    );
    assert_eq!(
        registry_digest(&registry, &repository, "1", Some((&user, &password))).as_deref(),
        Some(digest)
    );
}

#[test]
fn the_engine_gets_registry_auth_as_base64url() {
    // The special user's password makes the standard base64 of the auth JSON hold '+' and '/':
    // the daemon decodes base64url only, and drops credentials it cannot read.
    let registry = service("IMGPIPE_AUTH_REGISTRY");
    let user = service("IMGPIPE_SPECIAL_USER");
    let password = service("IMGPIPE_SPECIAL_PASSWORD");
    let repository = unique("push-b64url");
    let _refs = Refs(vec![format!("{registry}/{repository}:1")]);
    let base = image_id(&service("IMGPIPE_BASE_IMAGE"));
    let config = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    std::fs::write(
        config.path().join("config.json"),
        json!({"auths": {registry.clone(): {"auth": auth}}}).to_string(),
    )
    .unwrap();

    let out = tool("img-push")
        .env("DOCKER_CONFIG", config.path())
        .stdin(input(&registry, &repository, &["1"], &base))
        .run();
    let doc = out.success().hides(&password).hides(&auth).document();
    assert_eq!(
        registry_digest(&registry, &repository, "1", Some((&user, &password))).as_deref(),
        doc["digest"].as_str()
    );
}

/// A registry of this test's own on a free loopback port, with its own storage: stopped and
/// started at will (the shared ones are never touched). Killed when dropped.
struct OwnRegistry {
    dir: tempfile::TempDir,
    host: String,
    child: Option<Child>,
}

impl OwnRegistry {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        std::fs::write(
            dir.path().join("config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
                 delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: imgpipe-test-only\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut registry = Self {
            dir,
            host,
            child: None,
        };
        registry.spawn();
        registry
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(&self.host).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the test registry did not start: {}",
                std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Bytes stored so far, uploads in progress included.
    fn stored_bytes(&self) -> u64 {
        fn walk(path: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(path) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    Ok(_) => e.metadata().map_or(0, |m| m.len()),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.dir.path().join("data"))
    }
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A local image with one ~200 MB layer of random data, built once (and kept) per engine.
fn big_image() -> String {
    const TAG: &str = "imgpipe-test/big:200mb";
    if docker(&["image", "inspect", TAG]).0 {
        return image_id(TAG);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN head -c 200000000 /dev/urandom > /random.bin\n",
            service("IMGPIPE_BASE_IMAGE")
        ),
    )
    .unwrap();
    let (ok, text) = docker(&["build", "-q", "-t", TAG, &dir.path().to_string_lossy()]);
    assert!(ok, "building the big image: {text}");
    image_id(TAG)
}

/// Starts img-push of `image` to `registry`, waits until some megabytes have reached the
/// registry's storage, and returns the running tool.
fn start_push_and_wait_for_upload(
    registry: &OwnRegistry,
    repository: &str,
    image: &str,
    artifact: &Path,
) -> Child {
    let mut command = tool("img-push")
        .args([
            "--attempts",
            "2",
            "--image-uri-file",
            &artifact.to_string_lossy(),
        ])
        .into_command();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting img-push");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(input(&registry.host, repository, &["1"], image).as_bytes())
            .unwrap();
    }
    let before = registry.stored_bytes();
    let started = Instant::now();
    while registry.stored_bytes() < before + 5_000_000 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "img-push ended before the upload was under way"
        );
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the upload never got under way"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\nexit code: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn finish(child: Child) -> Finished {
    let output = child.wait_with_output().unwrap();
    Finished {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

#[test]
fn a_registry_stopped_mid_push_fails_cleanly_and_one_restarted_in_time_completes() {
    let image = big_image();
    let mut registry = OwnRegistry::start();
    let dir = tempfile::tempdir().unwrap();

    // Stopped for good: the daemon retries the layer, the tool retries the push, then gives up
    // with the documented code and no artifact.
    let lost = unique("push-lost");
    let _refs = Refs(vec![format!("{}/{lost}:1", registry.host)]);
    let artifact: PathBuf = dir.path().join("lost.txt");
    let child = start_push_and_wait_for_upload(&registry, &lost, &image, &artifact);
    registry.kill();
    let out = finish(child);
    assert_eq!(out.code, Some(69), "{out:?}");
    assert_eq!(out.stdout, "", "{out:?}");
    let error_line = out.stderr.lines().last().unwrap_or_default();
    assert!(error_line.starts_with("img-push: error: "), "{out:?}");
    for words in [
        "failed after 2 attempts",
        &registry.host,
        "check that the registry is running",
    ] {
        assert!(error_line.contains(words), "{words:?}{out:?}");
    }
    assert!(out.stderr.contains("retrying in"), "{out:?}");
    assert!(
        !artifact.exists(),
        "an artifact was written for a failed push"
    );

    // Stopped, then back within the daemon's retry delay: the push completes.
    registry.spawn();
    let back = unique("push-back");
    let _refs = Refs(vec![format!("{}/{back}:1", registry.host)]);
    let artifact = dir.path().join("back.txt");
    let child = start_push_and_wait_for_upload(&registry, &back, &image, &artifact);
    registry.kill();
    std::thread::sleep(Duration::from_millis(500));
    registry.spawn();
    let out = finish(child);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("the Docker daemon retries it in"),
        "the upload was not interrupted{out:?}"
    );
    let doc: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let digest = doc["digest"].as_str().unwrap();
    assert_eq!(
        registry_digest(&registry.host, &back, "1", None).as_deref(),
        Some(digest),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&artifact).unwrap(),
        format!("{}/{back}:1\n", registry.host)
    );
}

#[test]
fn on_a_terminal_layers_are_bars_redrawn_in_place_and_in_a_log_they_are_lines() {
    let registry = service("IMGPIPE_REGISTRY");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN head -c 3000000 /dev/urandom > /blob\n",
            service("IMGPIPE_BASE_IMAGE")
        ),
    )
    .unwrap();
    let local = format!("{}:latest", unique("live-push-src"));
    let (ok, text) = docker(&["build", "-q", "-t", &local, &dir.path().to_string_lossy()]);
    assert!(ok, "docker build: {text}");
    let mut refs = Refs(vec![local.clone()]);
    let mut push = |repository: &str| {
        refs.0.push(format!("{registry}/{repository}:t"));
        json!({"registry": registry, "repository": repository, "tags": ["t"], "image_id": local})
    };

    let doc = push(&unique("live-push"));
    let out = in_terminal(tool("img-push"), Some(doc.to_string().as_bytes()));
    assert_eq!(out.code, Some(0), "{out:?}");
    let screen = &out.stdout;
    assert!(
        screen.contains("\u{1b}[2K") && screen.contains("\u{1b}[1A"),
        "{out:?}"
    );
    for row in [
        "[==",
        "/ 2.86 MiB",
        "layer of 3.0 MB: pushed",
        "layers pushed ",
    ] {
        assert!(screen.contains(row), "no {row:?} on the terminal{out:?}");
    }
    assert!(screen.contains("\r\n  \"digest\": \"sha256:"), "{out:?}");

    // A terminal that cannot redraw (TERM=dumb) gets the plain lines, not nothing.
    let doc = push(&unique("live-push"));
    let out = in_terminal(
        tool("img-push").env("TERM", "dumb"),
        Some(doc.to_string().as_bytes()),
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!out.stdout.contains("\u{1b}[1A"), "{out:?}");
    assert!(out.stdout.contains("already in the registry"), "{out:?}");

    // In a CI log: lines only, no bars and no escape sequences.
    let doc = push(&unique("live-push"));
    let out = tool("img-push").stdin(doc.to_string()).run();
    out.success();
    assert!(
        !out.stderr.contains('\u{1b}') && !out.stderr.contains("[=="),
        "{out:?}"
    );
    assert!(
        out.stderr.contains(" pushed, ") && out.stderr.contains("already in the registry"),
        "{out:?}"
    );
    drop(refs);
}
