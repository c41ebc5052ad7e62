//! A client for the registry HTTP API (OCI distribution), as the docker CLI talks to it.
//!
//! Registries on loopback (`localhost`, `127.0.0.0/8`, `[::1]`) are spoken to over plain HTTP,
//! as the Docker Engine does; every other registry over HTTPS. Authentication follows the
//! registry's challenge: Basic with the stored username and password, or a Bearer token fetched
//! from the realm it names with those credentials.
//!
//! Manifests are read by tag or digest with every manifest type accepted (Docker schema 2 and
//! its list, OCI manifest and index); a manifest's digest is the registry's
//! `Docker-Content-Digest` header, else the sha256 of the bytes served. Transient faults
//! (connection refused or reset, EOF, timeouts, 5xx, 429) are retried with exponential backoff
//! and jitter, within a bounded number of attempts and an optional deadline ([`Retry`]); denials
//! (401, 403) fail at once.
//!
//! A registry is outside input, so the client bounds what it takes from one. The host is
//! checked before any request ([`shared::names::check_host`]). An ECR registry is only ever
//! answered with Basic authentication, as ECR itself asks: a Bearer challenge from it, whose
//! realm could be any host, gets no ECR token. Other credentials go to a token realm only over
//! HTTPS (plain HTTP only for a loopback registry) and only to a valid host. Bodies are read up
//! to a limit each (a manifest as distribution itself allows, 4 MiB), and no request outlives
//! the deadline.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue, LINK};
use reqwest::{Method, StatusCode};

use crate::retry::Retry;
use shared::error::{Error, Result, chain};
use shared::secret::Credentials;

pub use shared::media::MANIFEST_TYPES;

/// The largest manifest read or stored: distribution refuses larger ones too.
pub const MANIFEST_LIMIT: usize = 4 << 20;
/// The largest blob read into memory (image configurations: usually a few KiB).
pub const BLOB_LIMIT: usize = 16 << 20;
/// The largest page of a tag list.
const TAGS_PAGE_LIMIT: usize = 8 << 20;
/// The largest token answer.
pub(crate) const TOKEN_LIMIT: usize = 1 << 20;

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
    pub(crate) host: String,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) credentials: Option<Credentials>,
    /// The Authorization header that worked last for each token scope, reused until the
    /// registry refuses it.
    pub(crate) authorization: Mutex<HashMap<String, HeaderValue>>,
    /// How transient faults are retried.
    pub(crate) retry: Retry,
}

/// A manifest as the registry serves it.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Its digest (`sha256:...`): the `Docker-Content-Digest` header, else the body's sha256.
    pub digest: String,
    /// Its media type (the `Content-Type` header, else the body's `mediaType`).
    pub media_type: String,
    /// The bytes, exactly as served (the digest covers these).
    pub body: Vec<u8>,
}

impl Manifest {
    /// The digest of the image configuration of a single-platform manifest (the local image id
    /// of the image it describes); `None` for a manifest list or index.
    #[must_use]
    pub fn config_digest(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        value
            .get("config")?
            .get("digest")?
            .as_str()
            .map(str::to_owned)
    }
}

/// `sha256:<hex>` of `bytes`.
#[must_use]
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Runs `lookup` for each of `references` and returns the results in order: the first alone,
/// so that a token registry's token is fetched once and cached, then the rest concurrently, so
/// that a tool checking or verifying several tags waits for two round trips, not one per tag.
pub(crate) async fn each_reference<'a, T, F, Fut>(
    references: &'a [String],
    lookup: F,
) -> Result<Vec<T>>
where
    F: Fn(&'a str) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let Some((first, rest)) = references.split_first() else {
        return Ok(Vec::new());
    };
    let mut results = vec![lookup(first).await?];
    results.extend(futures_util::future::try_join_all(rest.iter().map(|r| lookup(r))).await?);
    Ok(results)
}

/// A request body: its content type and bytes.
pub(crate) type Body<'a> = Option<(&'a str, &'a [u8])>;

impl Registry {
    /// A client for the registry at `host` (`123456789012.dkr.ecr.us-east-1.amazonaws.com`,
    /// `127.0.0.1:5000`), retrying transient faults as [`Retry::default`] says.
    /// A host that is not valid ([`shared::names::check_host`]) is bad input.
    pub fn new(host: &str, credentials: Option<Credentials>) -> Result<Self> {
        shared::names::check_host(host)?;
        let scheme = if is_loopback(host) { "http" } else { "https" };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("imgpipe/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal(format!("building the HTTP client: {}", chain(&e))))?;
        Ok(Self {
            host: host.to_owned(),
            base: format!("{scheme}://{host}"),
            http,
            credentials,
            authorization: Mutex::new(HashMap::new()),
            retry: Retry::default(),
        })
    }

    /// Uses `retry` for every request.
    #[must_use]
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The registry's host.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether credentials were given.
    #[must_use]
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// Checks that the registry answers and accepts the credentials (`GET /v2/`).
    pub async fn ping(&self) -> Result<()> {
        let response = self
            .request(
                Method::GET,
                "/v2/",
                "",
                None,
                None,
                "checking the registry API",
            )
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self
                .status_error("checking the registry API", response)
                .await)
        }
    }

    /// The digest a tag or digest points at (`HEAD /v2/<repo>/manifests/<reference>`), or `None`
    /// when the registry has no such manifest. Falls back to a GET when the registry sends no
    /// `Docker-Content-Digest` header.
    pub async fn manifest_digest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<String>> {
        let action = format!("looking up {repository}:{reference}");
        let response = self
            .manifest_request(Method::HEAD, repository, reference, &action)
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => match content_digest(&response) {
                Some(digest) => Ok(Some(digest)),
                None => Ok(self
                    .manifest(repository, reference)
                    .await?
                    .map(|m| m.digest)),
            },
            _ => Err(self.status_error(&action, response).await),
        }
    }

    /// The digest each of `references` points at, as [`Self::manifest_digest`] says, in order.
    /// See [`each_reference`] for how the lookups run.
    pub async fn manifest_digests(
        &self,
        repository: &str,
        references: &[String],
    ) -> Result<Vec<Option<String>>> {
        each_reference(references, |reference| {
            self.manifest_digest(repository, reference)
        })
        .await
    }

    /// The manifest each of `references` points at, as [`Self::manifest`] says, in order. See
    /// [`each_reference`] for how the lookups run.
    pub async fn manifests(
        &self,
        repository: &str,
        references: &[String],
    ) -> Result<Vec<Option<Manifest>>> {
        each_reference(references, |reference| self.manifest(repository, reference)).await
    }

    /// The manifest a tag or digest points at (`GET`, accepting every manifest type in
    /// [`MANIFEST_TYPES`]), or `None` when there is none.
    pub async fn manifest(&self, repository: &str, reference: &str) -> Result<Option<Manifest>> {
        let action = format!("reading the manifest of {repository}:{reference}");
        let response = self
            .manifest_request(Method::GET, repository, reference, &action)
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                let header_digest = content_digest(&response);
                let header_type = response
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
                let body = self.read_body(response, MANIFEST_LIMIT, &action).await?;
                let media_type = header_type
                    .filter(|t| !t.is_empty() && t != "application/json")
                    .or_else(|| {
                        serde_json::from_slice::<serde_json::Value>(&body)
                            .ok()?
                            .get("mediaType")?
                            .as_str()
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                let digest = header_digest.unwrap_or_else(|| sha256_digest(&body));
                Ok(Some(Manifest {
                    digest,
                    media_type,
                    body,
                }))
            }
            _ => Err(self.status_error(&action, response).await),
        }
    }

    /// The repository's tags (`GET /v2/<repo>/tags/list`, following `Link` pages), or `None`
    /// when the registry does not know the repository.
    pub async fn tags(&self, repository: &str) -> Result<Option<Vec<String>>> {
        let action = format!("listing the tags of {repository}");
        let mut path = format!("/v2/{repository}/tags/list?n=1000");
        let mut tags = Vec::new();
        loop {
            let response = self
                .request(
                    Method::GET,
                    &path,
                    &pull_scope(repository),
                    None,
                    None,
                    &action,
                )
                .await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !response.status().is_success() {
                return Err(self.status_error(&action, response).await);
            }
            let next = response
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
                .filter(|link| same_tag_list(link, repository));
            let bytes = self.read_body(response, TAGS_PAGE_LIMIT, &action).await?;
            let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                Error::unavailable(format!(
                    "registry {}: {action}: the answer is not JSON: {e}",
                    self.host
                ))
            })?;
            if let Some(items) = body.get("tags").and_then(serde_json::Value::as_array) {
                tags.extend(items.iter().filter_map(|t| t.as_str().map(str::to_owned)));
            }
            match next {
                Some(link) => path = link,
                None => return Ok(Some(tags)),
            }
        }
    }

    /// A `HEAD` or `GET` of `/v2/<repo>/manifests/<reference>` accepting every manifest type in
    /// [`MANIFEST_TYPES`], with pull access.
    pub(crate) async fn manifest_request(
        &self,
        method: Method,
        repository: &str,
        reference: &str,
        action: &str,
    ) -> Result<reqwest::Response> {
        self.request(
            method,
            &format!("/v2/{repository}/manifests/{reference}"),
            &pull_scope(repository),
            Some(&MANIFEST_TYPES.join(", ")),
            None,
            action,
        )
        .await
    }

    /// The bytes of a blob (`GET /v2/<repo>/blobs/<digest>`), or `None` when the repository has
    /// no such blob. The bytes are checked against the digest (sha256 only): a blob that does
    /// not match is an error, never returned.
    pub async fn blob(&self, repository: &str, digest: &str) -> Result<Option<Vec<u8>>> {
        let action = format!("reading blob {digest} of {repository}");
        if !digest.starts_with("sha256:") {
            return Err(Error::data(format!(
                "{action}: only sha256 digests can be verified"
            )));
        }
        let response = self
            .request(
                Method::GET,
                &format!("/v2/{repository}/blobs/{digest}"),
                &pull_scope(repository),
                None,
                None,
                &action,
            )
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                let body = self.read_body(response, BLOB_LIMIT, &action).await?;
                let actual = sha256_digest(&body);
                if actual == digest {
                    Ok(Some(body))
                } else {
                    Err(Error::unavailable(format!(
                        "registry {}: {action}: the bytes served have digest {actual}",
                        self.host
                    ))
                    .with_hint(
                        "the registry's storage may be corrupt: try again, or push the image again",
                    ))
                }
            }
            _ => Err(self.status_error(&action, response).await),
        }
    }

    /// Whether the repository holds the blob (`HEAD /v2/<repo>/blobs/<digest>`).
    pub async fn blob_exists(&self, repository: &str, digest: &str) -> Result<bool> {
        let action = format!("looking up blob {digest} in {repository}");
        let response = self
            .request(
                Method::HEAD,
                &format!("/v2/{repository}/blobs/{digest}"),
                &pull_scope(repository),
                None,
                None,
                &action,
            )
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(false),
            status if status.is_success() => Ok(true),
            _ => Err(self.status_error(&action, response).await),
        }
    }

    /// Stores a manifest under a tag or its digest (`PUT /v2/<repo>/manifests/<reference>`) and
    /// returns its digest as the registry reports it (else the body's sha256).
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<String> {
        let action = format!("storing the manifest of {repository}:{reference}");
        if body.len() > MANIFEST_LIMIT {
            return Err(Error::data(format!(
                "{action}: the manifest has {} bytes, more than registries accept ({MANIFEST_LIMIT})",
                body.len()
            )));
        }
        let response = self
            .request(
                Method::PUT,
                &format!("/v2/{repository}/manifests/{reference}"),
                &format!("repository:{repository}:pull,push"),
                None,
                Some((media_type, body)),
                &action,
            )
            .await?;
        if response.status().is_success() {
            Ok(content_digest(&response).unwrap_or_else(|| sha256_digest(body)))
        } else {
            Err(self.status_error(&action, response).await)
        }
    }

    /// Checks that the registry answers and that the credentials may push to `repository`: for
    /// a token registry, a token with the push scope.
    pub async fn check_push_access(&self, repository: &str) -> Result<()> {
        let action = format!("checking access to {repository}");
        let response = self
            .request(
                Method::GET,
                "/v2/",
                &format!("repository:{repository}:pull,push"),
                None,
                None,
                &action,
            )
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(&action, response).await)
        }
    }

    /// Whether `repository` exists, i.e. has tags (a plain registry creates it on the first
    /// push).
    pub async fn repository_exists(&self, repository: &str) -> Result<bool> {
        Ok(self.tags(repository).await?.is_some())
    }
}

pub(crate) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

pub(crate) fn content_digest(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|d| shared::names::check_digest(d).is_ok())
        .map(str::to_owned)
}

/// Whether a next-page link stays on `repository`'s tag list: a registry may not lead the
/// client to another path (`..` segments included) with its credentials.
pub(crate) fn same_tag_list(link: &str, repository: &str) -> bool {
    let path = link.split('?').next().unwrap_or(link);
    path == format!("/v2/{repository}/tags/list") && !link.contains('#')
}

/// The path and query of a `Link: </v2/...?last=x&n=100>; rel="next"` header.
pub(crate) fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        if !params.contains("rel=\"next\"") && !params.contains("rel=next") {
            return None;
        }
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        // An absolute URL keeps only its path and query: we talk to our own base.
        let path = match target.find("://") {
            Some(i) => {
                let rest = &target[i + 3..];
                &rest[rest.find('/')?..]
            }
            None => target,
        };
        Some(path.to_owned())
    })
}
