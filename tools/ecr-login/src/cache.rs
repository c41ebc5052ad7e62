//! The credential helper's token cache: one ECR token per caller identity and region, kept in
//! `$XDG_CACHE_HOME/imgpipe/ecr-login` (default `~/.cache/...`), files 0600 in a 0700 directory.
//!
//! Keyed by the caller's identity as STS names it (an assumed role without its session name),
//! not by access key, so every session of a CI role shares one token. A token is used until half
//! its life has passed, then refreshed; entries are written atomically under a lock.

use std::path::{Path, PathBuf};

use aws::ecr::Token;
use chrono::{DateTime, Duration, Utc};
use registry::dockerconfig::ensure_private_dir;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::secret::Credentials;
use shared::secret::Secret;
use shared::{Error, Result};

/// How long an ECR token lives when its stated expiry makes no sense (in the past at issue).
const DEFAULT_LIFE: i64 = 12 * 60 * 60;

/// The cache directory, if a home or cache directory is known.
#[must_use]
pub fn dir() -> Option<PathBuf> {
    shared::files::cache_dir("ecr-login")
}

/// The key the cache is kept under for the caller of `aws`: its identity as STS names it, or,
/// when STS cannot be asked (a VPC with ECR endpoints only), its access key id. The error STS
/// gave is returned too, for a hint should ECR fail as well.
pub async fn key(aws: &aws::Aws) -> Result<(String, Option<Error>)> {
    match aws.caller_identity().await {
        Ok(identity) => Ok((identity, None)),
        Err(sts) => {
            let key = aws
                .access_key_id()
                .await
                .map_err(|e| e.with_hint(format!("STS failed as well: {}", sts.message())))?;
            Ok((format!("access key {key}"), Some(sts)))
        }
    }
}

fn entry_path(dir: &Path, identity: &str, region: &str) -> PathBuf {
    let key = hex::encode(&Sha256::digest(format!("{identity}\n{region}"))[..16]);
    dir.join(format!("{key}.json"))
}

/// A cached token that is still in the first half of its life.
pub fn get(dir: &Path, identity: &str, region: &str, now: DateTime<Utc>) -> Option<Token> {
    let path = entry_path(dir, identity, region);
    let text =
        shared::files::read_regular(&path, shared::files::STATE_LIMIT, "token cache").ok()?;
    let value: Value = serde_json::from_slice(&text).ok()?;
    let time = |name: &str| {
        value
            .get(name)?
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let fetched = time("fetched_at")?;
    let valid_until = time("valid_until")?;
    if now < fetched || now >= fetched + (valid_until - fetched) / 2 {
        return None;
    }
    Some(Token {
        credentials: Credentials {
            username: value.get("username")?.as_str()?.to_owned(),
            password: Secret::new(value.get("password")?.as_str()?),
        },
        expires_at: time("expires_at"),
        registry: value.get("registry")?.as_str()?.to_owned(),
    })
}

/// Stores `token`, fetched at `now`, for `identity` in `region`.
pub fn put(
    dir: &Path,
    identity: &str,
    region: &str,
    token: &Token,
    now: DateTime<Utc>,
) -> Result<()> {
    ensure_private_dir(dir)?;
    let path = entry_path(dir, identity, region);
    let _lock = shared::files::lock(&path.with_extension("lock"))?;
    let valid_until = token
        .expires_at
        .filter(|t| *t > now)
        .unwrap_or(now + Duration::seconds(DEFAULT_LIFE));
    let entry = json!({
        "identity": identity,
        "region": region,
        "registry": token.registry,
        "username": token.credentials.username,
        "password": token.credentials.password.expose(),
        "expires_at": token.expires_at.map(|t| t.to_rfc3339()),
        "fetched_at": now.to_rfc3339(),
        "valid_until": valid_until.to_rfc3339(),
    });
    shared::files::write_secret_locked(&path, entry.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_at: Option<DateTime<Utc>>) -> Token {
        Token {
            credentials: Credentials {
                username: "AWS".into(),
                password: Secret::new("pw"),
            },
            expires_at,
            registry: "123456789012.dkr.ecr.us-east-1.amazonaws.com".into(),
        }
    }

    #[test]
    fn tokens_are_reused_for_half_their_life() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        put(
            dir.path(),
            "arn:role",
            "us-east-1",
            &token(Some(now + Duration::hours(12))),
            now,
        )
        .unwrap();
        let hit = get(
            dir.path(),
            "arn:role",
            "us-east-1",
            now + Duration::hours(5),
        )
        .unwrap();
        assert_eq!(hit.credentials.password.expose(), "pw");
        assert!(
            get(
                dir.path(),
                "arn:role",
                "us-east-1",
                now + Duration::hours(7)
            )
            .is_none()
        );
        assert!(
            get(dir.path(), "arn:other", "us-east-1", now).is_none(),
            "per identity"
        );
        assert!(
            get(dir.path(), "arn:role", "eu-west-1", now).is_none(),
            "per region"
        );
    }

    #[test]
    fn a_nonsensical_expiry_gets_the_default_life() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let past = DateTime::parse_from_rfc3339("2015-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        put(dir.path(), "arn:role", "us-east-1", &token(Some(past)), now).unwrap();
        assert!(
            get(
                dir.path(),
                "arn:role",
                "us-east-1",
                now + Duration::hours(5)
            )
            .is_some()
        );
    }
}
