//! Registry credentials where Docker keeps them: `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`), its `auths`, and the credential helpers it names.
//!
//! Lookup and storage follow the docker CLI: a `credHelpers` entry for the host wins, then the
//! `credsStore` helper, then the file's `auths`. Writing keeps every other entry and every key we
//! do not know, holds an exclusive lock so concurrent writers do not lose each other's entries,
//! and replaces the file atomically with mode 0600 in a 0700 directory. A config that cannot be
//! parsed is never overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Map, Value, json};

use shared::error::{Error, Result, describe_io};
use shared::secret::Credentials;
use shared::secret::Secret;

/// The directory of Docker's client configuration: `DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            Error::config("neither DOCKER_CONFIG nor HOME is set: cannot find Docker's config.json")
                .with_hint("set DOCKER_CONFIG to a directory for Docker's client configuration")
        })?;
    Ok(PathBuf::from(home).join(".docker"))
}

/// The host part of a registry address: `https://host:5000/v1/` -> `host:5000`.
#[must_use]
pub fn hostname(address: &str) -> &str {
    let rest = address
        .strip_prefix("https://")
        .or_else(|| address.strip_prefix("http://"))
        .unwrap_or(address);
    rest.split('/').next().unwrap_or(rest)
}

/// Where credentials for a host are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Store {
    /// The `auths` section of config.json.
    File(PathBuf),
    /// A credential helper, `docker-credential-<name>`.
    Helper(String),
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::File(path) => write!(f, "auths in {}", path.display()),
            Store::Helper(name) => write!(f, "credential helper docker-credential-{name}"),
        }
    }
}

/// Docker's client configuration, as read from disk.
#[derive(Debug)]
pub struct DockerConfig {
    path: PathBuf,
    root: Map<String, Value>,
}

impl DockerConfig {
    /// The path of Docker's `config.json` (see [`config_dir`]).
    pub fn default_path() -> Result<PathBuf> {
        Ok(config_dir()?.join("config.json"))
    }

    /// Reads `config.json` from [`config_dir`]; a missing file is an empty configuration.
    pub fn load() -> Result<Self> {
        Self::load_from(&Self::default_path()?)
    }

    /// Reads the configuration at `path`; a missing file is an empty configuration.
    pub fn load_from(path: &Path) -> Result<Self> {
        let root =
            match shared::files::read_if_exists(path, shared::files::TEXT_LIMIT, "Docker config") {
                Ok(None) => Map::new(),
                Ok(Some(bytes)) if bytes.iter().all(u8::is_ascii_whitespace) => Map::new(),
                Ok(Some(bytes)) => match serde_json::from_slice::<Value>(&bytes) {
                    Ok(Value::Object(root)) => root,
                    Ok(_) => return Err(corrupt(path, "it is not a JSON object")),
                    Err(e) => return Err(corrupt(path, &e.to_string())),
                },
                Err(e) => {
                    return Err(Error::config(format!("cannot use the {}", e.message()))
                        .with_hint(
                            "check the file and its permissions, or point DOCKER_CONFIG elsewhere",
                        ));
                }
            };
        for key in ["auths", "credHelpers"] {
            if root.get(key).is_some_and(|v| !v.is_object()) {
                return Err(corrupt(path, &format!("\"{key}\" is not an object")));
            }
        }
        if root.get("credsStore").is_some_and(|v| !v.is_string()) {
            return Err(corrupt(path, "\"credsStore\" is not a string"));
        }
        Ok(Self {
            path: path.to_owned(),
            root,
        })
    }

    /// The file this configuration lives in.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where credentials for `host` are read from and written to.
    #[must_use]
    pub fn store_for(&self, host: &str) -> Store {
        let helper = self
            .root
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|helpers| {
                helpers
                    .iter()
                    .find(|(key, _)| hostname(key) == host)
                    .and_then(|(_, name)| name.as_str())
            })
            .or_else(|| self.root.get("credsStore").and_then(Value::as_str))
            .filter(|name| !name.is_empty());
        match helper {
            Some(name) => Store::Helper(name.to_owned()),
            None => Store::File(self.path.clone()),
        }
    }

    /// The `auths` entry for `host`, matched by host name as the docker CLI does.
    fn auth_entry(&self, host: &str) -> Option<(&String, &Map<String, Value>)> {
        self.root
            .get("auths")
            .and_then(Value::as_object)?
            .iter()
            .find(|(key, _)| hostname(key) == host)
            .and_then(|(key, v)| v.as_object().map(|entry| (key, entry)))
    }

    /// The credentials Docker would use for `host`, if any.
    pub fn credentials(&self, host: &str) -> Result<Option<Credentials>> {
        match self.store_for(host) {
            Store::Helper(name) => helper_get(&name, host),
            Store::File(_) => {
                let Some((_, entry)) = self.auth_entry(host) else {
                    return Ok(None);
                };
                if let Some(auth) = entry
                    .get("auth")
                    .and_then(Value::as_str)
                    .filter(|a| !a.is_empty())
                {
                    return decode_auth(auth, host, &self.path).map(Some);
                }
                let username = entry.get("username").and_then(Value::as_str);
                let password = entry.get("password").and_then(Value::as_str);
                Ok(match (username, password) {
                    (Some(username), Some(password)) => Some(Credentials {
                        username: username.to_owned(),
                        password: Secret::new(password),
                    }),
                    _ => None,
                })
            }
        }
    }

    /// Stores `credentials` for `host` where the configuration at `path` tells Docker to look
    /// for them, and returns where. The file is re-read under the lock, so entries written
    /// meanwhile by others are kept.
    /// Callers hold the [`ConfigLock`] for `path`.
    pub fn store(path: &Path, host: &str, credentials: &Credentials) -> Result<Store> {
        let mut config = Self::load_from(path)?;
        let store = config.store_for(host);
        match &store {
            Store::Helper(name) => {
                helper_store(name, host, credentials)?;
                // As `docker login` does: an empty entry lists the host without its secret.
                if config.auth_entry(host).is_none() {
                    config.auths_mut().insert(host.to_owned(), json!({}));
                    config.save()?;
                }
            }
            Store::File(_) => {
                let auth = base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    credentials.username,
                    credentials.password.expose()
                ));
                let key = config
                    .auth_entry(host)
                    .map_or_else(|| host.to_owned(), |(key, _)| key.clone());
                let entry = config.auths_mut().entry(key).or_insert_with(|| json!({}));
                if let Value::Object(entry) = entry {
                    entry.remove("username");
                    entry.remove("password");
                    entry.insert("auth".to_owned(), Value::String(auth));
                } else {
                    *entry = json!({ "auth": auth });
                }
                config.save()?;
            }
        }
        Ok(store)
    }

    /// Removes the credentials for `host` from where Docker keeps them, if `keep` says so for
    /// the credentials currently stored. Returns whether anything was removed.
    /// Callers hold the [`ConfigLock`] for `path`.
    pub fn erase_if(path: &Path, host: &str, keep: impl Fn(&Credentials) -> bool) -> Result<bool> {
        let mut config = Self::load_from(path)?;
        let Some(current) = config.credentials(host)? else {
            return Ok(false);
        };
        if keep(&current) {
            return Ok(false);
        }
        if let Store::Helper(name) = config.store_for(host) {
            helper_erase(&name, host)?;
        }
        if let Some((key, _)) = config.auth_entry(host) {
            let key = key.clone();
            config.auths_mut().shift_remove(&key);
            config.save()?;
        }
        Ok(true)
    }

    fn auths_mut(&mut self) -> &mut Map<String, Value> {
        let auths = self
            .root
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        match auths {
            Value::Object(map) => map,
            _ => unreachable!("auths was just made an object"),
        }
    }

    fn save(&self) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        ensure_private_dir(dir)?;
        let mut text = serde_json::to_vec_pretty(&Value::Object(self.root.clone()))
            .map_err(|e| Error::internal(format!("encoding the Docker config: {e}")))?;
        text.push(b'\n');
        // Every save happens under the config's lock (see ConfigLock).
        shared::files::write_secret_locked(&self.path, &text)
    }
}

fn corrupt(path: &Path, why: &str) -> Error {
    Error::config(format!(
        "Docker config {} cannot be parsed: {why}",
        path.display()
    ))
    .with_hint("fix or remove the file (it was left as it is), or point DOCKER_CONFIG elsewhere")
}

fn decode_auth(auth: &str, host: &str, path: &Path) -> Result<Credentials> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            text.split_once(':')
                .map(|(user, password)| (user.to_owned(), password.to_owned()))
        });
    match decoded {
        Some((username, password)) => Ok(Credentials {
            username,
            password: Secret::new(password),
        }),
        None => Err(Error::config(format!(
            "the stored credentials for {host} in {} cannot be decoded",
            path.display()
        ))
        .with_hint(format!("log in to {host} again"))),
    }
}

/// Makes `dir` (and its parents) exist; a directory we create is private (0700).
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::write_io(format!("creating {}", dir.display()), &e))
}

/// An exclusive lock on `config.json.lock` beside the config: every read-modify-write of the
/// config (and of files kept beside it) happens under it, so concurrent logins keep each
/// other's entries. Released when dropped.
#[derive(Debug)]
pub struct ConfigLock {
    _file: std::fs::File,
}

impl ConfigLock {
    /// Waits for the lock of the config at `config`.
    pub fn acquire(config: &Path) -> Result<Self> {
        let dir = config.parent().unwrap_or(Path::new("."));
        ensure_private_dir(dir)?;
        let file = shared::files::lock(&config.with_extension("json.lock"))?;
        Ok(Self { _file: file })
    }
}

/// What a credential helper answered: its exit status and its stdout.
struct HelperAnswer {
    status: std::process::ExitStatus,
    stdout: String,
}

impl HelperAnswer {
    fn ok(&self) -> bool {
        self.status.success()
    }

    /// Whether the helper said the protocol's "credentials not found".
    fn not_found(&self) -> bool {
        self.stdout.to_lowercase().contains("credentials not found")
    }
}

/// Runs `docker-credential-<name> <action>` with `input` on stdin; returns its exit status and
/// stdout. Its stderr is not kept: a helper may print the secret there.
fn run_helper(name: &str, action: &str, input: &[u8]) -> Result<HelperAnswer> {
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            Error::config(format!(
                "cannot run the Docker credential helper {program}: {}",
                describe_io(&e)
            ))
            .with_hint(format!(
                "install {program} on PATH, or remove it from credsStore/credHelpers in Docker's config.json"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is judged by its answer below.
        let _ = stdin.write_all(input);
    }
    let output = child.wait_with_output().map_err(|e| {
        Error::config(format!(
            "running {program}: {}",
            shared::error::describe_io(&e)
        ))
    })?;
    Ok(HelperAnswer {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    })
}

/// A failed helper, named with its exit status. What it printed is left out: a helper may
/// echo the secret it was given or holds.
fn helper_failed(name: &str, action: &str, host: &str, answer: &HelperAnswer) -> Error {
    let status = match answer.status.code() {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_owned(),
    };
    Error::config(format!(
        "the Docker credential helper docker-credential-{name} failed to {action} credentials for {host} ({status})"
    ))
    .with_hint(format!(
        "run docker-credential-{name} {action} by hand to see why (is its keychain unlocked? is it the right helper for this host?)"
    ))
}

fn helper_get(name: &str, host: &str) -> Result<Option<Credentials>> {
    let answer = run_helper(name, "get", host.as_bytes())?;
    if !answer.ok() {
        if answer.not_found() {
            return Ok(None);
        }
        return Err(helper_failed(name, "get", host, &answer));
    }
    let value: Value = serde_json::from_str(&answer.stdout).map_err(|_| {
        Error::config(format!(
            "the Docker credential helper docker-credential-{name} answered get for {host} with something that is not JSON"
        ))
    })?;
    let username = value
        .get("Username")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let secret = value
        .get("Secret")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: username.to_owned(),
        password: Secret::new(secret),
    }))
}

fn helper_store(name: &str, host: &str, credentials: &Credentials) -> Result<()> {
    let input = json!({
        "ServerURL": host,
        "Username": credentials.username,
        "Secret": credentials.password.expose(),
    });
    let answer = run_helper(name, "store", input.to_string().as_bytes())?;
    if answer.ok() {
        Ok(())
    } else {
        Err(helper_failed(name, "store", host, &answer))
    }
}

fn helper_erase(name: &str, host: &str) -> Result<()> {
    let answer = run_helper(name, "erase", host.as_bytes())?;
    if answer.ok() || answer.not_found() {
        Ok(())
    } else {
        Err(helper_failed(name, "erase", host, &answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> (tempfile::TempDir, Result<DockerConfig>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, text).unwrap();
        let loaded = DockerConfig::load_from(&path);
        (dir, loaded)
    }

    #[test]
    fn hostnames_drop_scheme_and_path() {
        assert_eq!(hostname("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(hostname("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(hostname("http://r.example:8080/x"), "r.example:8080");
    }

    #[test]
    fn helpers_win_over_the_file_and_the_store() {
        let (_dir, c) = config(
            r#"{"auths":{"a.example":{"auth":"dTpw"}},"credsStore":"desktop","credHelpers":{"b.example":"ecr-login"}}"#,
        );
        let c = c.unwrap();
        assert_eq!(c.store_for("b.example"), Store::Helper("ecr-login".into()));
        assert_eq!(c.store_for("a.example"), Store::Helper("desktop".into()));
        let (_dir, c) = config(r#"{"auths":{"https://a.example/v1/":{"auth":"dTpw"}}}"#);
        let c = c.unwrap();
        assert!(matches!(c.store_for("a.example"), Store::File(_)));
        let creds = c.credentials("a.example").unwrap().unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.expose()),
            ("u", "p")
        );
        assert!(c.credentials("other.example").unwrap().is_none());
    }

    #[test]
    fn storing_keeps_other_entries_and_unknown_keys() {
        let (dir, _) = config(
            r#"{"auths":{"other.example":{"auth":"dTpw"}},"credHelpers":{"h.example":"x"},"proxies":{"default":{"httpProxy":"p"}},"zzz":[1]}"#,
        );
        let path = dir.path().join("config.json");
        let creds = Credentials {
            username: "AWS".into(),
            password: Secret::new("pw"),
        };
        let store = DockerConfig::store(&path, "127.0.0.1:5001", &creds).unwrap();
        assert_eq!(store, Store::File(path.clone()));
        let after: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(after["auths"]["other.example"]["auth"], "dTpw");
        assert_eq!(after["auths"]["127.0.0.1:5001"]["auth"], "QVdTOnB3");
        assert_eq!(after["proxies"]["default"]["httpProxy"], "p");
        assert_eq!(after["zzz"], json!([1]));
        assert_eq!(after["credHelpers"]["h.example"], "x");
        let loaded = DockerConfig::load_from(&path).unwrap();
        assert_eq!(
            loaded
                .credentials("127.0.0.1:5001")
                .unwrap()
                .unwrap()
                .password
                .expose(),
            "pw"
        );

        let erased =
            DockerConfig::erase_if(&path, "127.0.0.1:5001", |c| c.password.expose() != "pw")
                .unwrap();
        assert!(erased);
        let loaded = DockerConfig::load_from(&path).unwrap();
        assert!(loaded.credentials("127.0.0.1:5001").unwrap().is_none());
        assert!(loaded.credentials("other.example").unwrap().is_some());
    }

    #[test]
    fn corrupt_configs_are_refused_with_the_path() {
        for text in [
            "{not json",
            "[1]",
            r#"{"auths": []}"#,
            r#"{"credsStore": 3}"#,
        ] {
            let (_dir, c) = config(text);
            let err = c.unwrap_err();
            assert_eq!(err.code(), shared::exit::CONFIG);
            assert!(
                err.message().contains("cannot be parsed"),
                "{}",
                err.message()
            );
        }
        let (_dir, c) = config("  \n");
        assert!(c.is_ok(), "an empty file is an empty config");
    }
}
