//! Other platforms on this host: arm64 steps under QEMU, from the multi-platform base that
//! `scripts/services.sh` publishes; a multi-platform build pushed to the local ECR as one list,
//! read back by the docker CLI and skopeo; and a platform the host cannot run, refused.

use serde_json::{Value, json};

use crate::ecr_hosts::{create, described, docker_as, east};
use crate::harness::{
    Outcome, Piped, Refs, aws_cli, bin_dir, docker, pipe, program, service, tool, unique,
};
use crate::img_build::{Images, write};

/// Emulation must be there: a test that needs it fails with the reason, never skips.
fn emulation() {
    let state = service("IMGPIPE_ARM64_EMULATION");
    assert_eq!(
        state, "ready",
        "arm64 emulation is not available, so this test cannot run: {state}"
    );
}

/// Builds `FROM` the multi-platform base for `platform` with img-build's default builder; a
/// `RUN` step writes the machine it ran on. Returns what a container of the image reads back,
/// run through the docker CLI for that platform, and the image's recorded architecture.
fn build_for(platform: &str, image: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("Dockerfile"),
        &format!(
            "FROM {} AS build\nRUN uname -m > /machine\nFROM {}\nCOPY --from=build /machine /machine\n",
            service("IMGPIPE_MULTI_BASE_IMAGE"),
            service("IMGPIPE_MULTI_BASE_IMAGE")
        ),
    );
    tool("img-build")
        .args(["--no-input", "--platform", platform, "--tag", image])
        .args([dir.path()])
        .run()
        .success();
    let (ok, machine) = docker(&[
        "run",
        "--rm",
        "--platform",
        platform,
        image,
        "cat",
        "/machine",
    ]);
    assert!(ok, "docker run --platform {platform}: {machine}");
    let (ok, arch) = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Os}}/{{.Architecture}}",
        image,
    ]);
    assert!(ok, "{arch}");
    // The first line is the file; the CLI may add a warning of its own after it.
    let machine = machine.lines().next().unwrap_or_default().to_owned();
    (machine, arch.trim().to_owned())
}

#[test]
fn an_arm64_step_runs_under_emulation_from_the_multi_platform_base() {
    emulation();
    let arm = unique("imgpipe-arm64").to_lowercase();
    let amd = unique("imgpipe-amd64").to_lowercase();
    let _images = Images(vec![arm.clone(), amd.clone()]);
    assert_eq!(
        build_for("linux/arm64", &arm),
        ("aarch64".to_owned(), "linux/arm64".to_owned())
    );
    // The same base and Dockerfile on the host's own platform: nothing emulated.
    assert_eq!(
        build_for("linux/amd64", &amd),
        ("x86_64".to_owned(), "linux/amd64".to_owned())
    );
}

/// A multi-stage sample whose `RUN` step records the machine it ran on, `FROM` the
/// multi-platform base; `extra` is added to the last stage (to change the build).
fn sample(dir: &std::path::Path, extra: &str) {
    let base = service("IMGPIPE_MULTI_BASE_IMAGE");
    write(
        &dir.join("Dockerfile"),
        &format!(
            "FROM {base} AS build\nRUN uname -m > /machine\nFROM {base}\nCOPY --from=build /machine /machine\n{extra}"
        ),
    );
}

/// img-build --platform linux/amd64,linux/arm64, then img-push, for `repository:v1` in the
/// local ECR; img-build's document is checked against the schema and its platforms. Returns
/// img-push's outcome.
fn build_and_push(dir: &std::path::Path, repository: &str, config: &std::path::Path) -> Outcome {
    let built = tool("img-build")
        .args(["--platform", "linux/amd64,linux/arm64"])
        .args([dir])
        .stdin(json!({"registry": east(), "repository": repository, "tags": ["v1"]}).to_string())
        .run();
    let doc = built.success().document();
    assert!(
        doc.get("image_id").is_none(),
        "no one image is the image: {doc}"
    );
    let name = format!("{}/{repository}", east());
    let listed: Vec<(&str, &str, bool)> = doc["platforms"]
        .as_array()
        .expect("img-build's platforms")
        .iter()
        .map(|p| {
            (
                p["platform"].as_str().unwrap(),
                p["reference"].as_str().unwrap(),
                p["image_id"].is_string(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("linux/amd64", format!("{name}:v1-amd64").as_str(), true),
            ("linux/arm64", format!("{name}:v1-arm64").as_str(), true)
        ],
        "{doc}"
    );
    assert_eq!(doc["build"]["platforms"][1]["emulated"], true, "{doc}");
    tool("img-push")
        .env("DOCKER_CONFIG", config)
        .args(["--image-uri-file"])
        .args([config.join("image_uri.txt")])
        .args(["--image-detail"])
        .args([config.join("imageDetail.json")])
        .stdin(doc.to_string())
        .run()
}

/// The digest and platform (`os/arch`) of each entry of a list, as a client read it.
fn entries(list: &Value) -> Vec<(String, String)> {
    list["manifests"]
        .as_array()
        .expect("a list of manifests")
        .iter()
        .map(|m| {
            (
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                ),
                m["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// How many images (tagged or not) ECR's ListImages gives the repository.
fn image_count(repository: &str) -> usize {
    let (ok, text) = aws_cli(&["ecr", "list-images", "--repository-name", repository]);
    assert!(ok, "{text}");
    let value: Value = serde_json::from_str(&text).unwrap();
    value["imageIds"].as_array().map_or(0, |ids| {
        ids.iter()
            .filter_map(|i| i["imageDigest"].as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    })
}

/// Two clients we did not write read the list at `name:v1`, the docker CLI and skopeo, with
/// ecr-login's credentials in `config`; then each child, pulled through the list by the docker
/// CLI for its platform, holds what its RUN step wrote: arm64 ran under emulation.
fn clients_read(name: &str, config: &std::path::Path, platforms: &[(String, String)]) {
    // Two clients we did not write read the list: the docker CLI and skopeo.
    tool("ecr-login")
        .env("DOCKER_CONFIG", config)
        .run()
        .success();
    let (ok, text) = docker_as(
        config,
        None,
        &["manifest", "inspect", &format!("{name}:v1")],
    );
    assert!(ok, "docker manifest inspect: {text}");
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(entries(&list), platforms, "{text}");
    let authfile = config.join("config.json");
    let skopeo = |args: &[&str]| {
        let output = std::process::Command::new("skopeo")
            .args(args)
            .arg("--authfile")
            .arg(&authfile)
            .arg(format!("docker://{name}:v1"))
            .output()
            .expect("running skopeo (scripts/services.sh up installs it)");
        assert!(output.status.success(), "skopeo {args:?}: {output:?}");
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    let raw = skopeo(&["inspect", "--raw"]);
    assert_eq!(entries(&raw), platforms, "{raw}");
    let config_arm = skopeo(&["inspect", "--config", "--override-arch", "arm64"]);
    assert_eq!(config_arm["architecture"], "arm64", "{config_arm}");

    // Each child, pulled through the list by the docker CLI for its platform, holds what its
    // RUN step wrote: arm64 ran under emulation.
    for (platform, machine) in [("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")] {
        for local in [
            format!("{name}:v1"),
            format!("{name}:v1-amd64"),
            format!("{name}:v1-arm64"),
        ] {
            let _ = docker_as(config, None, &["image", "rm", &local]);
        }
        let (ok, text) = docker_as(
            config,
            None,
            &["pull", "--platform", platform, &format!("{name}:v1")],
        );
        assert!(ok, "docker pull --platform {platform}: {text}");
        let (ok, text) = docker_as(
            config,
            None,
            &[
                "run",
                "--rm",
                "--platform",
                platform,
                &format!("{name}:v1"),
                "cat",
                "/machine",
            ],
        );
        assert!(ok, "docker run --platform {platform}: {text}");
        assert_eq!(text.lines().next(), Some(machine), "{platform}: {text}");
    }
}

#[test]
fn a_multi_platform_build_is_pushed_as_one_list_that_docker_and_skopeo_read() {
    emulation();
    let repository = unique("platforms-multi");
    create(&repository, &["--tag-mutability", "immutable"]);
    let name = format!("{}/{repository}", east());
    let _refs = Refs(vec![
        format!("{name}:v1"),
        format!("{name}:v1-amd64"),
        format!("{name}:v1-arm64"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path(), "");
    let config = tempfile::tempdir().unwrap();
    let doc = build_and_push(dir.path(), &repository, config.path())
        .success()
        .document();
    let digest = doc["digest"].as_str().unwrap().to_owned();
    let platforms: Vec<(String, String)> = doc["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["platform"].as_str().unwrap().to_owned(),
                p["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(platforms.len(), 2, "{doc}");
    assert_eq!(
        (platforms[0].0.as_str(), platforms[1].0.as_str()),
        ("linux/amd64", "linux/arm64")
    );
    assert_eq!(described(&repository, "v1", &[]), Some(digest.clone()));
    // The deployment artifacts name the list: by tag, and by its digest for blue/green.
    assert_eq!(
        std::fs::read_to_string(config.path().join("image_uri.txt")).unwrap(),
        format!("{name}:v1\n")
    );
    let detail: Value = serde_json::from_str(
        &std::fs::read_to_string(config.path().join("imageDetail.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(detail["ImageURI"], format!("{name}@{digest}"));

    clients_read(&name, config.path(), &platforms);

    // The same build again, into the immutable repository: every tag is already there.
    let count = image_count(&repository);
    let doc = build_and_push(dir.path(), &repository, config.path())
        .success()
        .document();
    assert_eq!(doc["digest"], digest.as_str(), "{doc}");
    assert_eq!(doc["push"]["tags_present"], json!(["v1"]), "{doc}");
    assert_eq!(image_count(&repository), count);

    // A changed build: refused before anything is uploaded.
    sample(dir.path(), "LABEL changed=yes\n");
    build_and_push(dir.path(), &repository, config.path())
        .fails(4, &["immutable tags", "v1-amd64", "nothing was pushed"]);
    assert_eq!(image_count(&repository), count, "nothing was uploaded");
    assert_eq!(described(&repository, "v1", &[]), Some(digest.clone()));

    // A child's tag that is also a tag of the list: refused before anything moves.
    let doc = tool("img-build")
        .args(["--platform", "linux/amd64,linux/arm64"])
        .args([dir.path()])
        .stdin(
            json!({"registry": east(), "repository": repository, "tags": ["v2", "v2-arm64"]})
                .to_string(),
        )
        .run()
        .success()
        .document();
    let _v2 = Refs(vec![format!("{name}:v2-amd64"), format!("{name}:v2-arm64")]);
    tool("img-push")
        .env("DOCKER_CONFIG", config.path())
        .stdin(doc.to_string())
        .run()
        .fails(65, &["v2-arm64", "also a tag of the list"]);
    assert_eq!(image_count(&repository), count, "nothing was uploaded");

    // img-push's document fed back in: the new build's document names only the new images,
    // so no later step pushes or retags the old list.
    let old = json!({
        "registry": east(), "repository": repository, "tags": ["v3"],
        "digest": digest, "digest_uri": format!("{name}@{digest}"),
        "platforms": [{"platform": "linux/amd64", "digest": digest, "image_id": format!("sha256:{}", "0".repeat(64))}],
    });
    let _v3 = Refs(vec![format!("{name}:v3")]);
    let single = tool("img-build")
        .args(["--platform", "linux/amd64"])
        .args([dir.path()])
        .stdin(old.to_string())
        .run()
        .success()
        .document();
    assert!(single["image_id"].is_string(), "{single}");
    assert_eq!(single["platform"], "linux/amd64", "{single}");
    for stale in ["digest", "digest_uri", "platforms"] {
        assert!(single.get(stale).is_none(), "{stale} left over: {single}");
    }
}

#[test]
fn a_platform_this_host_cannot_run_is_refused_before_any_build() {
    // A user namespace has its own binfmt_misc (Linux 6.7 and later), with nothing registered:
    // a host without QEMU, as img-build sees it.
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path(), "");
    let script = format!(
        "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || exit 90; exec \"$0\" --no-input --platform linux/amd64,linux/arm64 --tag imgpipe-never:1 {}",
        dir.path().display()
    );
    let outcome = program(std::path::Path::new("unshare"))
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .args([bin_dir().join("img-build")])
        .run();
    outcome.fails(
        78,
        &[
            "cannot build linux/arm64",
            "no binfmt_misc entry runs arm64",
            "qemu-user-static",
            "examples/buildspecs/multiarch.yml",
        ],
    );
    assert!(!outcome.stderr.contains("building"), "{}", outcome.stderr);
    let (ok, _) = docker(&["image", "inspect", "imgpipe-never:1-amd64"]);
    assert!(!ok, "nothing was built");
}

/// `img-tag --tag raw:TAG --tag content | img-build --platform linux/amd64,linux/arm64
/// --skip-if-present | img-push | scan-gate` on `dir` into the local ECR.
fn content_pipeline(
    dir: &std::path::Path,
    repository: &str,
    tag: &str,
    config: &std::path::Path,
) -> Piped {
    let context = dir.to_string_lossy().into_owned();
    pipe([
        tool("img-tag")
            .args(["--no-input", "--context", &context])
            .args(["--commit", &"1".repeat(40), "--branch", "main"])
            .args(["--registry", &east(), "--repository", repository])
            .args(["--tag", &format!("raw:{tag}"), "--tag", "content"]),
        tool("img-build").args([
            "--platform",
            "linux/amd64,linux/arm64",
            "--skip-if-present",
            &context,
        ]),
        tool("img-push").env("DOCKER_CONFIG", config),
        tool("scan-gate").args(["--fail-on", "critical"]),
    ])
}

#[test]
fn a_multi_platform_build_is_found_by_its_content_tag_retagged_and_gated_per_platform() {
    emulation();
    let repository = unique("platforms-content");
    create(&repository, &["--scan-on-push"]);
    let name = format!("{}/{repository}", east());
    let _refs = Refs(vec![
        format!("{name}:one-amd64"),
        format!("{name}:one-arm64"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path(), "");
    let config = tempfile::tempdir().unwrap();

    let first = content_pipeline(dir.path(), &repository, "one", config.path());
    let doc = first.success().document();
    assert_eq!(doc["build"]["skipped"], false, "{doc}");
    let digest = doc["digest"].as_str().unwrap().to_owned();
    assert_eq!(doc["scan"]["multi_platform"], true, "{doc}");
    let gated: Vec<&str> = doc["scan"]["platforms"]
        .as_array()
        .expect("scan-gate's platforms")
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(gated, ["linux/amd64", "linux/arm64"], "{doc}");
    let content_tag = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|t| t.starts_with("ctx-"))
        .expect("img-tag's content tag")
        .to_owned();
    assert_eq!(
        described(&repository, &content_tag, &[]),
        Some(digest.clone())
    );

    // The same sources again: the list is found by its content tag and only tagged "two".
    let second = content_pipeline(dir.path(), &repository, "two", config.path());
    let doc = second.success().document();
    assert_eq!(doc["build"]["skipped"], true, "{doc}");
    assert_eq!(doc["digest"], digest.as_str(), "{doc}");
    assert_eq!(doc["push"]["tags_pushed"], json!(["two"]), "{doc}");
    assert_eq!(doc["scan"]["multi_platform"], true, "{doc}");
    assert_eq!(described(&repository, "two", &[]), Some(digest.clone()));

    // The same sources for one platform are another build: the list is not taken for it.
    let context = dir.path().to_string_lossy().into_owned();
    let single = pipe([
        tool("img-tag")
            .args(["--no-input", "--context", &context])
            .args(["--commit", &"1".repeat(40), "--branch", "main"])
            .args(["--registry", &east(), "--repository", &repository])
            .args(["--tag", "raw:three", "--tag", "content"]),
        tool("img-build").args(["--platform", "linux/amd64", "--skip-if-present", &context]),
    ]);
    let _three = Refs(vec![
        format!("{name}:three"),
        format!("{name}:{content_tag}"),
    ]);
    let doc = single.success().document();
    assert_eq!(doc["build"]["skipped"], false, "{doc}");
    assert!(
        single
            .last()
            .stderr
            .contains("built for linux/amd64, linux/arm64"),
        "{}",
        single.last().stderr
    );
}
