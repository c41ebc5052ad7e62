//! Credentials go only to the host they are for: hostile registry names, token realms,
//! credential helpers and registry answers, each against a listener that logs what it receives.
//! The regression tests of issue 15's first section.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use crate::harness::{
    Refs, Run, any_digest, bin_dir, build_small, docker, program, service, tool, unique,
};
use crate::hostile::{Listener, Reply};

/// An ECR host name followed by `:443@` and a listener: a URL parser sends requests to the
/// listener, while a parser that reads up to the first ':' sees ECR.
fn smuggled(listener: &Listener) -> String {
    format!(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com:443@{}",
        listener.addr
    )
}

fn ecr_style_password() -> String {
    let expiration = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    base64::engine::general_purpose::STANDARD.encode(format!(
        r#"{{"payload":"secret-payload","datakey":"d","version":"2","type":"DATA_KEY","expiration":{expiration}}}"#
    ))
}

/// A Docker config directory whose `auths` hold `username:password` for `host`.
fn config_with(host: &str, username: &str, password: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    std::fs::write(
        dir.path().join("config.json"),
        json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
    .unwrap();
    dir
}

/// `img-push --retag` of `app:v1` to `app:t` on `registry`: the shortest way to a registry.
fn retag(registry: &str) -> Run {
    tool("img-push").args([
        "--retag",
        "--registry",
        registry,
        "--repository",
        "app",
        "--tag",
        "t",
        "--from",
        "v1",
        "--no-input",
    ])
}

#[test]
fn hostile_registry_names_are_refused_before_any_credential_or_request() {
    let ecr_api = Listener::start(|_| Reply::Status(500, Vec::new(), b"{}".to_vec()));
    let registry = Listener::start(|_| Reply::challenge(r#"Basic realm="r""#));
    let host = smuggled(&registry);
    let endpoint = format!("http://{}", ecr_api.addr);
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let runs = [
        retag(&host),
        tool("img-push").stdin(
            json!({"registry": host, "repository": "app", "tags": ["t"], "digest": any_digest()})
                .to_string(),
        ),
        tool("img-push").stdin(json!({"references": [format!("{host}/app:t")]}).to_string()),
        tool("img-build")
            .args(["--skip-if-present"])
            .args([context.path()])
            .stdin(json!({"registry": host, "repository": "app", "tags": ["t"]}).to_string()),
        tool("img-build")
            .args(["--cache-from", &format!("{host}/app:cache"), "--no-input"])
            .args([context.path()]),
        tool("img-manifest").args([
            "--image",
            &format!("{host}/app@{}", any_digest()),
            "--tag",
            "t",
            "--no-input",
        ]),
        tool("img-tag").args(["--registry", &host, "--repository", "app", "--no-input"]),
        tool("ecr-login").args(["--registry", &host, "--no-input"]),
    ];
    for run in runs {
        run.env("AWS_ENDPOINT_URL_ECR", &endpoint)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .run()
            .fails(65, &["is not a valid host", "the character '@'"]);
    }
    assert!(
        ecr_api.requests().is_empty(),
        "the ECR API was asked for a token: {:?}",
        ecr_api.requests()
    );
    assert_eq!(registry.connections(), 0, "a request reached the registry");
}

#[test]
fn an_ecr_token_never_goes_to_a_bearer_realm() {
    let realm = Listener::start(|_| Reply::Status(200, Vec::new(), br#"{"token":"t0k"}"#.to_vec()));
    let challenge = format!(r#"Bearer realm="http://{}/token",service="x""#, realm.addr);
    let registry = Listener::start(move |_| Reply::challenge(&challenge));
    let token = ecr_style_password();
    let config = config_with(&registry.addr, "AWS", &token);
    retag(&registry.addr)
        .env("DOCKER_CONFIG", config.path())
        .run()
        .fails(77, &["Bearer", "ECR registries use Basic", "not sent"])
        .hides(&token);
    assert!(!registry.requests().is_empty(), "the registry was asked");
    assert!(
        realm.requests().is_empty(),
        "the realm received a request: {:?}",
        realm.authorizations()
    );

    // Other credentials go to the realm, as docker sends them (Docker Hub's realm is another
    // host): the friendly case.
    let friendly = config_with(&registry.addr, "alice", "pw-alice");
    retag(&registry.addr)
        .env("DOCKER_CONFIG", friendly.path())
        .run()
        .fails(77, &["refused the credentials of user alice"])
        .hides("pw-alice");
    let basic = base64::engine::general_purpose::STANDARD.encode("alice:pw-alice");
    assert_eq!(realm.authorizations(), [format!("Basic {basic}")]);
}

/// A directory with `docker-credential-ecr-login` linked to the tool.
fn helper_bin() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        bin_dir().join("ecr-login"),
        dir.path().join("docker-credential-ecr-login"),
    )
    .unwrap();
    dir
}

#[test]
fn the_credential_helper_answers_for_private_ecr_hosts_only() {
    let bin = helper_bin();
    let helper = bin.path().join("docker-credential-ecr-login");
    let ecr_api = Listener::start(|_| Reply::Status(500, Vec::new(), b"{}".to_vec()));
    let cache = tempfile::tempdir().unwrap();
    for url in [
        "https://index.docker.io/v1/",
        "ghcr.io",
        "public.ecr.aws",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
        "https://123456789012.dkr.ecr.us-east-1.amazonaws.com:443@127.0.0.1:9/",
        "127.0.0.1:5000",
    ] {
        let out = program(&helper)
            .env("AWS_ENDPOINT_URL_ECR", format!("http://{}", ecr_api.addr))
            .env("XDG_CACHE_HOME", cache.path())
            .args(["get"])
            .stdin(url)
            .run();
        out.code(1);
        assert_eq!(
            out.stdout, "credentials not found in native keychain\n",
            "{url}{out:?}"
        );
    }
    assert!(ecr_api.requests().is_empty(), "ECR was asked for a token");

    let ecr_host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let out = program(&helper)
        .env("XDG_CACHE_HOME", cache.path())
        .args(["get"])
        .stdin(format!("https://{ecr_host}"))
        .run();
    out.success();
    let answer: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(answer["Username"], "AWS");
    assert_eq!(
        answer["Secret"],
        service("IMGPIPE_AUTH_REGISTRY_PASSWORD").as_str()
    );

    let protocol = [
        ("get", "", 1, "no credentials server URL\n"),
        ("erase", "", 1, "no credentials server URL\n"),
        (
            "store",
            r#"{"Username":"u","Secret":"s"}"#,
            1,
            "no credentials server URL\n",
        ),
        (
            "store",
            r#"{"ServerURL":"x","Secret":"s"}"#,
            1,
            "no credentials username\n",
        ),
        (
            "store",
            r#"{"ServerURL":"x","Username":"u","Secret":"s"}"#,
            0,
            "\n",
        ),
    ];
    for (action, input, code, stdout) in protocol {
        let out = program(&helper).args([action]).stdin(input).run();
        out.code(code);
        assert_eq!(out.stdout, stdout, "{action} {input}{out:?}");
    }
    for flag in ["version", "--version", "-v"] {
        let out = program(&helper).args([flag]).run();
        out.success();
        assert!(
            out.stdout.starts_with("docker-credential-ecr-login"),
            "{out:?}"
        );
    }
}

#[test]
fn the_credential_helper_works_without_sts() {
    let bin = helper_bin();
    let cache = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sts = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let get = || {
        program(&bin.path().join("docker-credential-ecr-login"))
            .env("AWS_ENDPOINT_URL_STS", &sts)
            .env("XDG_CACHE_HOME", cache.path())
            .args(["get"])
            .stdin("123456789012.dkr.ecr.us-east-1.amazonaws.com")
            .run()
    };
    let out = get();
    out.success();
    assert!(
        out.stdout
            .contains(&service("IMGPIPE_AUTH_REGISTRY_PASSWORD")),
        "{out:?}"
    );
    let entries = std::fs::read_dir(cache.path().join("imgpipe/ecr-login"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    assert_eq!(entries, 1, "the token is cached, keyed without STS");
}

#[test]
fn docker_pulls_from_another_registry_through_the_helper_get_no_ecr_token() {
    let registry = Listener::start(|_| Reply::challenge(r#"Basic realm="registry""#));
    let bin = helper_bin();
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.json"),
        json!({"credsStore": "ecr-login"}).to_string(),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let output = std::process::Command::new("docker")
        .args(["pull", &format!("{}/app:1", registry.addr)])
        .env_clear()
        .env("PATH", path)
        .env("HOME", config.path())
        .env("DOCKER_CONFIG", config.path())
        .envs(crate::harness::services())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(!output.status.success(), "the listener serves no image");
    assert!(
        !registry.requests().is_empty(),
        "docker never reached the registry: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        registry.authorizations(),
        Vec::<String>::new(),
        "docker sent credentials to a registry that is not ECR"
    );
}

#[test]
fn a_failing_credential_helper_is_named_not_quoted() {
    let bin = tempfile::tempdir().unwrap();
    let script = bin.path().join("docker-credential-leaky");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'LEAKED-SECRET-4711 is the password'\necho 'LEAKED-SECRET-4711' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.json"),
        json!({"credsStore": "leaky"}).to_string(),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    retag(&service("IMGPIPE_REGISTRY"))
        .env("PATH", path)
        .env("DOCKER_CONFIG", config.path())
        .run()
        .fails(78, &["docker-credential-leaky", "exit status 3"])
        .hides("LEAKED-SECRET-4711");
}

#[test]
fn control_characters_from_outside_are_escaped_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let out = tool("img-tag")
        .args(["--context"])
        .args([dir.path()])
        .args(["--repository", "app", "--explain", "--no-input"])
        .env("CODEBUILD_BUILD_ID", "project:1")
        .env(
            "CODEBUILD_RESOLVED_SOURCE_VERSION",
            "0123456789abcdef0123456789abcdef01234567",
        )
        .env(
            "CODEBUILD_WEBHOOK_HEAD_REF",
            "refs/heads/x\nimg-tag: error: forged\u{1b}[2J",
        )
        .run();
    assert!(out.stderr.contains("x\\nimg-tag: error: forged"), "{out:?}");
    assert!(
        !out.stderr
            .lines()
            .any(|l| l.starts_with("img-tag: error: forged")),
        "a forged line{out:?}"
    );
    assert!(!out.stderr.contains('\u{1b}'), "an escape sequence{out:?}");

    let registry = Listener::start(|request| {
        if request.path() == "/v2/" {
            return Reply::ok();
        }
        Reply::Status(
            400,
            Vec::new(),
            br#"{"errors":[{"code":"X","message":"bad\nimg-push: error: forged \u001b[2J"}]}"#
                .to_vec(),
        )
    });
    let out = retag(&registry.addr).run();
    out.fails(65, &["HTTP 400", "forged"]);
    assert!(!out.stderr.contains('\u{1b}'), "an escape sequence{out:?}");
}

#[test]
fn retag_from_stays_in_its_repository() {
    let registry = service("IMGPIPE_REGISTRY");
    let other = unique("other");
    let mine = unique("mine");
    let source = format!("{registry}/{other}:v1");
    let _refs = Refs(vec![source.clone()]);
    build_small(&source, &other);
    let (ok, text) = docker(&["push", &source]);
    assert!(ok, "docker push: {text}");
    for from in [
        format!("../../{other}/manifests/v1"),
        "..".to_owned(),
        format!("v1/../../../{other}/manifests/v1"),
    ] {
        tool("img-push")
            .args([
                "--retag",
                "--registry",
                &registry,
                "--repository",
                &mine,
                "--tag",
                "t",
            ])
            .args(["--from", &from, "--no-input"])
            .run()
            .fails(65, &["--from"]);
    }
    let tags = std::process::Command::new("curl")
        .args(["-s", &format!("http://{registry}/v2/{mine}/tags/list")])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&tags.stdout).contains("\"t\""),
        "a tag was copied from another repository"
    );
}

#[test]
fn an_endless_manifest_is_cut_off() {
    let registry = Listener::start(|request| {
        if request.path() == "/v2/" {
            return Reply::ok();
        }
        Reply::Endless(vec![(
            "Content-Type".to_owned(),
            "application/vnd.docker.distribution.manifest.v2+json".to_owned(),
        )])
    });
    retag(&registry.addr)
        .kill_after(Duration::from_secs(60))
        .run()
        .fails(69, &["longer than 4194304 bytes"]);
    tool("img-manifest")
        .args([
            "--image",
            &format!("{}/app:v1", registry.addr),
            "--tag",
            "t",
            "--no-input",
        ])
        .kill_after(Duration::from_secs(60))
        .run()
        .fails(69, &["longer than 4194304 bytes"]);
    assert!(
        registry.sent() < 64 << 20,
        "{} bytes were read before the client stopped",
        registry.sent()
    );
}

#[test]
fn a_hanging_registry_is_bounded_by_the_deadline() {
    let registry = Listener::start(|_| Reply::Hang);
    retag(&registry.addr)
        .args(["--deadline", "3"])
        .kill_after(Duration::from_secs(60))
        .run()
        .fails(75, &[&registry.addr]);
    assert!(!registry.requests().is_empty(), "the registry was asked");
}
