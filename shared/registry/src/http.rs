//! One request to a registry: the credentials its challenge asks for, a timeout within the
//! deadline, retries of transient faults, a bounded body and an error that says what the
//! registry said. [`crate::Registry`]'s operations are built on it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use crate::auth::{Challenge, basic, refused};
use crate::client::{Body, Registry};
use shared::error::{Error, Result, chain};

/// The most of an error answer read to say what the registry said.
const ERROR_BODY_LIMIT: usize = 64 << 10;
/// The longest a single request may take when no deadline is nearer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

impl Registry {
    /// Sends one request, retrying transient faults as the [`Retry`] says. Answers other than
    /// 401, 403, 408, 429 and 5xx are returned for the caller to judge.
    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        accept: Option<&str>,
        body: Body<'_>,
        action: &str,
    ) -> Result<reqwest::Response> {
        let what = format!("registry {}: {action}", self.host);
        self.retry
            .run(&what, |_| async {
                let response = self
                    .attempt(method.clone(), path, scope, accept, body)
                    .await?;
                let status = response.status();
                if status == StatusCode::FORBIDDEN
                    || status == StatusCode::REQUEST_TIMEOUT
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status.is_server_error()
                {
                    return Err(self.status_error(action, response).await);
                }
                Ok(response)
            })
            .await
    }

    /// One request, answering an authentication challenge once.
    pub(crate) async fn attempt(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        accept: Option<&str>,
        body: Body<'_>,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let cached = self.lock_authorization().get(scope).cloned();
        let response = self
            .send(method.clone(), &url, cached.as_ref(), accept, body)
            .await?;
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
        let response = self
            .send(method, &url, Some(&authorization), accept, body)
            .await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(refused(&self.host, credentials));
        }
        self.lock_authorization()
            .insert(scope.to_owned(), authorization);
        Ok(response)
    }

    pub(crate) fn lock_authorization(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, HeaderValue>> {
        self.authorization
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        authorization: Option<&HeaderValue>,
        accept: Option<&str>,
        body: Body<'_>,
    ) -> Result<reqwest::Response> {
        let mut request = self.http.request(method, url).timeout(self.time_left()?);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value.clone());
        }
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        if let Some((content_type, bytes)) = body {
            request = request
                .header(CONTENT_TYPE, content_type)
                .body(bytes.to_vec());
        }
        request.send().await.map_err(|e| self.transport_error(&e))
    }

    /// How long the next request may take: [`REQUEST_TIMEOUT`], or what is left of the
    /// deadline if that is less. A deadline already passed is a timeout.
    pub(crate) fn time_left(&self) -> Result<Duration> {
        let Some(deadline) = self.retry.deadline else {
            return Ok(REQUEST_TIMEOUT);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::timeout(format!(
                "registry {}: the deadline passed before the request could be sent",
                self.host
            )));
        }
        Ok(left.min(REQUEST_TIMEOUT))
    }

    /// Reads a response's body, refusing one longer than `limit` bytes (as it arrives, so an
    /// endless body costs at most `limit`).
    pub(crate) async fn read_body(
        &self,
        mut response: reqwest::Response,
        limit: usize,
        action: &str,
    ) -> Result<Vec<u8>> {
        let too_long = || {
            Error::unavailable(format!(
                "registry {}: {action}: the answer is longer than {limit} bytes",
                self.host
            ))
            .with_hint("the registry is misbehaving, or is not a registry")
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_long());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_long());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    pub(crate) fn transport_error(&self, err: &reqwest::Error) -> Error {
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

    /// An error for an unexpected answer, with what the registry said about it.
    pub(crate) async fn status_error(&self, action: &str, response: reqwest::Response) -> Error {
        let status = response.status();
        let said = self
            .read_body(response, ERROR_BODY_LIMIT, action)
            .await
            .ok()
            .and_then(|body| registry_said(&body));
        let text = match said {
            Some(said) => format!("registry {}: {action}: HTTP {status}: {said}", self.host),
            None => format!("registry {}: {action}: HTTP {status}", self.host),
        };
        match status.as_u16() {
            401 | 403 => Error::no_perm(text)
                .with_hint("check that the credentials may push to and pull from this repository"),
            408 | 429 | 500..=599 => Error::unavailable(text),
            _ => Error::data(text),
        }
    }
}

/// What a registry's error body says (`{"errors":[{"code":..,"message":..}]}`), on one line.
#[must_use]
pub fn registry_said(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let errors = value.get("errors")?.as_array()?;
    let parts: Vec<String> = errors
        .iter()
        .map(|e| {
            let code = e
                .get("code")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("");
            let message = e
                .get("message")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("");
            match (code.is_empty(), message.is_empty()) {
                (false, false) => format!("{code}: {message}"),
                (false, true) => code.to_owned(),
                _ => message.to_owned(),
            }
        })
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(shared::cli::one_line(&parts.join("; ")))
    }
}
