//! The CodeBuild examples in `examples/buildspecs/`, run against the local services by the
//! emulator in `codebuild.rs` the way CodeBuild runs them (phases, variables, batch graphs),
//! then checked: the declared artifacts and reports.
//!
//! Locally the builds run against ECR's shape (scripts/services.sh): the ECR API server for the
//! control plane and the local ECR data plane on the account's own registry host name, which
//! registers every push with the control plane and scans on push as ECR does. The buildspecs
//! run as written, with no `REGISTRY` override and no stand-in step. The install phase's download
//! is skipped the way the buildspecs document (`IMGPIPE_URL` empty): the tools are on PATH
//! already.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::codebuild::{
    Build, Phase, check_outputs, overrides, project_variables, resolve, run, run_batch, source,
    source_of,
};
use crate::ecr_hosts::docker_as;
use crate::harness::{Refs, aws_cli, docker, root, service, tool, unique};

/// The account the ECR API server answers for (its GetAuthorizationToken names it).
pub(crate) const ACCOUNT: &str = "123456789012";

/// The examples folder.
pub(crate) fn folder() -> PathBuf {
    root().join("examples/buildspecs")
}

/// A buildspec's file name: `*.yml` or `*.yaml`.
fn is_buildspec(name: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"))
}

/// The buildspecs with a test of their own below. A buildspec added to the folder without one
/// fails [`every_file_of_the_folder_is_covered`].
const NAMED: &[&str] = &[
    "basic.yml",
    "layer-cache.yml",
    "scan-gate.yml",
    "repository-setup.yml",
    "multiarch.yml",
];

/// Runs the repository setup for `repository` (the builds push to an existing repository, as
/// ECR wants).
fn setup(repository: &str) -> Build {
    let (src, commit) = source();
    let build = run(
        "repository-setup.yml",
        src.path(),
        &commit,
        &overrides(repository),
    );
    build.succeeded();
    // Keep the source directory's files for the caller's checks.
    let kept = src.keep();
    Build { src: kept, ..build }
}

#[test]
fn repository_setup_creates_the_repository_and_lifecycle_and_prints_the_build_policy() {
    let repository = unique("buildspecs-setup");
    let build = setup(&repository);
    check_outputs(&build);
    assert_eq!(build.phase("build"), Phase::Succeeded, "{build:?}");
    assert_eq!(build.phase("post_build"), Phase::Succeeded, "{build:?}");
    let (ok, text) = aws_cli(&[
        "ecr",
        "describe-repositories",
        "--repository-names",
        &repository,
    ]);
    assert!(ok, "{text}");
    let described: Value = serde_json::from_str(&text).unwrap();
    let repo = &described["repositories"][0];
    assert_eq!(
        repo["imageScanningConfiguration"]["scanOnPush"], true,
        "{text}"
    );
    assert!(
        repo["imageTagMutability"]
            .as_str()
            .unwrap_or_default()
            .starts_with("IMMUTABLE"),
        "{text}"
    );
    assert_eq!(
        build.exported.get("REPOSITORY_URI"),
        repo["repositoryUri"].as_str().map(str::to_owned).as_ref(),
        "{build:?}"
    );
    let (ok, text) = aws_cli(&[
        "ecr",
        "get-lifecycle-policy",
        "--repository-name",
        &repository,
    ]);
    assert!(ok, "the lifecycle policy was not set: {text}");
    assert!(
        text.contains("untagged") && text.contains("imageCountMoreThan"),
        "{text}"
    );
    let policy = build.json("build-policy.json");
    assert_eq!(policy["Version"], "2012-10-17", "{policy}");
    let text = policy.to_string();
    for action in [
        "ecr:GetAuthorizationToken",
        "ecr:PutImage",
        "ecr:DescribeImageScanFindings",
    ] {
        assert!(
            text.contains(action),
            "build-policy.json lacks {action}: {text}"
        );
    }
    assert!(
        text.contains(&repository),
        "the policy is not scoped to the repository: {text}"
    );
    // A second run changes nothing and the drift check still passes.
    let again = setup(&repository);
    assert!(
        again.log.contains("unchanged") || again.log.contains("up to date"),
        "{again:?}"
    );
    let _ = std::fs::remove_dir_all(&build.src);
    let _ = std::fs::remove_dir_all(&again.src);
}

#[test]
fn basic_pushes_and_writes_image_uri_and_imagedefinitions() {
    let repository = unique("buildspecs-basic");
    let _ = std::fs::remove_dir_all(setup(&repository).src);
    let (src, commit) = source();
    let build = run("basic.yml", src.path(), &commit, &overrides(&repository));
    build.succeeded();
    check_outputs(&build);
    let registry = service("IMGPIPE_ECR_REGISTRY");
    let short = &commit[..7];
    let uri = format!("{registry}/{repository}:{short}");
    assert_eq!(build.read("image_uri.txt"), format!("{uri}\n"), "{build:?}");
    assert_eq!(
        build.json("imagedefinitions.json"),
        serde_json::json!([{"name": "my-app", "imageUri": uri}]),
        "the container name comes from project.json{build:?}"
    );
    let digest = resolve(&uri).unwrap();
    assert_eq!(build.exported.get("IMAGE_URI"), Some(&uri), "{build:?}");
    assert_eq!(
        build.exported.get("IMAGE_DIGEST"),
        Some(&digest),
        "{build:?}"
    );
    assert_eq!(
        build.json("imageDetail.json")["ImageURI"],
        format!("{registry}/{repository}@{digest}")
    );
    // latest on the default branch, the same image.
    assert_eq!(
        resolve(&format!("{registry}/{repository}:latest")),
        Some(digest)
    );
    assert!(build.log.contains(&format!("pushed {uri}")), "{build:?}");
}

#[test]
fn basic_with_a_failing_build_runs_post_build_as_failed_and_writes_no_artifacts() {
    let repository = unique("buildspecs-broken");
    let _ = std::fs::remove_dir_all(setup(&repository).src);
    let (src, commit) = source();
    // A Dockerfile whose RUN step fails.
    let dockerfile = src.path().join("Dockerfile");
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    std::fs::write(
        &dockerfile,
        text.replace("RUN sh -n app.sh", "RUN false && sh -n app.sh"),
    )
    .unwrap();
    let build = run("basic.yml", src.path(), &commit, &overrides(&repository));
    assert!(!build.succeeded, "{build:?}");
    assert_eq!(build.phase("pre_build"), Phase::Succeeded, "{build:?}");
    assert_eq!(build.phase("build"), Phase::Failed, "{build:?}");
    assert_eq!(build.phase("post_build"), Phase::Succeeded, "{build:?}");
    assert!(
        build.log.contains("the build failed: nothing to deploy"),
        "{build:?}"
    );
    assert!(!src.path().join("image_uri.txt").exists(), "{build:?}");
    assert!(
        !src.path().join("imagedefinitions.json").exists(),
        "{build:?}"
    );
    let registry = service("IMGPIPE_ECR_REGISTRY");
    assert_eq!(resolve(&format!("{registry}/{repository}:latest")), None);
}

#[test]
fn layer_cache_rebuilds_from_the_pushed_latest() {
    let repository = unique("buildspecs-cache");
    let _ = std::fs::remove_dir_all(setup(&repository).src);
    let (src, commit) = source();
    let first = run(
        "layer-cache.yml",
        src.path(),
        &commit,
        &overrides(&repository),
    );
    first.succeeded();
    check_outputs(&first);
    // The first build has no `latest` to start from: it says so and builds without it.
    let registry = service("IMGPIPE_ECR_REGISTRY");
    let latest = format!("{registry}/{repository}:latest");
    assert!(
        first
            .log
            .contains(&format!("cache image {latest} is not available")),
        "{first:?}"
    );
    let uri = first.read("image_uri.txt");
    // As on a fresh build host: the pushed images are not local, so the next build pulls
    // `latest` from the registry to use as its cache.
    for reference in [uri.trim(), latest.as_str()] {
        let (ok, text) = docker(&["image", "rm", reference]);
        assert!(ok, "docker image rm {reference}: {text}");
    }
    // The next commit's build. (The same commit again would give the same tag another image,
    // which the repository's immutable tags refuse, as ECR does; only `latest` may move.)
    let git = |args: &[&str]| {
        let output = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@imgpipe.invalid"])
            .args(args)
            .current_dir(src.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    git(&["commit", "-q", "--allow-empty", "-m", "next"]);
    let next = git(&["rev-parse", "HEAD"]);
    let second = run(
        "layer-cache.yml",
        src.path(),
        &next,
        &overrides(&repository),
    );
    second.succeeded();
    check_outputs(&second);
    assert!(
        second
            .log
            .contains(&format!("pulling cache image {latest}")),
        "{second:?}"
    );
    assert!(!second.log.contains("is not available"), "{second:?}");
    // The next commit's tag, and `latest` moved to it.
    let second_uri = second.read("image_uri.txt");
    assert!(second_uri.trim().ends_with(&next[..7]), "{second:?}");
    assert_eq!(resolve(second_uri.trim()), resolve(&latest), "{second:?}");
    assert_ne!(resolve(uri.trim()), resolve(&latest), "{second:?}");
    let built = second.document("built.json");
    let steps = built["build"]["steps"].as_u64().unwrap();
    assert!(steps > 0, "{built}");
    // Every step but the base image's (WORKDIR, COPY, RUN, COPY --from) came from the cache.
    assert!(
        built["build"]["cached_steps"].as_u64() >= Some(4),
        "{built}{second:?}"
    );
}

#[test]
fn scan_gate_passes_and_publishes_a_junit_report() {
    let repository = unique("buildspecs-scan");
    let _ = std::fs::remove_dir_all(setup(&repository).src);
    let (src, commit) = source();
    let build = run(
        "scan-gate.yml",
        src.path(),
        &commit,
        &overrides(&repository),
    );
    build.succeeded();
    check_outputs(&build);
    assert_eq!(
        build.exported.get("SCAN_VERDICT").map(String::as_str),
        Some("pass"),
        "{build:?}"
    );
    let report = std::fs::read_to_string(src.path().join("reports/image-scan.xml")).unwrap();
    assert!(report.contains("<testcase"), "{report}");
    assert!(build.log.contains("passed the scan gate"), "{build:?}");
}

/// The multi-architecture batch build: an amd64 and an arm64 build, then the join. Both
/// architecture builds run on this x86 host here (CodeBuild runs the arm64 one on an ARM host,
/// whose `cc` the runner stands in for with an aarch64 compiler), so the arm64 image holds a
/// real aarch64 program, which the docker CLI runs under QEMU through the joined list.
#[test]
fn multiarch_batch_builds_two_platforms_and_joins_them() {
    let repository = unique("buildspecs-multiarch");
    let _ = std::fs::remove_dir_all(setup(&repository).src);
    let (src, commit) = source_of("examples/multiarch-app");
    let builds = run_batch(
        &folder().join("multiarch.yml"),
        src.path(),
        &commit,
        &overrides(&repository),
    );
    for (_, build) in &builds {
        build.succeeded();
        check_outputs(build);
    }
    let ids: Vec<&str> = builds.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["amd64", "arm64", "join"]);
    let registry = service("IMGPIPE_ECR_REGISTRY");
    let short = &commit[..7];
    let name = format!("{registry}/{repository}");
    let amd64 = resolve(&format!("{name}:{short}-amd64")).expect("the amd64 image");
    let arm64 = resolve(&format!("{name}:{short}-arm64")).expect("the arm64 image");
    let join = &builds[2].1;
    let uri = format!("{name}:{short}");
    assert_eq!(join.read("image_uri.txt"), format!("{uri}\n"), "{join:?}");
    let list = resolve(&uri).expect("the list");
    assert_eq!(resolve(&format!("{name}:latest")), Some(list.clone()));
    let doc = join.document("manifest.json");
    assert_eq!(doc["digest"], list.as_str(), "{join:?}");
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
    assert_eq!(
        platforms,
        [
            ("linux/amd64".to_owned(), amd64),
            ("linux/arm64".to_owned(), arm64)
        ]
    );
    // Each platform's program, pulled through the list and run by the docker CLI.
    let config = tempfile::tempdir().unwrap();
    tool("ecr-login")
        .env("DOCKER_CONFIG", config.path())
        .run()
        .success();
    let _refs = Refs(vec![uri.clone()]);
    for (platform, machine) in [("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")] {
        let _ = docker_as(config.path(), None, &["image", "rm", &uri]);
        let (ok, text) = docker_as(
            config.path(),
            None,
            &[
                "run",
                "--rm",
                "--pull",
                "always",
                "--platform",
                platform,
                &uri,
            ],
        );
        assert!(ok, "docker run --platform {platform} {uri}: {text}");
        assert!(
            text.contains(&format!("hello from {machine}")),
            "{platform}: {text}"
        );
    }
}

/// The runner itself, on buildspecs made here: state kept from command to command and phase to
/// phase, `finally`, `post_build` after a failed `build`, variable precedence, exported
/// variables, and a build graph run in dependency order.
#[test]
fn the_runner_runs_a_build_graph_with_codebuild_semantics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("batch.yml"),
        r#"version: 0.2
batch:
  build-graph:
    - identifier: second
      buildspec: buildspecs/second.yml
      depend-on:
        - first
    - identifier: first
      ignore-failure: true
      env:
        variables:
          WHO: batch
env:
  variables:
    IMAGE_REPO_NAME: from-the-buildspec
    FROM_SPEC: spec
  exported-variables:
    - SHELL_VAR
phases:
  install:
    commands:
      - mkdir -p sub && cd sub
      - SHELL_VAR="set in install"
  pre_build:
    commands:
      - test "$(basename "$PWD")" = sub
      - test "$SHELL_VAR" = "set in install"
      - echo "$IMAGE_REPO_NAME $FROM_SPEC $WHO" > vars
      - echo "$CODEBUILD_BATCH_BUILD_IDENTIFIER" >> "$ORDER_FILE"
  build:
    commands:
      - "false"
      - touch not-reached
    finally:
      - touch finally-ran
  post_build:
    commands:
      - echo "$CODEBUILD_BUILD_SUCCEEDING" > succeeding
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("second.yml"),
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo \"$CODEBUILD_BATCH_BUILD_IDENTIFIER\" >> \"$ORDER_FILE\"\n",
    )
    .unwrap();
    let order = dir.path().join("order");
    let (src, commit) = source();
    let mut vars = overrides("from-the-start-build");
    vars.push((
        "ORDER_FILE".to_owned(),
        order.to_string_lossy().into_owned(),
    ));
    let builds = run_batch(&dir.path().join("batch.yml"), src.path(), &commit, &vars);
    assert_eq!(std::fs::read_to_string(&order).unwrap(), "first\nsecond\n");
    let (id, first) = &builds[0];
    assert_eq!(id, "first");
    assert!(!first.succeeded, "{first:?}");
    let phases: Vec<Phase> = first.phases.iter().map(|(_, p)| *p).collect();
    assert_eq!(
        phases,
        [
            Phase::Succeeded,
            Phase::Succeeded,
            Phase::Failed,
            Phase::Succeeded
        ],
        "{first:?}"
    );
    let sub = first.src.join("sub");
    assert_eq!(
        std::fs::read_to_string(sub.join("vars")).unwrap(),
        "from-the-start-build spec batch\n",
        "the start-build overrides win over the buildspec's env{first:?}"
    );
    assert!(sub.join("finally-ran").exists(), "{first:?}");
    assert!(!sub.join("not-reached").exists(), "{first:?}");
    assert_eq!(
        std::fs::read_to_string(sub.join("succeeding")).unwrap(),
        "0\n"
    );
    assert_eq!(
        first.exported.get("SHELL_VAR").map(String::as_str),
        Some("set in install")
    );
    let (id, second) = &builds[1];
    assert_eq!(id, "second");
    assert!(second.succeeded, "{second:?}");
}

#[test]
fn every_file_of_the_folder_is_covered() {
    let mut files: Vec<String> = std::fs::read_dir(folder())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    for name in NAMED {
        assert!(
            files.iter().any(|f| f == name),
            "{name} is tested but missing"
        );
    }
    for file in &files {
        let covered =
            file == "README.md" || file == "project.json" || NAMED.contains(&file.as_str());
        assert!(
            covered,
            "examples/buildspecs/{file} has no test of its own: add one and name it in NAMED"
        );
        if is_buildspec(file) {
            let readme = std::fs::read_to_string(folder().join("README.md")).unwrap();
            assert!(
                readme.contains(file.as_str()),
                "README.md does not describe {file}"
            );
        }
    }
}

#[test]
fn the_project_definition_is_valid_input_for_create_project() {
    let text = std::fs::read_to_string(folder().join("project.json")).unwrap();
    let mut project: Value = serde_json::from_str(&text).unwrap();
    let environment = &project["environment"];
    assert_eq!(
        environment["privilegedMode"], true,
        "Docker needs privileged mode"
    );
    assert_eq!(project["cache"]["type"], "LOCAL");
    let modes = project["cache"]["modes"].to_string();
    assert!(modes.contains("LOCAL_DOCKER_LAYER_CACHE") && modes.contains("LOCAL_SOURCE_CACHE"));
    let names: Vec<String> = project_variables().into_iter().map(|(n, _)| n).collect();
    for needed in [
        "AWS_ACCOUNT_ID",
        "IMAGE_REPO_NAME",
        "CONTAINER_NAME",
        "IMGPIPE_URL",
    ] {
        assert!(
            names.iter().any(|n| n == needed),
            "project.json lacks {needed}"
        );
    }
    // aws-cli checks the input against the CodeBuild API's model before it sends it, and the
    // ECR API server (moto) takes CodeBuild calls too.
    let name = unique("buildspecs-project");
    project["name"] = Value::String(name.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("project.json");
    std::fs::write(&path, project.to_string()).unwrap();
    let input = format!("file://{}", path.display());
    let (ok, text) = aws_cli(&["codebuild", "create-project", "--cli-input-json", &input]);
    assert!(ok, "create-project refused project.json: {text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created["project"]["name"], name.as_str(), "{text}");
}
