//! `ecr-login` against the ECR API server and the htpasswd registry, checked with the real
//! docker CLI: what it writes is what Docker reads, and the password shows nowhere else.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{bin_dir, program, service, tool, unique};

fn password() -> String {
    service("IMGPIPE_AUTH_REGISTRY_PASSWORD")
}

fn auth_registry() -> String {
    service("IMGPIPE_AUTH_REGISTRY")
}

fn read_config(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

/// Runs the real docker CLI against the test engine with `config` as its DOCKER_CONFIG.
fn docker(config: &Path, path: Option<&str>, args: &[&str]) -> (bool, String) {
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

/// Tags the base image into the auth registry under a fresh name and tries to push it.
fn push_to_auth_registry(config: &Path, path: Option<&str>) -> (bool, String) {
    let target = format!("{}/{}:1", auth_registry(), unique("login-push"));
    let (ok, text) = docker(
        config,
        None,
        &["tag", &service("IMGPIPE_BASE_IMAGE"), &target],
    );
    assert!(ok, "docker tag failed: {text}");
    let pushed = docker(config, path, &["push", &target]);
    docker(config, None, &["rmi", &target]);
    pushed
}

#[test]
fn docker_pushes_with_the_credentials_it_wrote_and_not_without() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("docker");
    let (ok, text) = push_to_auth_registry(&config, None);
    assert!(!ok, "the push must fail without credentials: {text}");
    assert!(text.contains("no basic auth credentials"), "{text}");

    let out = tool("ecr-login")
        .args(["--registry", &auth_registry()])
        .env("DOCKER_CONFIG", &config)
        .run();
    let doc = out.success().hides(&password()).document();
    assert_eq!(doc["registry"], auth_registry().as_str());
    assert_eq!(doc["login"]["username"], "AWS");
    assert_eq!(doc["login"]["registries"], json!([auth_registry()]));
    let stored_in = doc["login"]["stored_in"][auth_registry()].as_str().unwrap();
    assert!(
        stored_in.starts_with("auths in ") && stored_in.ends_with("config.json"),
        "{stored_in}"
    );

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&config), 0o700);
    assert_eq!(mode(&config.join("config.json")), 0o600);
    let written = read_config(&config);
    let auth = written["auths"][auth_registry()]["auth"].as_str().unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        format!("AWS:{}", password())
    );

    let (ok, text) = push_to_auth_registry(&config, None);
    assert!(ok, "docker push with the written config failed: {text}");
}

#[test]
fn other_entries_helpers_and_unknown_keys_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let before = json!({
        "auths": {"other.example.com": {"auth": "dXNlcjpwYXNz"}, "https://index.docker.io/v1/": {}},
        "credHelpers": {"helped.example.com": "somehelper"},
        "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
        "detachKeys": "ctrl-e,e",
        "aNewKey": {"nested": [1, 2, 3]},
    });
    std::fs::write(dir.path().join("config.json"), before.to_string()).unwrap();
    tool("ecr-login")
        .args(["--registry", &auth_registry()])
        .env("DOCKER_CONFIG", dir.path())
        .run()
        .success();
    let after = read_config(dir.path());
    for key in ["credHelpers", "proxies", "detachKeys", "aNewKey"] {
        assert_eq!(after[key], before[key], "{key} changed");
    }
    assert_eq!(
        after["auths"]["other.example.com"],
        before["auths"]["other.example.com"]
    );
    assert_eq!(after["auths"]["https://index.docker.io/v1/"], json!({}));
    assert!(after["auths"][auth_registry()]["auth"].is_string());
}

/// A credential store helper script that keeps its secrets in a JSON file in `dir`.
fn store_helper(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("docker-credential-filestore");
    let db = dir.join("store.json");
    std::fs::write(
        &script,
        format!(
            r#"#!/usr/bin/env python3
import json, os, sys
db = "{}"
data = json.load(open(db)) if os.path.exists(db) else {{}}
action, text = sys.argv[1], sys.stdin.read().strip()
if action == "store":
    entry = json.loads(text); data[entry["ServerURL"]] = entry
    json.dump(data, open(db, "w"))
elif action == "get":
    if text not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps(data[text]))
elif action == "erase":
    data.pop(text, None); json.dump(data, open(db, "w"))
elif action == "list":
    print(json.dumps({{k: v["Username"] for k, v in data.items()}}))
"#,
            db.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn credentials_go_through_the_configured_creds_store() {
    let dir = tempfile::tempdir().unwrap();
    let bin = store_helper(dir.path());
    let config = dir.path().join("docker");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("config.json"), r#"{"credsStore": "filestore"}"#).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());

    let out = tool("ecr-login")
        .args(["--registry", &auth_registry()])
        .env("DOCKER_CONFIG", &config)
        .env("PATH", &path)
        .run();
    let doc = out.success().hides(&password()).document();
    assert_eq!(
        doc["login"]["stored_in"][auth_registry()],
        "credential helper docker-credential-filestore"
    );
    let store: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("store.json")).unwrap())
            .unwrap();
    assert_eq!(store[auth_registry()]["Secret"], password().as_str());
    assert_eq!(store[auth_registry()]["Username"], "AWS");
    let written = read_config(&config);
    assert_eq!(
        written["auths"][auth_registry()],
        json!({}),
        "no secret in config.json"
    );
    assert_eq!(written["credsStore"], "filestore");

    let (ok, text) = push_to_auth_registry(&config, Some(&path));
    assert!(ok, "docker push through the creds store failed: {text}");

    // A helper that fails: one line, config untouched.
    std::fs::write(
        config.join("config.json"),
        r#"{"credsStore": "missing-helper"}"#,
    )
    .unwrap();
    tool("ecr-login")
        .args(["--registry", &auth_registry()])
        .env("DOCKER_CONFIG", &config)
        .run()
        .fails(78, &["docker-credential-missing-helper"])
        .hides(&password());
    assert_eq!(
        std::fs::read_to_string(config.join("config.json")).unwrap(),
        r#"{"credsStore": "missing-helper"}"#
    );
}

#[test]
fn twenty_concurrent_logins_keep_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"auths":{"keep.example.com":{"auth":"dTpw"}},"x":1}"#,
    )
    .unwrap();
    let children: Vec<_> = (0..20)
        .map(|i| {
            let mut command = tool("ecr-login").into_command();
            command
                .args(["--registry", &format!("mirror-{i}.example.com:5000"), "-q"])
                .env("DOCKER_CONFIG", dir.path())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null());
            command.spawn().unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let after = read_config(dir.path());
    let auths = after["auths"].as_object().unwrap();
    assert_eq!(auths.len(), 21, "{after}");
    for i in 0..20 {
        assert!(
            auths.contains_key(&format!("mirror-{i}.example.com:5000")),
            "mirror-{i} lost"
        );
    }
    assert_eq!(after["auths"]["keep.example.com"]["auth"], "dTpw");
    assert_eq!(after["x"], 1);
}

#[test]
fn a_corrupt_config_is_named_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, "{\"auths\": {\"a\": ").unwrap();
    tool("ecr-login")
        .args(["--registry", &auth_registry()])
        .env("DOCKER_CONFIG", dir.path())
        .run()
        .fails(78, &["cannot be parsed", "config.json", "left as it is"])
        .hides(&password());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"auths\": {\"a\": "
    );
}

#[test]
fn password_stdout_prints_the_password_alone_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = tool("ecr-login")
        .args(["--password-stdout"])
        .env("DOCKER_CONFIG", dir.path())
        .run();
    out.success();
    assert_eq!(out.stdout, format!("{}\n", password()));
    assert!(!out.stderr.contains(&password()));
    assert!(!dir.path().join("config.json").exists());
}

#[test]
fn without_a_registry_the_token_names_the_callers_registry() {
    let dir = tempfile::tempdir().unwrap();
    let out = tool("ecr-login").env("DOCKER_CONFIG", dir.path()).run();
    let doc = out.success().hides(&password()).document();
    assert_eq!(
        doc["registry"],
        "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    );
    assert_eq!(doc["account_id"], "123456789012");
    assert_eq!(doc["region"], "us-east-1");
    let written = read_config(dir.path());
    assert!(written["auths"]["123456789012.dkr.ecr.us-east-1.amazonaws.com"]["auth"].is_string());
}

/// An ECR-style registry password carrying its expiry, `seconds` from now.
fn ecr_style_password(seconds: i64) -> String {
    let expiration = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .cast_signed()
        + seconds;
    base64::engine::general_purpose::STANDARD.encode(format!(
        r#"{{"payload":"p","datakey":"d","version":"2","type":"DATA_KEY","expiration":{expiration}}}"#
    ))
}

#[test]
fn check_says_no_when_missing_or_expiring() {
    let dir = tempfile::tempdir().unwrap();
    let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let check = |min: &str| {
        tool("ecr-login")
            .args(["--check", "--registry", host, "--min-valid", min])
            .env("DOCKER_CONFIG", dir.path())
            .run()
    };
    let out = check("1h");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.document()["login"]["check"][0]["stored"], false);
    assert!(out.stderr.contains("no credentials are stored"), "{out:?}");

    let secret = ecr_style_password(2 * 3600);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{secret}"));
    std::fs::write(
        dir.path().join("config.json"),
        json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let out = check("30m");
    let doc = out.success().hides(&secret).document();
    let valid_for = doc["login"]["check"][0]["valid_for_seconds"]
        .as_i64()
        .unwrap();
    assert!((7000..=7200).contains(&valid_for), "{valid_for}");
    let out = check("3h");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("within 3h"), "{out:?}");
}

#[test]
fn logout_removes_only_what_ecr_login_stored() {
    let dir = tempfile::tempdir().unwrap();
    let ours = "ours.example.com";
    let theirs = "theirs.example.com";
    tool("ecr-login")
        .args(["--registry", ours, "--registry", theirs])
        .env("DOCKER_CONFIG", dir.path())
        .run()
        .success();
    // Someone logs in to `theirs` by hand afterwards.
    let mut config = read_config(dir.path());
    config["auths"][theirs] = json!({"auth": "bWU6c2VjcmV0"});
    config["auths"]["untouched.example.com"] = json!({"auth": "dTpw"});
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();

    let doc = tool("ecr-login")
        .args(["--logout", "--registry", ours, "--registry", theirs])
        .env("DOCKER_CONFIG", dir.path())
        .run()
        .success()
        .document();
    assert_eq!(doc["login"]["logged_out"], json!([ours]));
    assert_eq!(doc["login"]["left_alone"], json!([theirs]));
    let after = read_config(dir.path());
    assert!(after["auths"].get(ours).is_none());
    assert_eq!(after["auths"][theirs]["auth"], "bWU6c2VjcmV0");
    assert_eq!(after["auths"]["untouched.example.com"]["auth"], "dTpw");
}

#[test]
fn as_a_credential_helper_it_answers_for_ecr_and_caches_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(
        bin_dir().join("ecr-login"),
        bin.join("docker-credential-ecr-login"),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let cache = dir.path().join("cache");
    let helper = |action: &str, input: &str| {
        program(&bin.join("docker-credential-ecr-login"))
            .env("PATH", &path)
            .env("XDG_CACHE_HOME", &cache)
            .args([action])
            .stdin(input)
            .run()
    };
    // The helper answers for ECR hosts only (tests/it/security_hosts.rs has the others). A
    // docker push through it needs an ECR host name that resolves here: issue 18's test bed.
    let ecr_host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let out = helper("get", ecr_host);
    out.success();
    let answer: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(answer["Username"], "AWS");
    assert_eq!(answer["Secret"], password().as_str());
    assert_eq!(answer["ServerURL"], ecr_host);
    assert!(!out.stderr.contains(&password()));
    // The token is cached per caller identity: a second get needs no ECR call.
    let entries: Vec<_> = std::fs::read_dir(cache.join("imgpipe/ecr-login"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(entries.len(), 1);
    let mode = std::fs::metadata(&entries[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cached = program(&bin.join("docker-credential-ecr-login"))
        .env("PATH", &path)
        .env("XDG_CACHE_HOME", &cache)
        .env("AWS_ENDPOINT_URL_ECR", format!("http://127.0.0.1:{port}"))
        .args(["get"])
        .stdin(ecr_host)
        .run();
    cached.success();
    assert!(
        cached.stdout.contains(&password()),
        "served from the cache: {cached:?}"
    );
    assert_eq!(helper("list", "").stdout.trim(), "{}");
    helper("store", r#"{"ServerURL":"x","Username":"u","Secret":"s"}"#).success();
    helper("erase", "x").success();
    let out = helper("frobnicate", "");
    assert_eq!(out.code, Some(1));
    assert!(
        out.stdout.contains("unknown credential helper action"),
        "{out:?}"
    );
}

#[test]
fn faults_never_show_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    tool("ecr-login")
        .args(["--registry", &auth_registry()])
        .env("DOCKER_CONFIG", dir.path())
        .env("AWS_ENDPOINT_URL_ECR", format!("http://127.0.0.1:{port}"))
        .env("AWS_MAX_ATTEMPTS", "1")
        .run()
        .fails(69, &["cannot reach the ECR API"])
        .hides(&password());
    assert!(
        !dir.path().join("config.json").exists(),
        "nothing written on failure"
    );
    tool("ecr-login")
        .args(["--registry", "bad host"])
        .env("DOCKER_CONFIG", dir.path())
        .run()
        .fails(65, &["is not a valid host"]);
}

#[test]
fn prints_the_iam_policy_a_login_needs() {
    let out = tool("ecr-login").args(["--print-iam-policy"]).run();
    let policy: Value = serde_json::from_str(&out.success().stdout).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "{policy}");
    assert_eq!(
        statements[0]["Action"],
        json!(["ecr:GetAuthorizationToken"])
    );
    assert_eq!(statements[0]["Resource"], "*");
}
