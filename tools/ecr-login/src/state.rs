//! What ecr-login stored, kept beside Docker's config in `imgpipe-ecr-login.json`: for each
//! registry, a fingerprint of the credentials (never the credentials) and their expiry.
//!
//! `--logout` removes a registry's credentials only while they are still the ones ecr-login
//! stored (a later `docker login` is left alone), and `--check` reads the expiry of tokens whose
//! password does not carry one. Callers hold the config lock while changing this file.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use shared::Result;
use shared::secret::Credentials;

fn state_path(config: &Path) -> PathBuf {
    config.with_file_name("imgpipe-ecr-login.json")
}

/// A short, one-way fingerprint of credentials: enough to recognise them, useless to log in.
fn fingerprint(credentials: &Credentials) -> String {
    let digest = Sha256::digest(format!(
        "{}:{}",
        credentials.username,
        credentials.password.expose()
    ));
    hex::encode(&digest[..12])
}

fn load(config: &Path) -> Map<String, Value> {
    // A damaged state file only costs the expiry and the logout check: start afresh.
    shared::files::read_regular(
        &state_path(config),
        shared::files::STATE_LIMIT,
        "state file",
    )
    .ok()
    .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
    .and_then(|v| v.get("registries").and_then(Value::as_object).cloned())
    .unwrap_or_default()
}

fn save(config: &Path, registries: &Map<String, Value>) -> Result<()> {
    let text = serde_json::to_vec_pretty(&json!({ "registries": registries }))
        .map_err(|e| shared::Error::internal(e.to_string()))?;
    // Saved under the config's lock, as every change of the config.
    shared::files::write_secret_locked(&state_path(config), &text)
}

/// Notes that ecr-login stored `credentials` for `host`.
pub fn record(
    config: &Path,
    host: &str,
    credentials: &Credentials,
    expires_at: Option<DateTime<Utc>>,
) -> Result<()> {
    let mut registries = load(config);
    registries.insert(
        host.to_owned(),
        json!({
            "fingerprint": fingerprint(credentials),
            "expires_at": expires_at.map(|t| t.to_rfc3339()),
        }),
    );
    save(config, &registries)
}

/// Whether `credentials` for `host` are the ones ecr-login stored.
pub fn is_ours(config: &Path, host: &str, credentials: &Credentials) -> bool {
    load(config)
        .get(host)
        .and_then(|entry| entry.get("fingerprint"))
        .and_then(Value::as_str)
        .is_some_and(|f| f == fingerprint(credentials))
}

/// The expiry ecr-login noted for `host`, if `credentials` are the ones it stored.
pub fn expiry(config: &Path, host: &str, credentials: &Credentials) -> Option<DateTime<Utc>> {
    if !is_ours(config, host, credentials) {
        return None;
    }
    load(config)
        .get(host)?
        .get("expires_at")?
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Forgets `host`.
pub fn forget(config: &Path, host: &str) -> Result<()> {
    let mut registries = load(config);
    if registries.shift_remove(host).is_some() {
        save(config, &registries)?;
    }
    Ok(())
}
