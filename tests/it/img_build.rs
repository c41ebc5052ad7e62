//! `img-build` against the real Docker Engine, checked with the docker CLI (a client we did not
//! write): the same context as `docker build` sends, multi-stage builds, labels, tags, cache and
//! failures. Base images are made locally (`IMGPIPE_BASE_IMAGE`); nothing is pulled.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::harness::{Refs, docker, in_terminal, registry_manifest, service, tool, unique};

/// Removes the named images when the test ends, whatever happens.
pub(crate) struct Images(pub(crate) Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = docker(&["image", "rm", "-f", image]);
        }
    }
}

pub(crate) fn base() -> String {
    service("IMGPIPE_BASE_IMAGE")
}

pub(crate) fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Lists /ctx in an image: name, raw mode, link count, size, link target; then content hashes.
pub(crate) fn listing(image: &str) -> (String, String, String) {
    let script = "cd /ctx && find . -exec stat -c '%n|%f|%h|%s|%N' {} + | sort; echo ====; \
                  find . -type f ! -name .dockerignore -exec sha256sum {} + | sort; echo ====; \
                  cat .dockerignore 2>/dev/null || echo '(no .dockerignore)'";
    let (ok, text) = docker(&["run", "--rm", image, "sh", "-c", script]);
    assert!(ok, "listing {image}: {text}");
    let mut kept = String::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with("WARNING: IPv4 forwarding"))
    {
        kept.push_str(line);
        kept.push('\n');
    }
    let text = kept;
    let mut parts = text.split("====\n");
    let files = parts.next().unwrap_or_default().to_owned();
    let sums = parts.next().unwrap_or_default().to_owned();
    // The injected Dockerfile's name is random in the CLI (a hash here): compare its shape.
    let ignore = parts
        .next()
        .unwrap_or_default()
        .split('\n')
        .map(|l| {
            if l.starts_with(".dockerfile.") && l.len() == ".dockerfile.".len() + 20 {
                ".dockerfile.<20 hex>"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    // The size of .dockerignore changes with nothing but that name's length, which is fixed.
    (files, sums, ignore)
}

#[test]
fn context_matches_the_docker_cli() {
    let outer = tempfile::tempdir().unwrap();
    let ctx = outer.path().join("ctx");
    write(
        &ctx.join(".dockerignore"),
        "# anchored names, exceptions, ** and an excluded parent with a re-included child\n\
         *.log\n\
         !keep.log\n\
         docs\n\
         !docs/keep.md\n\
         **/cache\n\
         /secret\n\
         build/**\n\
         !build/out/app.bin\n\
         node_modules\n\
         **/*.tmp\n\
         !important.tmp\n\
         tests/\n\
         !**/fixture.txt\n\
         s?c/*.bak\n\
         [ab]x.txt\n",
    );
    for (path, text) in [
        ("a.log", "a"),
        ("keep.log", "keep"),
        ("docs/keep.md", "kept"),
        ("docs/drop.md", "dropped"),
        ("src/main.rs", "fn main() {}\n"),
        ("src/b.log", "not anchored"),
        ("src/cache/blob", "cache"),
        ("src/deep/cache/x", "deep cache"),
        ("src/secret", "not anchored either"),
        ("src/old.bak", "bak"),
        ("secret", "s"),
        ("build/out/app.bin", "binary"),
        ("build/out/other", "other"),
        ("build/tmp/x", "x"),
        ("node_modules/pkg/index.js", "js"),
        ("x.tmp", "tmp"),
        ("src/y.tmp", "tmp"),
        ("important.tmp", "important"),
        ("tests/fixture.txt", "fixture"),
        ("fixture.txt", "top fixture"),
        ("ax.txt", "ax"),
        ("cx.txt", "cx"),
        ("with space.txt", "space"),
        ("empty", ""),
    ] {
        write(&ctx.join(path), text);
    }
    chmod(&ctx.join("src/main.rs"), 0o755);
    chmod(&ctx.join("keep.log"), 0o600);
    chmod(&ctx.join("empty"), 0o4711);
    std::fs::create_dir_all(ctx.join("shared-dir")).unwrap();
    chmod(&ctx.join("shared-dir"), 0o2775);
    std::os::unix::fs::symlink("../secret", ctx.join("src/link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", ctx.join("dangling")).unwrap();
    std::os::unix::fs::symlink("src", ctx.join("linkdir")).unwrap();
    std::fs::hard_link(ctx.join("src/main.rs"), ctx.join("src/hard.rs")).unwrap();
    // The Dockerfile lies outside the context.
    let dockerfile = outer.path().join("docker/Dockerfile");
    write(&dockerfile, &format!("FROM {}\nCOPY . /ctx\n", base()));

    let cli_image = unique("imgpipe-parity-cli").to_lowercase();
    let our_image = unique("imgpipe-parity-ours").to_lowercase();
    let _cleanup = Images(vec![cli_image.clone(), our_image.clone()]);
    let (ok, text) = docker(&[
        "build",
        "-q",
        "-f",
        dockerfile.to_str().unwrap(),
        "-t",
        &cli_image,
        ctx.to_str().unwrap(),
    ]);
    assert!(ok, "docker build: {text}");
    let doc = tool("img-build")
        .args([
            "--builder",
            "classic",
            "--no-input",
            "-f",
            dockerfile.to_str().unwrap(),
            "--tag",
            &our_image,
        ])
        .arg_path(&ctx)
        .run()
        .success()
        .document();

    let (cli_files, cli_sums, cli_ignore) = listing(&cli_image);
    let (our_files, our_sums, our_ignore) = listing(&our_image);
    assert_eq!(
        our_files, cli_files,
        "file list, modes, link counts, sizes, targets"
    );
    assert_eq!(our_sums, cli_sums, "contents");
    assert_eq!(our_ignore, cli_ignore, ".dockerignore as the daemon got it");

    // The fixture really is tricky: each rule had an effect, on both sides.
    for sent in [
        "./keep.log|",
        "./docs/keep.md|",
        "./build/out/app.bin|",
        "./src/b.log|",
        "./src/secret|",
        "./important.tmp|",
        "./fixture.txt|",
        "./cx.txt|",
        "./src/link|",
        "./dangling|",
        "./linkdir|",
        "./with space.txt|",
    ] {
        assert!(cli_files.contains(sent), "{sent} missing:\n{cli_files}");
    }
    for dropped in [
        "./a.log|",
        "./docs/drop.md|",
        "./src/cache",
        "./src/deep/cache",
        "./secret|",
        "./build/out/other",
        "./build/tmp",
        "./node_modules",
        "./x.tmp",
        "./src/y.tmp",
        "./tests/fixture.txt",
        "./src/old.bak",
        "./ax.txt",
    ] {
        assert!(!cli_files.contains(dropped), "{dropped} sent:\n{cli_files}");
    }
    assert!(cli_files.contains("./src/hard.rs|81ed|2|"), "{cli_files}");
    assert!(
        cli_files.contains("'./src/link' -> '../secret'"),
        "{cli_files}"
    );
    // Mode 4711 arrives as 0711 from both clients (the daemon's COPY drops setuid).
    assert!(cli_files.contains("./empty|81c9|"), "{cli_files}");
    let context = &doc["build"]["context"];
    assert!(context["hash"].as_str().unwrap().starts_with("sha256:"));
    assert!(context["files"].as_u64().unwrap() >= 12, "{doc}");

    // The same tree hashes the same, even after its times change.
    std::fs::File::options()
        .write(true)
        .open(ctx.join("keep.log"))
        .unwrap()
        .set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    let again = tool("img-build")
        .args([
            "--builder",
            "classic",
            "--no-input",
            "-f",
            dockerfile.to_str().unwrap(),
            "--tag",
            &our_image,
        ])
        .arg_path(&ctx)
        .run()
        .success()
        .document();
    assert_eq!(again["build"]["context"]["hash"], context["hash"]);
}

trait ArgPath {
    fn arg_path(self, path: &Path) -> Self;
}

impl ArgPath for crate::harness::Run {
    fn arg_path(self, path: &Path) -> Self {
        self.args([path.to_str().unwrap()])
    }
}

#[test]
fn multi_stage_target_args_labels_and_every_tag() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("Dockerfile"),
        &format!(
            "FROM {} AS base\nARG A=unset\nARG B=unset\nARG C=default-c\n\
             RUN echo \"$A $B $C\" > /args\n\
             FROM base AS tools\nRUN echo tools > /stage\n\
             FROM base AS final\nRUN echo final > /stage\n",
            base()
        ),
    );
    let registry = service("IMGPIPE_REGISTRY");
    let repository = unique("imgpipe-multi").to_lowercase();
    let refs: Vec<String> = ["1.0", "latest", "abc1234"]
        .iter()
        .map(|t| format!("{registry}/{repository}:{t}"))
        .collect();
    let extra = format!("{repository}-extra:dev");
    let mut all = refs.clone();
    all.push(extra.clone());
    let _cleanup = Images(all.clone());
    let input = serde_json::json!({
        "registry": registry,
        "repository": repository,
        "tags": ["1.0", "latest", "abc1234"],
        "labels": {"org.opencontainers.image.revision": "abc1234", "org.opencontainers.image.version": "1.0"},
    });
    let doc = tool("img-build")
        .args([
            "--builder",
            "classic",
            "--target",
            "tools",
            "--build-arg",
            "A=from-flag",
            "--build-arg",
            "B",
            "--build-arg",
            "C",
            "--label",
            "team=platform",
            "--tag",
            &extra,
        ])
        .arg_path(dir.path())
        .env("B", "from-env")
        .stdin(input.to_string())
        .run()
        .success()
        .document();
    assert_eq!(doc["build"]["references"], serde_json::json!(all));
    assert_eq!(doc["build"]["target"], "tools");
    let id = doc["image_id"].as_str().unwrap();
    assert!(id.starts_with("sha256:"));

    let (ok, text) = docker(&[
        "image",
        "inspect",
        id,
        "--format",
        "{{json .Config.Labels}}|{{json .RepoTags}}",
    ]);
    assert!(ok, "{text}");
    let (labels, tags) = text.trim().split_once('|').unwrap();
    let labels: serde_json::Value = serde_json::from_str(labels).unwrap();
    assert_eq!(labels["org.opencontainers.image.revision"], "abc1234");
    assert_eq!(labels["org.opencontainers.image.version"], "1.0");
    assert_eq!(labels["team"], "platform");
    let tags: Vec<String> = serde_json::from_str(tags).unwrap();
    for reference in &all {
        assert!(
            tags.contains(reference),
            "{reference} not applied: {tags:?}"
        );
    }
    let (ok, text) = docker(&["run", "--rm", &refs[0], "cat", "/args", "/stage"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("from-flag from-env default-c\ntools\n"),
        "args or stage wrong: {text}"
    );
}

#[test]
fn a_failing_run_step_reports_the_step_and_exits_65() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("Dockerfile"),
        &format!(
            "FROM {}\nRUN echo fine\nRUN echo about-to-fail-output && exit 3\nRUN echo never\n",
            base()
        ),
    );
    let out = tool("img-build")
        .args(["--no-input", "--builder", "classic"])
        .arg_path(dir.path())
        .run();
    out.code(65);
    assert_eq!(out.stdout, "", "{out:?}");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("error: Step 3/4 : RUN echo about-to-fail-output && exit 3 failed")
            && last.contains("non-zero code: 3"),
        "{out:?}"
    );
    assert!(out.stderr.contains("| about-to-fail-output"), "{out:?}");
    assert!(!out.stderr.contains("Step 4/4"), "{out:?}");
}

#[test]
fn cache_from_the_registry_after_local_images_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let marker = unique("cache-marker");
    write(
        &dir.path().join("Dockerfile"),
        &format!(
            "FROM {}\nRUN echo {marker} > /one\nRUN echo two > /two\nCOPY app.txt /app.txt\n",
            base()
        ),
    );
    write(&dir.path().join("app.txt"), "app");
    let registry = service("IMGPIPE_REGISTRY");
    let image = format!(
        "{registry}/{}:cache",
        unique("imgpipe-cache").to_lowercase()
    );
    let missing = format!(
        "{registry}/{}:absent",
        unique("imgpipe-none").to_lowercase()
    );
    let _cleanup = Images(vec![image.clone()]);

    let first = tool("img-build")
        .args(["--no-input", "--builder", "classic", "--tag", &image])
        .arg_path(dir.path())
        .run()
        .success()
        .document();
    assert_eq!(first["build"]["cached_steps"], 0, "{first}");
    let (ok, text) = docker(&["push", &image]);
    assert!(ok, "{text}");
    let (ok, text) = docker(&["image", "rm", &image]);
    assert!(ok, "{text}");
    let (ok, _) = docker(&["image", "inspect", &image]);
    assert!(!ok, "the image is still local");

    let out = tool("img-build")
        .args([
            "--builder",
            "classic",
            "--no-input",
            "--tag",
            &image,
            "--cache-from",
            &image,
            "--cache-from",
            &missing,
        ])
        .arg_path(dir.path())
        .run();
    out.success();
    let second = out.document();
    assert!(
        out.stderr
            .contains(&format!("cache image {missing} is not available")),
        "{out:?}"
    );
    assert_eq!(second["build"]["cached_steps"], 3, "{out:?}");
    assert_eq!(second["image_id"], first["image_id"], "{out:?}");
}

#[test]
fn explain_context_says_what_is_sent_and_why_not() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("Dockerfile"), "FROM scratch\n");
    write(&dir.path().join(".dockerignore"), "docs\n!docs/keep.md\n");
    write(&dir.path().join("docs/keep.md"), "k");
    write(&dir.path().join("docs/drop.md"), "d");
    write(&dir.path().join("node_modules/x.js"), &"x".repeat(5000));
    let out = tool("img-build")
        .args([
            "--no-input",
            "--explain-context",
            "--why",
            "docs/drop.md",
            "--why",
            "docs/keep.md",
        ])
        .arg_path(dir.path())
        .run();
    let doc = out.success().document();
    assert_eq!(doc["build"]["context"]["files"], 4, "{out:?}");
    assert!(doc.get("image_id").is_none());
    for words in [
        "docs/drop.md: excluded by \"docs\" (.dockerignore:1)",
        "docs/keep.md: sent by \"!docs/keep.md\" (.dockerignore:2)",
        "node_modules is in the context",
        "5.0 kB  node_modules/x.js",
    ] {
        assert!(out.stderr.contains(words), "{words}{out:?}");
    }
}

#[test]
fn no_daemon_is_one_line_naming_the_socket_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("Dockerfile"), "FROM scratch\n");
    tool("img-build")
        .args(["--no-input"])
        .arg_path(dir.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .run()
        .fails(69, &["/nonexistent/docker.sock", "privileged"]);
}

/// `img-build` with BuildKit, on a context of `files` (name, text) with this Dockerfile.
fn context(dockerfile: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("Dockerfile"), dockerfile);
    for (name, text) in files {
        write(&dir.path().join(name), text);
    }
    dir
}

#[test]
fn buildkit_multi_stage_with_a_cache_mount_labels_and_tags() {
    // The cache mount's id is unique, so other builds on the shared daemon never touch it.
    let mount = unique("imgpipe-mount").to_lowercase();
    let dir = context(
        &format!(
            "FROM {base} AS build\nCOPY input.txt /input.txt\n\
             RUN --mount=type=cache,id={mount},target=/cache \
             echo run >> /cache/runs && wc -l < /cache/runs | tr -d ' ' > /seen\n\
             FROM {base} AS unused\nRUN exit 9\n\
             FROM {base} AS final\nCOPY --from=build /seen /seen\nCOPY app.txt /app.txt\n",
            base = base()
        ),
        &[("app.txt", "app"), ("input.txt", "one")],
    );
    let registry = service("IMGPIPE_REGISTRY");
    let repository = unique("imgpipe-bk").to_lowercase();
    let refs: Vec<String> = ["1.0", "latest"]
        .iter()
        .map(|t| format!("{registry}/{repository}:{t}"))
        .collect();
    let extra = format!("{repository}-extra:dev");
    let mut all = refs.clone();
    all.push(extra.clone());
    let _cleanup = Images(all.clone());
    let input = serde_json::json!({
        "registry": registry,
        "repository": repository,
        "tags": ["1.0", "latest"],
        "labels": {"org.opencontainers.image.revision": "abc1234"},
    });
    let build = |extra_args: &[&str]| {
        let out = tool("img-build")
            .args(["--builder", "buildkit", "--label", "team=platform"])
            .args(["--tag", &extra])
            .args(extra_args)
            .arg_path(dir.path())
            .stdin(input.to_string())
            .run();
        out.success();
        out
    };
    let out = build(&[]);
    let doc = out.document();
    assert_eq!(doc["build"]["builder"], "buildkit", "{out:?}");
    assert_eq!(doc["build"]["references"], serde_json::json!(all));
    // [build 1/3] and [final 1/3] are the same FROM: one step.
    assert_eq!(doc["build"]["steps"], 5, "{out:?}");
    // Plain numbered lines, no control codes, for a CI log.
    assert!(
        out.stderr.contains("[build 3/3] RUN --mount=type=cache"),
        "{out:?}"
    );
    assert!(out.stderr.contains("DONE"), "{out:?}");
    assert!(!out.stderr.contains('\u{1b}'), "{out:?}");
    assert!(
        !out.stderr.contains("RUN exit 9"),
        "an unused stage was built: {out:?}"
    );
    let id = doc["image_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sha256:"), "{doc}");

    let (ok, text) = docker(&[
        "image",
        "inspect",
        &id,
        "--format",
        "{{json .Config.Labels}}|{{json .RepoTags}}",
    ]);
    assert!(ok, "{text}");
    let (labels, tags) = text.trim().split_once('|').unwrap();
    let labels: serde_json::Value = serde_json::from_str(labels).unwrap();
    assert_eq!(labels["org.opencontainers.image.revision"], "abc1234");
    assert_eq!(labels["team"], "platform");
    let tags: Vec<String> = serde_json::from_str(tags).unwrap();
    for reference in &all {
        assert!(
            tags.contains(reference),
            "{reference} not applied: {tags:?}"
        );
    }
    let (ok, text) = docker(&["run", "--rm", &refs[0], "cat", "/seen", "/app.txt"]);
    assert!(ok, "{text}");
    assert!(text.starts_with("1\napp"), "{text}");

    // A changed input runs the step again, and it finds what it left in the cache mount.
    write(&dir.path().join("input.txt"), "two");
    let again = build(&[]).document();
    let (ok, text) = docker(&["run", "--rm", &refs[0], "cat", "/seen"]);
    assert!(ok, "{text}");
    assert_eq!(
        text.lines().next(),
        Some("2"),
        "the cache mount did not persist: {again}"
    );
}

#[test]
fn buildkit_failing_run_reports_the_step_its_output_and_exits_65() {
    let dir = context(
        &format!(
            "FROM {}\nRUN echo fine\nRUN echo about-to-fail-output && exit 3\nRUN echo never\n",
            base()
        ),
        &[],
    );
    let out = tool("img-build")
        .args(["--no-input", "--builder", "buildkit"])
        .arg_path(dir.path())
        .run();
    out.code(65);
    assert_eq!(out.stdout, "", "{out:?}");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("error: [3/4] RUN echo about-to-fail-output && exit 3 failed")
            && last.contains("exit code: 3"),
        "{out:?}"
    );
    assert!(out.stderr.contains("  | about-to-fail-output"), "{out:?}");
    assert!(!out.stderr.contains("[4/4] RUN echo never"), "{out:?}");
}

#[test]
fn auto_chooses_buildkit_unless_docker_buildkit_is_0() {
    let mount = unique("imgpipe-auto").to_lowercase();
    let dir = context(
        &format!(
            "FROM {}\nRUN --mount=type=cache,id={mount},target=/c touch /c/x && echo ok > /ok\n",
            base()
        ),
        &[],
    );
    let image = unique("imgpipe-auto").to_lowercase();
    let _cleanup = Images(vec![image.clone()]);
    let out = tool("img-build")
        .args(["--no-input", "--tag", &image])
        .arg_path(dir.path())
        .env_remove("DOCKER_BUILDKIT")
        .run();
    let doc = out.success().document();
    assert_eq!(doc["build"]["builder"], "buildkit", "{out:?}");
    assert!(out.stderr.contains("with BuildKit"), "{out:?}");

    // As with the docker CLI, DOCKER_BUILDKIT=0 asks for the classic builder, which does not
    // know RUN --mount: the build fails on that step.
    let out = tool("img-build")
        .args(["--no-input", "--tag", &image])
        .arg_path(dir.path())
        .env("DOCKER_BUILDKIT", "0")
        .run();
    out.code(65);
    assert!(out.stderr.contains("with the classic builder"), "{out:?}");
}

/// The config JSON of `host/repo:tag` as the registry holds it (plain HTTP, the local registry).
fn registry_config(reference: &str) -> String {
    let (host, rest) = reference.split_once('/').unwrap();
    let (repo, tag) = rest.rsplit_once(':').unwrap();
    let manifest = registry_manifest(host, repo, tag, None)
        .expect("the pushed image")
        .json();
    let digest = manifest["config"]["digest"].as_str().unwrap();
    let out = Command::new("curl")
        .args(["-fsS", &format!("http://{host}/v2/{repo}/blobs/{digest}")])
        .output()
        .expect("running curl");
    assert!(out.status.success(), "the config blob: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn buildkit_inline_cache_serves_cache_from_after_local_images_are_removed() {
    let marker = unique("bk-cache-marker");
    let dir = context(
        &format!(
            "FROM {}\nRUN echo {marker} > /one\nRUN echo two > /two\nCOPY app.txt /app.txt\n",
            base()
        ),
        &[("app.txt", "app")],
    );
    let registry = service("IMGPIPE_REGISTRY");
    let image = format!(
        "{registry}/{}:cache",
        unique("imgpipe-bkcache").to_lowercase()
    );
    let _cleanup = Images(vec![image.clone()]);
    let first = tool("img-build")
        .args(["--no-input", "--builder", "buildkit", "--tag", &image])
        .arg_path(dir.path())
        .run()
        .success()
        .document();
    // Only the FROM of the local base image may count as cached: the marker is new.
    assert!(
        first["build"]["cached_steps"].as_u64().unwrap() <= 1,
        "{first}"
    );
    let (ok, text) = docker(&["push", &image]);
    assert!(ok, "{text}");
    let (ok, text) = docker(&["image", "rm", &image]);
    assert!(ok, "{text}");
    // The pushed image carries BuildKit's inline cache in its config (the daemon's BuildKit
    // cache is shared with other builds here, so it is not pruned to prove the point).
    let config = registry_config(&image);
    assert!(
        config.contains("moby.buildkit.cache.v0"),
        "no inline cache in the pushed config: {config}"
    );

    let out = tool("img-build")
        .args(["--no-input", "--builder", "buildkit", "--tag", &image])
        .args(["--cache-from", &image])
        .arg_path(dir.path())
        .run();
    let second = out.success().document();
    // The two RUN steps and the COPY come from the cache; BuildKit reports the FROM of the
    // local base image as cached or not depending on what it resolved last, so it may count.
    assert_eq!(second["build"]["steps"], 4, "{out:?}");
    assert!(
        second["build"]["cached_steps"].as_u64().unwrap() >= 3,
        "the RUN and COPY steps did not come from the cache: {out:?}"
    );
    assert!(
        out.stderr
            .contains(&format!("importing cache manifest from {image}")),
        "{out:?}"
    );
}

#[test]
fn on_a_terminal_the_steps_are_redrawn_in_place_and_in_a_log_they_are_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN echo one; sleep 1; echo two\nRUN echo three\n",
            service("IMGPIPE_BASE_IMAGE")
        ),
    )
    .unwrap();
    let registry = service("IMGPIPE_REGISTRY");
    let repository = unique("live-build");
    let _refs = Refs(vec![format!("{registry}/{repository}:t")]);
    let doc = serde_json::json!({"registry": registry, "repository": repository, "tags": ["t"]});
    let context = dir.path().to_string_lossy().into_owned();

    let out = in_terminal(
        tool("img-build").args(["--no-cache", &context]),
        Some(doc.to_string().as_bytes()),
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let screen = &out.stdout;
    // Rows cleared and drawn again, the cursor moved back up over them.
    assert!(
        screen.contains("\u{1b}[2K") && screen.contains("\u{1b}[1A"),
        "{out:?}"
    );
    for row in [
        "[2/3] RUN echo one; sleep 1; echo two DONE",
        "[3/3] RUN echo three DONE",
        "building: 3 steps done",
    ] {
        assert!(screen.contains(row), "no {row:?} on the terminal{out:?}");
    }
    assert!(
        screen.contains("\r\n  \"image_id\": \"sha256:"),
        "the document is pretty on a terminal{out:?}"
    );

    // In a CI log: plain lines, each step's output on its own, no escape sequences.
    let out = tool("img-build")
        .args(["--no-cache", &context])
        .stdin(doc.to_string())
        .run();
    out.success();
    assert!(!out.stderr.contains('\u{1b}'), "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    for wanted in [
        " [2/3] RUN echo one; sleep 1; echo two",
        " one",
        " two",
        " three",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("img-build: #") && l.ends_with(wanted)),
            "no line ending {wanted:?}{out:?}"
        );
    }
}
