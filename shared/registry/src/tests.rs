//! The registry client's unit tests.

use std::time::{Duration, Instant};

use shared::error::Error;
use shared::exit;

use super::*;
use crate::auth::Challenge;
use crate::client::{next_link, same_tag_list};

#[test]
fn loopback_hosts_are_plain_http() {
    for host in [
        "localhost",
        "localhost:5000",
        "127.0.0.1:5000",
        "127.1.2.3",
        "[::1]:5000",
    ] {
        assert!(is_loopback(host), "{host}");
    }
    for host in [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "10.0.0.1:5000",
        "example.com:443",
    ] {
        assert!(!is_loopback(host), "{host}");
    }
}

#[test]
fn challenges_parse_quoted_and_bare_values() {
    let c = Challenge::parse(
        r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
    )
    .unwrap();
    assert_eq!(c.scheme, "bearer");
    assert_eq!(c.param("realm"), Some("https://auth.example.com/token"));
    assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
    let c = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
    assert_eq!(c.scheme, "basic");
    assert_eq!(c.param("realm"), Some("Registry Realm"));
    let c = Challenge::parse("Basic realm=x, charset=UTF-8").unwrap();
    assert_eq!(c.param("charset"), Some("UTF-8"));
}

#[test]
fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
    let retry = Retry {
        attempts: 6,
        base: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        deadline: None,
    };
    let cases = [
        (1, 100),
        (2, 200),
        (3, 400),
        (4, 800),
        (5, 1000),
        (9, 1000),
        (40, 1000),
    ];
    for (attempt, full_ms) in cases {
        let full = Duration::from_millis(full_ms);
        assert_eq!(retry.delay(attempt, u64::MAX), full, "attempt {attempt}");
        assert_eq!(retry.delay(attempt, 0), full / 2, "attempt {attempt}");
        let middle = retry.delay(attempt, u64::MAX / 2);
        assert!(
            middle > full / 2 && middle < full,
            "attempt {attempt}: {middle:?}"
        );
    }
}

#[tokio::test]
async fn retries_transient_faults_only_and_says_how_many_attempts() {
    let retry = Retry {
        attempts: 3,
        base: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        deadline: None,
    };
    let cases = [
        (
            Error::unavailable("connection reset"),
            3,
            exit::UNAVAILABLE,
            true,
        ),
        (Error::timeout("too slow"), 3, exit::TIMEOUT, true),
        (Error::no_perm("denied"), 1, exit::NO_PERM, false),
        (Error::data("bad"), 1, exit::DATA, false),
    ];
    for (template, expected_calls, code, counted) in cases {
        let mut calls = 0;
        let message = template.message().to_owned();
        let err = retry
            .run("pushing x", |_| {
                calls += 1;
                let e = Error::new(template.code(), message.clone());
                async move { Err::<(), _>(e) }
            })
            .await
            .unwrap_err();
        assert_eq!(calls, expected_calls, "{message}");
        assert_eq!(err.code(), code);
        assert_eq!(
            err.message()
                .contains("after 3 attempts (no attempts left)"),
            counted,
            "{}",
            err.message()
        );
    }
    let mut calls = 0;
    let value = retry
        .run("x", |attempt| {
            calls += 1;
            async move {
                if attempt < 2 {
                    Err(Error::unavailable("eof"))
                } else {
                    Ok(attempt)
                }
            }
        })
        .await
        .unwrap();
    assert_eq!((value, calls), (2, 2));
    let past = Retry {
        deadline: Some(Instant::now()),
        ..retry
    };
    let err = past
        .run("x", |attempt| async move {
            if attempt == 1 {
                Err::<(), _>(Error::unavailable("eof"))
            } else {
                Ok(())
            }
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("eof"), "{}", err.message());
}

#[test]
fn registry_error_bodies_and_link_headers() {
    let cases: [(&[u8], Option<&str>); 4] = [
        (
            br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"x"}}]}"#,
            Some("NAME_UNKNOWN: repository name not known to registry"),
        ),
        (br#"{"errors":[{"code":"DENIED"}]}"#, Some("DENIED")),
        (br#"{"errors":[]}"#, None),
        (b"<html>bad gateway</html>", None),
    ];
    for (body, said) in cases {
        assert_eq!(registry_said(body).as_deref(), said);
    }
    assert_eq!(
        next_link(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#).as_deref(),
        Some("/v2/a/tags/list?last=b&n=2")
    );
    assert_eq!(
        next_link(r#"<https://r.example/v2/a/tags/list?last=b>; rel="next""#).as_deref(),
        Some("/v2/a/tags/list?last=b")
    );
    assert_eq!(next_link(r#"</v2/a/tags/list?last=b>; rel="prev""#), None);
    assert!(same_tag_list("/v2/a/b/tags/list?last=x&n=2", "a/b"));
    assert!(!same_tag_list(
        "/v2/a/b/tags/list/../../../c/tags/list",
        "a/b"
    ));
    assert!(!same_tag_list("/v2/c/tags/list?last=x", "a/b"));
}

#[test]
fn manifests_name_their_config_and_digests_are_sha256() {
    let manifest = Manifest {
        digest: String::new(),
        media_type: MANIFEST_TYPES[0].to_owned(),
        body: br#"{"schemaVersion":2,"config":{"digest":"sha256:abc"},"layers":[]}"#.to_vec(),
    };
    assert_eq!(manifest.config_digest().as_deref(), Some("sha256:abc"));
    let index = Manifest {
        body: br#"{"schemaVersion":2,"manifests":[]}"#.to_vec(),
        ..manifest
    };
    assert_eq!(index.config_digest(), None);
    assert_eq!(
        sha256_digest(b""),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}
