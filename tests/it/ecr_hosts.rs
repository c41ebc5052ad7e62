//! The tools against ECR's own host names: the local ECR of scripts/services.sh (TLS on 443 with
//! a local CA, ECR's Basic auth with the ECR API server's token, ECR's refusals, and every push
//! registered with the ECR API server). The docker CLI and aws-cli, clients we did not write,
//! check what the tools did.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{Refs, aws_cli, bin_dir, build_small, pipe, program, service, tool, unique};

pub(crate) fn east() -> String {
    service("IMGPIPE_ECR_REGISTRY")
}

/// Runs the docker CLI against the test engine with `config` as its DOCKER_CONFIG and `path`
/// as its PATH (for credential helpers).
pub(crate) fn docker_as(config: &Path, path: Option<&str>, args: &[&str]) -> (bool, String) {
    let output = Command::new("docker")
        .args(args)
        .env_clear()
        .env(
            "PATH",
            path.map_or_else(|| std::env::var("PATH").unwrap(), str::to_owned),
        )
        .env("HOME", config)
        .env("DOCKER_CONFIG", config)
        .envs(crate::harness::services())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Creates `repository` in the ECR API server with ecr-repo, with `extra` flags.
pub(crate) fn create(repository: &str, extra: &[&str]) {
    tool("ecr-repo")
        .args(["--no-input", "--repository", repository])
        .args(extra)
        .run()
        .success();
}

/// The digest aws-cli's DescribeImages gives `tag` in `repository`, if any.
pub(crate) fn described(repository: &str, tag: &str, extra: &[&str]) -> Option<String> {
    let mut args = vec![
        "ecr",
        "describe-images",
        "--repository-name",
        repository,
        "--image-ids",
    ];
    let id = format!("imageTag={tag}");
    args.push(&id);
    args.extend_from_slice(extra);
    let (ok, text) = aws_cli(&args);
    if !ok {
        return None;
    }
    let value: Value = serde_json::from_str(&text).unwrap();
    value["imageDetails"][0]["imageDigest"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn ecr_login_with_no_flags_logs_in_to_the_tokens_host_and_docker_pushes_and_pulls() {
    let config = tempfile::tempdir().unwrap();
    let repository = unique("ecrhost-login");
    create(&repository, &[]);
    let target = format!("{}/{repository}:v1", east());
    let _refs = Refs(vec![target.clone()]);
    let (ok, text) = docker_as(
        config.path(),
        None,
        &["tag", &service("IMGPIPE_BASE_IMAGE"), &target],
    );
    assert!(ok, "{text}");

    // Not logged in: ECR's data plane wants credentials.
    let (ok, text) = docker_as(config.path(), None, &["push", &target]);
    assert!(!ok && text.contains("no basic auth credentials"), "{text}");

    let doc = tool("ecr-login")
        .env("DOCKER_CONFIG", config.path())
        .run()
        .success()
        .document();
    assert_eq!(doc["registry"], east().as_str());
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(config.path().join("config.json")).unwrap())
            .unwrap();
    assert!(stored["auths"][east()]["auth"].is_string(), "{stored}");

    let (ok, text) = docker_as(config.path(), None, &["push", &target]);
    assert!(ok, "docker push with ecr-login's credentials: {text}");
    let pushed = text
        .split("digest: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("docker push prints the digest")
        .to_owned();
    // The push registered itself with the ECR API server, as ECR's data plane does.
    assert_eq!(described(&repository, "v1", &[]), Some(pushed.clone()));
    let (ok, text) = docker_as(config.path(), None, &["rmi", &target]);
    assert!(ok, "{text}");
    let (ok, text) = docker_as(
        config.path(),
        None,
        &["pull", &format!("{}/{repository}@{pushed}", east())],
    );
    assert!(ok, "docker pull: {text}");
}

#[test]
fn the_credential_helper_serves_docker_for_the_ecr_host() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(
        bin_dir().join("ecr-login"),
        bin.join("docker-credential-ecr-login"),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let config = dir.path().join("docker");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.json"),
        json!({"credHelpers": {east(): "ecr-login"}}).to_string(),
    )
    .unwrap();
    let repository = unique("ecrhost-helper");
    create(&repository, &[]);
    let target = format!("{}/{repository}:v1", east());
    let _refs = Refs(vec![target.clone()]);
    let (ok, text) = docker_as(
        &config,
        Some(&path),
        &["tag", &service("IMGPIPE_BASE_IMAGE"), &target],
    );
    assert!(ok, "{text}");
    let (ok, text) = docker_as(&config, Some(&path), &["push", &target]);
    assert!(ok, "docker push through the credential helper: {text}");
    assert!(described(&repository, "v1", &[]).is_some());
    // The helper stored nothing: docker asked it.
    let stored = std::fs::read_to_string(config.join("config.json")).unwrap();
    assert!(!stored.contains("\"auth\""), "{stored}");
    // And it answers docker's `get` the way docker-credential-helpers do.
    let out = program(&bin.join("docker-credential-ecr-login"))
        .env("PATH", &path)
        .args(["get"])
        .stdin(east())
        .run();
    out.success();
    let answer: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(answer["Username"], "AWS");
    assert_eq!(answer["ServerURL"], east().as_str());
}

#[test]
fn another_region_and_another_account_get_their_own_tokens() {
    for (host, region, account) in [
        (
            service("IMGPIPE_ECR_REGISTRY_WEST"),
            "us-west-2",
            "123456789012",
        ),
        (
            service("IMGPIPE_ECR_REGISTRY_OTHER"),
            "us-east-1",
            "210987654321",
        ),
    ] {
        let config = tempfile::tempdir().unwrap();
        let repository = unique("ecrhost-far");
        let (ok, text) = aws_cli(&[
            "ecr",
            "create-repository",
            "--repository-name",
            &repository,
            "--registry-id",
            account,
            "--region",
            region,
        ]);
        assert!(ok, "{text}");
        let doc = tool("ecr-login")
            .args(["--registry", &host])
            .env("DOCKER_CONFIG", config.path())
            .run()
            .success()
            .document();
        assert_eq!(doc["region"], region, "{doc}");
        assert_eq!(doc["account_id"], account, "{doc}");
        let target = format!("{host}/{repository}:v1");
        let _refs = Refs(vec![target.clone()]);
        let (ok, text) = docker_as(
            config.path(),
            None,
            &["tag", &service("IMGPIPE_BASE_IMAGE"), &target],
        );
        assert!(ok, "{text}");
        let (ok, text) = docker_as(config.path(), None, &["push", &target]);
        assert!(ok, "docker push to {host}: {text}");
        // The first account's token is not the second's.
        if account != "123456789012" {
            let east_config = tempfile::tempdir().unwrap();
            tool("ecr-login")
                .env("DOCKER_CONFIG", east_config.path())
                .run()
                .success();
            let mut auths: Value = serde_json::from_str(
                &std::fs::read_to_string(east_config.path().join("config.json")).unwrap(),
            )
            .unwrap();
            let east_auth = auths["auths"][east()].clone();
            auths["auths"] = json!({ host.clone(): east_auth });
            std::fs::write(east_config.path().join("config.json"), auths.to_string()).unwrap();
            let (ok, text) = docker_as(east_config.path(), None, &["push", &target]);
            assert!(!ok, "another account's token was accepted: {text}");
        }
    }
}

#[test]
fn img_push_gets_its_own_token_and_names_a_missing_repository_before_any_upload() {
    let repository = unique("ecrhost-push");
    create(&repository, &[]);
    let reference = format!("{}/{repository}:v1", east());
    let _refs = Refs(vec![reference.clone()]);
    let id = build_small(&reference, "ecr push");
    // An empty Docker config: img-push asks the ECR API server for a token itself.
    let config = tempfile::tempdir().unwrap();
    let doc = tool("img-push")
        .env("DOCKER_CONFIG", config.path())
        .stdin(
            json!({"registry": east(), "repository": repository, "tags": ["v1"], "image_id": id})
                .to_string(),
        )
        .run()
        .success()
        .document();
    let digest = doc["digest"].as_str().unwrap().to_owned();
    assert_eq!(described(&repository, "v1", &[]), Some(digest));
    assert!(
        doc["push"]["credentials"]
            .as_str()
            .unwrap()
            .contains("GetAuthorizationToken"),
        "{doc}"
    );

    let missing = unique("ecrhost-missing");
    tool("img-push")
        .env("DOCKER_CONFIG", config.path())
        .stdin(
            json!({"registry": east(), "repository": missing, "tags": ["v1"], "image_id": id})
                .to_string(),
        )
        .run()
        .fails(65, &[&missing, "does not exist", "ecr-repo"]);
    assert!(described(&missing, "v1", &[]).is_none());
}

#[test]
fn an_immutable_tag_is_refused_before_any_upload_and_by_the_registry_too() {
    let repository = unique("ecrhost-immutable");
    create(&repository, &[]);
    let reference = format!("{}/{repository}:v1", east());
    let other = format!("{}/{repository}:other", east());
    let _refs = Refs(vec![reference.clone(), other.clone()]);
    let first = build_small(&reference, "first");
    let config = tempfile::tempdir().unwrap();
    let push = |id: &str| {
        tool("img-push")
            .env("DOCKER_CONFIG", config.path())
            .stdin(
                json!({"registry": east(), "repository": repository, "tags": ["v1"], "image_id": id})
                    .to_string(),
            )
            .run()
    };
    let digest = push(&first).success().document()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    create(&repository, &["--tag-mutability", "immutable"]);

    let second = build_small(&other, "second");
    push(&second).fails(4, &["immutable tags", "v1", "nothing was pushed"]);
    assert_eq!(described(&repository, "v1", &[]), Some(digest.clone()));

    // The registry itself refuses, as ECR does, whatever the client.
    tool("ecr-login")
        .env("DOCKER_CONFIG", config.path())
        .run()
        .success();
    let (ok, text) = docker_as(config.path(), None, &["tag", &other, &reference]);
    assert!(ok, "{text}");
    let (ok, text) = docker_as(config.path(), None, &["push", &reference]);
    assert!(
        !ok && text.contains("cannot be overwritten because the repository is immutable"),
        "{text}"
    );
    assert_eq!(described(&repository, "v1", &[]), Some(digest));
}

#[test]
fn scan_gate_waits_for_the_scan_the_push_started() {
    let repository = unique("ecrhost-scan");
    create(&repository, &["--scan-on-push"]);
    let reference = format!("{}/{repository}:v1", east());
    let _refs = Refs(vec![reference.clone()]);
    let id = build_small(&reference, "scan me");
    let config = tempfile::tempdir().unwrap();
    let piped = pipe([
        tool("img-push").env("DOCKER_CONFIG", config.path()).stdin(
            json!({"registry": east(), "repository": repository, "tags": ["v1"], "image_id": id})
                .to_string(),
        ),
        tool("scan-gate").args(["--fail-on", "critical"]),
    ]);
    let doc = piped.success().document();
    assert_eq!(doc["scan"]["status"], "COMPLETE", "{doc}");
    assert_eq!(doc["scan"]["verdict"], "pass", "{doc}");
    assert!(
        doc["scan"]["findings_total"].as_u64().unwrap() >= 1,
        "the ECR API server's scan has findings: {doc}"
    );
}
