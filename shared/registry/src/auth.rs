//! Authentication as a registry asks for it: Basic, or a Bearer token from the realm its
//! challenge names, under the rules that keep credentials on the host they are for.

use reqwest::StatusCode;
use reqwest::header::HeaderValue;

use shared::error::{Error, Result};
use shared::secret::Credentials;

use crate::Registry;
use crate::client::{TOKEN_LIMIT, is_loopback};

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
    pub(crate) async fn bearer_token(
        &self,
        challenge: &Challenge,
        credentials: &Credentials,
        scope: &str,
    ) -> Result<HeaderValue> {
        if is_ecr_credentials(&self.host, credentials) {
            return Err(Error::no_perm(format!(
                "registry {} asked for a Bearer token from '{}'; ECR registries use Basic \
                 authentication, so the ECR token was not sent",
                self.host,
                shared::names::quote(challenge.param("realm").unwrap_or_default())
            ))
            .with_hint("check that the registry host really is ECR's (DNS, proxies, /etc/hosts)"));
        }
        let realm = challenge.param("realm").ok_or_else(|| {
            Error::unavailable(format!(
                "registry {} asked for a bearer token without naming where to get it",
                self.host
            ))
        })?;
        let realm = self.check_realm(realm)?;
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
            .timeout(self.time_left()?)
            .basic_auth(&credentials.username, Some(credentials.password.expose()))
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(refused(&self.host, credentials));
        }
        if !response.status().is_success() {
            return Err(self.status_error("getting a token", response).await);
        }
        let bytes = self
            .read_body(response, TOKEN_LIMIT, "getting a token")
            .await?;
        let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::unavailable(format!(
                "registry {}: the token answer is not JSON: {e}",
                self.host
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

    /// Checks a token realm before credentials go there: an http(s) URL without user
    /// information on a valid host, HTTPS unless the registry itself is a loopback one.
    pub(crate) fn check_realm(&self, realm: &str) -> Result<reqwest::Url> {
        let bad = |why: &str| {
            Error::unavailable(format!(
                "registry {} named a token realm '{}' that {why}: the credentials were not sent",
                self.host,
                shared::names::quote(realm)
            ))
        };
        let url = reqwest::Url::parse(realm).map_err(|_| bad("is not a URL"))?;
        let plain_ok = is_loopback(&self.host);
        match url.scheme() {
            "https" => {}
            "http" if plain_ok => {}
            _ => return Err(bad("is not an https URL")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("has user information"));
        }
        let authority = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return Err(bad("names no host")),
        };
        if shared::names::check_host(&authority).is_err() {
            return Err(bad("names no valid host"));
        }
        Ok(url)
    }
}

/// Whether `credentials` for `host` are ECR's: the host is an ECR registry, or the password is
/// an ECR token (it carries ECR's expiry). These are sent with Basic authentication only.
pub(crate) fn is_ecr_credentials(host: &str, credentials: &Credentials) -> bool {
    shared::ecr::parse_host(host).is_some()
        || shared::ecr::password_expiry(&credentials.password).is_some()
}

pub(crate) fn refused(host: &str, credentials: &Credentials) -> Error {
    Error::no_perm(format!(
        "registry {host} refused the credentials of user {}",
        credentials.username
    ))
    .with_hint("they may have expired (ECR tokens last 12 hours): run ecr-login again")
}

pub(crate) fn basic(credentials: &Credentials) -> Result<HeaderValue> {
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
