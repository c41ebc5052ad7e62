//! The shared clients against the real services: the Docker Engine and both registries.
//! (The AWS client is exercised through the tools, against the ECR API server.)

use docker::Engine;
use registry::Registry;
use shared::secret::Credentials;
use shared::secret::Secret;

use crate::harness::service;

#[tokio::test]
async fn docker_engine_answers_and_negotiates_a_version() {
    let engine = Engine::connect_to(&service("DOCKER_HOST")).await.unwrap();
    engine.ping().await.unwrap();
    let (version, api) = engine.version().await.unwrap();
    let major: u32 = version.split('.').next().unwrap().parse().unwrap();
    assert!(major >= 20, "engine {version}");
    assert!(api.starts_with("1."), "api {api}");
}

#[tokio::test]
async fn a_missing_docker_daemon_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let host = format!("unix://{}/docker.sock", dir.path().display());
    let err = Engine::connect_to(&host).await.unwrap_err();
    assert_eq!(err.code(), shared::exit::UNAVAILABLE);
    let text = err.to_string();
    assert!(
        text.contains(&format!("no Docker daemon answers at {host}")),
        "{text}"
    );
    assert!(text.contains("privileged mode"), "{text}");
    assert_eq!(text.lines().count(), 1);
}

#[tokio::test]
async fn the_plain_registry_answers_the_v2_api() {
    Registry::new(&service("IMGPIPE_REGISTRY"), None)
        .unwrap()
        .ping()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_auth_registry_wants_the_right_credentials() {
    let host = service("IMGPIPE_AUTH_REGISTRY");
    let password = service("IMGPIPE_AUTH_REGISTRY_PASSWORD");
    let user = service("IMGPIPE_AUTH_REGISTRY_USER");

    let err = Registry::new(&host, None)
        .unwrap()
        .ping()
        .await
        .unwrap_err();
    assert_eq!(err.code(), shared::exit::NO_PERM);
    assert!(err.to_string().contains("requires credentials"), "{err}");

    let wrong = Credentials {
        username: user.clone(),
        password: Secret::new("not-the-password"),
    };
    let err = Registry::new(&host, Some(wrong))
        .unwrap()
        .ping()
        .await
        .unwrap_err();
    assert_eq!(err.code(), shared::exit::NO_PERM);
    assert!(
        err.to_string()
            .contains(&format!("refused the credentials of user {user}")),
        "{err}"
    );
    assert!(!err.to_string().contains("not-the-password"));

    let right = Credentials {
        username: user,
        password: Secret::new(password),
    };
    Registry::new(&host, Some(right))
        .unwrap()
        .ping()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_registry_that_is_not_there_is_unavailable() {
    // Bind a port, then free it: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = Registry::new(&format!("127.0.0.1:{port}"), None)
        .unwrap()
        .ping()
        .await
        .unwrap_err();
    assert_eq!(err.code(), shared::exit::UNAVAILABLE);
    assert!(
        err.to_string()
            .contains(&format!("cannot reach registry 127.0.0.1:{port}")),
        "{err}"
    );
}
