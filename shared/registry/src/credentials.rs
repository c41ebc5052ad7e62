//! Registry credentials for a tool that talks to a registry (img-push, and any tool after it):
//! where Docker would find them, else straight from ECR.
//!
//! The order is Docker's own: a `credHelpers` entry for the host, the `credsStore` helper, the
//! `auths` of config.json (see [`crate::dockerconfig`]). When nothing is stored and the host is an
//! ECR registry, a token comes from GetAuthorizationToken, as the Amazon ECR credential helper
//! would fetch it. Stored ECR passwords carry their expiry: an expired one is named as such
//! instead of being sent to be refused.

use chrono::{DateTime, Utc};

use crate::dockerconfig::{DockerConfig, Store};
use aws::{Aws, AwsArgs};
use shared::error::{Error, Result};
use shared::secret::Credentials;

use crate::{Registry, Retry};

/// A client for the registry at `host` with the credentials [`lookup`] finds (said with -v),
/// retrying as `retry` says; and what the lookup found, for callers that need the credentials
/// again (the Docker Engine's push) or say where they came from.
pub async fn registry(host: &str, aws: &AwsArgs, retry: Retry) -> Result<(Registry, Found)> {
    let found = lookup(host, aws).await?;
    shared::verbose!("credentials for {host}: {}", found.source);
    let registry = Registry::new(host, found.credentials.clone())?.with_retry(retry);
    Ok((registry, found))
}

/// Where credentials were found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Stored for Docker (config.json or a credential helper).
    Stored(Store),
    /// Fetched from ECR's GetAuthorizationToken just now.
    Ecr,
    /// Nowhere: the registry is used anonymously.
    Anonymous,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Stored(store) => write!(f, "{store}"),
            Source::Ecr => f.write_str("ECR GetAuthorizationToken"),
            Source::Anonymous => f.write_str("no credentials"),
        }
    }
}

/// Credentials for a registry and where they came from.
#[derive(Clone, Debug)]
pub struct Found {
    /// The credentials, if any.
    pub credentials: Option<Credentials>,
    /// Where they came from.
    pub source: Source,
}

/// The verdict on stored credentials' expiry, at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Nothing is known about the expiry (not an ECR password).
    Unknown,
    /// Still valid.
    Valid(DateTime<Utc>),
    /// Expired at that time.
    Expired(DateTime<Utc>),
}

/// Whether `credentials` (an ECR password carries its expiry) have expired at `now`.
#[must_use]
pub fn expiry(credentials: &Credentials, now: DateTime<Utc>) -> Expiry {
    match shared::ecr::password_expiry(&credentials.password) {
        Some(at) if at <= now => Expiry::Expired(at),
        Some(at) => Expiry::Valid(at),
        None => Expiry::Unknown,
    }
}

/// The credentials for `host`: stored ones as Docker finds them, else (for an ECR host) a fresh
/// token from ECR, else none. Stored ECR credentials that have expired are replaced by a fresh
/// token for an ECR host, and are an error ([`shared::exit::NO_PERM`]) for any other.
///
/// `host` is checked first ([`shared::names::check_host`]): nothing is looked up or fetched for
/// a name that is not a registry host.
pub async fn lookup(host: &str, aws: &AwsArgs) -> Result<Found> {
    shared::names::check_host(host)?;
    let config = DockerConfig::load()?;
    let stored = config.credentials(host)?;
    let ecr = shared::ecr::parse_host(host);
    if let Some(credentials) = stored {
        match expiry(&credentials, Utc::now()) {
            Expiry::Expired(at) if ecr.is_none() => {
                return Err(Error::no_perm(format!(
                    "the credentials stored for {host} ({}) expired at {}",
                    config.store_for(host),
                    at.format("%Y-%m-%d %H:%M:%S UTC")
                ))
                .with_hint(format!("log in again: ecr-login --registry {host}")));
            }
            Expiry::Expired(at) => {
                shared::warn!(
                    "the credentials stored for {host} expired at {}: getting a fresh token from ECR",
                    at.format("%Y-%m-%d %H:%M:%S UTC")
                );
            }
            Expiry::Valid(_) | Expiry::Unknown => {
                return Ok(Found {
                    credentials: Some(credentials),
                    source: Source::Stored(config.store_for(host)),
                });
            }
        }
    }
    let Some(ecr) = ecr else {
        return Ok(Found {
            credentials: None,
            source: Source::Anonymous,
        });
    };
    let mut args = aws.clone();
    if args.region.is_none() {
        args.region = Some(ecr.region.clone());
    }
    let aws = Aws::load(&args).await?;
    let token = aws::ecr::authorization_token(&aws, Some(&ecr.account)).await?;
    Ok(Found {
        credentials: Some(token.credentials),
        source: Source::Ecr,
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use shared::secret::Secret;

    #[test]
    fn ecr_passwords_carry_their_expiry() {
        let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let ecr = |seconds: i64| Credentials {
            username: "AWS".into(),
            password: Secret::new(
                base64::engine::general_purpose::STANDARD
                    .encode(format!(r#"{{"payload":"x","expiration":{seconds}}}"#)),
            ),
        };
        let cases = [
            (
                ecr(1_700_000_100),
                Expiry::Valid(now + chrono::Duration::seconds(100)),
            ),
            (
                ecr(1_699_999_000),
                Expiry::Expired(now - chrono::Duration::seconds(1000)),
            ),
            (ecr(1_700_000_000), Expiry::Expired(now)),
            (
                Credentials {
                    username: "u".into(),
                    password: Secret::new("plain password"),
                },
                Expiry::Unknown,
            ),
        ];
        for (credentials, verdict) in cases {
            assert_eq!(expiry(&credentials, now), verdict);
        }
    }
}
