//! The Docker Engine client: where the daemon is, and one clear line when it does not answer.
//!
//! The daemon's address comes from `DOCKER_HOST` as the docker CLI reads it: `unix://PATH`
//! (the default is `/var/run/docker.sock`), `tcp://HOST:PORT` or `http://`, and TLS with
//! `DOCKER_TLS_VERIFY` and the certificates in `DOCKER_CERT_PATH`. The API version is negotiated,
//! so Engine 20.10 and newer both work.

pub mod live;

use std::time::Duration;

use bollard::Docker;

use shared::error::{Error, Result, chain};
use shared::secret::Credentials;

/// The daemon address used when `DOCKER_HOST` is unset.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// How long to wait for the daemon to answer the first request.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one API request may take: builds and pushes stream for a long time.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(6 * 60 * 60);

/// A connected Docker Engine, with its address for messages.
#[derive(Clone, Debug)]
pub struct Engine {
    /// The API client, at the negotiated version.
    pub client: Docker,
    /// The address the client talks to (`unix:///var/run/docker.sock`).
    pub host: String,
}

/// The daemon address from `DOCKER_HOST`, or the default socket.
#[must_use]
pub fn host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_owned())
}

fn unreachable(host: &str, detail: &str) -> Error {
    Error::unavailable(format!("no Docker daemon answers at {host} ({detail})")).with_hint(
        "start dockerd or set DOCKER_HOST; in CodeBuild, turn on privileged mode for the project",
    )
}

impl Engine {
    /// Connects to the daemon at `DOCKER_HOST` (see [`host`]).
    pub async fn connect() -> Result<Self> {
        Self::connect_to(&host()).await
    }

    /// Connects to the daemon at `host`, negotiates the API version and checks that it answers.
    pub async fn connect_to(host: &str) -> Result<Self> {
        let host = host.to_owned();
        if let Some(path) = host.strip_prefix("unix://")
            && !std::path::Path::new(path).exists()
        {
            return Err(unreachable(&host, "the socket does not exist"));
        }
        let client = Docker::connect_with_host(&host)
            .map_err(|e| {
                Error::config(format!("cannot use DOCKER_HOST={host}: {}", chain(&e))).with_hint(
                    "DOCKER_HOST takes unix:///path/to/docker.sock, tcp://host:port or https://host:port",
                )
            })?
            .with_timeout(PING_TIMEOUT);
        let client = match tokio::time::timeout(PING_TIMEOUT, client.negotiate_version()).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(unreachable(&host, &chain(&e))),
            Err(_) => return Err(unreachable(&host, "no answer within 10 s")),
        };
        Ok(Self {
            client: client.with_timeout(REQUEST_TIMEOUT),
            host,
        })
    }

    /// Asks the daemon whether it is alive (`GET /_ping`).
    pub async fn ping(&self) -> Result<()> {
        match tokio::time::timeout(PING_TIMEOUT, self.client.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unreachable(&self.host, &chain(&e))),
            Err(_) => Err(unreachable(&self.host, "no answer within 10 s")),
        }
    }

    /// The daemon's version string (`20.10.24`), and the API version in use.
    pub async fn version(&self) -> Result<(String, String)> {
        let version = self
            .client
            .version()
            .await
            .map_err(|e| unreachable(&self.host, &chain(&e)))?;
        Ok((
            version.version.unwrap_or_default(),
            self.client.client_version().to_string(),
        ))
    }
}

/// The `X-Registry-Auth` header value for `credentials` at registry `server`: the JSON of Docker's
/// AuthConfig in base64url with padding (RFC 4648 section 5), which is what the daemon decodes.
/// An empty config (`{}`) when there are no credentials.
///
/// bollard 0.21 encodes this header with the standard alphabet (`+`, `/`); the daemon then fails
/// to decode it and silently pushes without credentials whenever the encoding holds one of
/// those characters, as ECR tokens routinely do. [`Engine::with_registry_auth`] sends this value
/// instead.
#[must_use]
pub fn registry_auth_header(credentials: Option<&Credentials>, server: &str) -> String {
    use base64::Engine as _;
    let json = match credentials {
        Some(c) => serde_json::json!({
            "username": c.username,
            "password": c.password.expose(),
            "serveraddress": server,
        }),
        None => serde_json::json!({}),
    };
    base64::engine::general_purpose::URL_SAFE.encode(json.to_string())
}

impl Engine {
    /// A client for the same daemon that sends `header` (see [`registry_auth_header`]) as the
    /// `X-Registry-Auth` header of every request that carries one (push, pull), in place of the
    /// value bollard computes.
    #[must_use]
    pub fn with_registry_auth(&self, header: &str) -> Docker {
        let mut value = http::HeaderValue::from_str(header)
            .unwrap_or_else(|_| http::HeaderValue::from_static("e30="));
        value.set_sensitive(true);
        self.client
            .clone()
            .with_request_modifier(move |mut request| {
                if request.headers().contains_key("x-registry-auth") {
                    request
                        .headers_mut()
                        .insert("x-registry-auth", value.clone());
                }
                request
            })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use shared::secret::Secret;

    #[test]
    fn registry_auth_is_base64url_with_padding() {
        // "???" and "~~~" give '/' and '+' in standard base64 at any alignment.
        let credentials = Credentials {
            username: "special".into(),
            password: Secret::new("Sp3cial-???~~~"),
        };
        let header = registry_auth_header(Some(&credentials), "127.0.0.1:5001");
        assert!(!header.contains('+') && !header.contains('/'), "{header}");
        let standard = base64::engine::general_purpose::STANDARD.encode(
            base64::engine::general_purpose::URL_SAFE
                .decode(&header)
                .unwrap(),
        );
        assert!(standard.contains('+') || standard.contains('/'));
        let decoded: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE
                .decode(&header)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(decoded["username"], "special");
        assert_eq!(decoded["password"], "Sp3cial-???~~~");
        assert_eq!(decoded["serveraddress"], "127.0.0.1:5001");
        assert_eq!(registry_auth_header(None, "x"), "e30=");
    }
}
