//! A client for the registry HTTP API (OCI distribution), as the docker CLI talks to it.
//!
//! Registries on loopback (`localhost`, `127.0.0.0/8`, `[::1]`) are spoken to over plain HTTP,
//! as the Docker Engine does; every other registry over HTTPS. Authentication follows the
//! registry's challenge: Basic with the stored username and password, or a Bearer token fetched
//! from the realm it names with those credentials.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};

use crate::error::{Error, Result, chain};
use crate::secret::Secret;

/// A username and password for a registry.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The username (`AWS` for ECR).
    pub username: String,
    /// The password or token.
    pub password: Secret,
}

/// Whether `host` (with or without a port) is a loopback address the Docker Engine treats as
/// an insecure registry.
#[must_use]
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name == "localhost"
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A registry and how to reach it.
#[derive(Debug)]
pub struct Registry {
    host: String,
    base: String,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    /// The Authorization header that worked last, reused until the registry refuses it.
    authorization: Mutex<Option<HeaderValue>>,
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer`, lowercased.
    pub scheme: String,
    /// The parameters (`realm`, `service`, `scope`), names lowercased.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// Parses a header value such as `Bearer realm="https://auth",service="registry"`.
    #[must_use]
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        let mut rest = rest.trim_start();
        while !rest.is_empty() {
            let (name, after) = rest.split_once('=')?;
            let name = name
                .trim()
                .trim_start_matches(',')
                .trim()
                .to_ascii_lowercase();
            let after = after.trim_start();
            let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        _ => value.push(c),
                    }
                }
                (value, &quoted[end?..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            };
            params.push((name, value));
            rest = remaining.trim_start().trim_start_matches(',').trim_start();
        }
        Some(Self {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }

    /// A parameter's value.
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Registry {
    /// A client for the registry at `host` (`123456789012.dkr.ecr.us-east-1.amazonaws.com`,
    /// `127.0.0.1:5000`).
    pub fn new(host: &str, credentials: Option<Credentials>) -> Result<Self> {
        let scheme = if is_loopback(host) { "http" } else { "https" };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("imgpipe/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal(format!("building the HTTP client: {}", chain(&e))))?;
        Ok(Self {
            host: host.to_owned(),
            base: format!("{scheme}://{host}"),
            http,
            credentials,
            authorization: Mutex::new(None),
        })
    }

    /// The registry's host.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Checks that the registry answers and accepts the credentials (`GET /v2/`).
    pub async fn ping(&self) -> Result<()> {
        let response = self.get("/v2/", "").await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error("checking the registry API", response.status()))
        }
    }

    /// Sends a GET for `path`, answering an authentication challenge once. `scope` is the token
    /// scope to ask for (`repository:my-app:pull`), empty for none.
    async fn get(&self, path: &str, scope: &str) -> Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let cached = self.lock_authorization().clone();
        let response = self.send(&url, cached.as_ref()).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let header = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let Some(credentials) = &self.credentials else {
            return Err(Error::no_perm(format!(
                "registry {} requires credentials and none were found",
                self.host
            ))
            .with_hint(format!("log in first: ecr-login --registry {}", self.host)));
        };
        let authorization = match Challenge::parse(&header) {
            Some(challenge) if challenge.scheme == "bearer" => {
                self.bearer_token(&challenge, credentials, scope).await?
            }
            _ => basic(credentials)?,
        };
        let response = self.send(&url, Some(&authorization)).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(Error::no_perm(format!(
                "registry {} refused the credentials of user {}",
                self.host, credentials.username
            ))
            .with_hint("they may have expired (ECR tokens last 12 hours): run ecr-login again"));
        }
        *self.lock_authorization() = Some(authorization);
        Ok(response)
    }

    fn lock_authorization(&self) -> std::sync::MutexGuard<'_, Option<HeaderValue>> {
        self.authorization
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn send(
        &self,
        url: &str,
        authorization: Option<&HeaderValue>,
    ) -> Result<reqwest::Response> {
        let mut request = self.http.get(url);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value.clone());
        }
        request.send().await.map_err(|e| self.transport_error(&e))
    }

    async fn bearer_token(
        &self,
        challenge: &Challenge,
        credentials: &Credentials,
        scope: &str,
    ) -> Result<HeaderValue> {
        let realm = challenge.param("realm").ok_or_else(|| {
            Error::unavailable(format!(
                "registry {} asked for a bearer token without naming where to get it",
                self.host
            ))
        })?;
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = challenge.param("service") {
            query.push(("service", service));
        }
        let scope = if scope.is_empty() {
            challenge.param("scope").unwrap_or_default()
        } else {
            scope
        };
        if !scope.is_empty() {
            query.push(("scope", scope));
        }
        let response = self
            .http
            .get(realm)
            .query(&query)
            .basic_auth(&credentials.username, Some(credentials.password.expose()))
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        if !response.status().is_success() {
            return Err(self.status_error("getting a token", response.status()));
        }
        let body: serde_json::Value = response.json().await.map_err(|e| {
            Error::unavailable(format!(
                "registry {}: the token answer could not be read: {}",
                self.host,
                chain(&e)
            ))
        })?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| {
                Error::unavailable(format!(
                    "registry {}: the token answer has no token",
                    self.host
                ))
            })?;
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            Error::unavailable(format!(
                "registry {}: the token is not a valid header value",
                self.host
            ))
        })?;
        value.set_sensitive(true);
        Ok(value)
    }

    fn transport_error(&self, err: &reqwest::Error) -> Error {
        let detail = chain(err);
        if err.is_timeout() {
            Error::timeout(format!(
                "registry {} did not answer in time ({detail})",
                self.host
            ))
        } else {
            Error::unavailable(format!("cannot reach registry {} ({detail})", self.host)).with_hint(
                "check the registry host name, the network and that the registry is running",
            )
        }
    }

    fn status_error(&self, action: &str, status: StatusCode) -> Error {
        let text = format!("registry {}: {action}: HTTP {status}", self.host);
        match status.as_u16() {
            401 | 403 => Error::no_perm(text),
            408 | 429 | 500..=599 => Error::unavailable(text),
            _ => Error::data(text),
        }
    }
}

fn basic(credentials: &Credentials) -> Result<HeaderValue> {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        credentials.username,
        credentials.password.expose()
    ));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| Error::internal("a base64 header value was not ASCII"))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
