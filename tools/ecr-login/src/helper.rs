//! The Docker credential-helper protocol, for when this binary runs as
//! `docker-credential-ecr-login`.
//!
//! Docker runs `docker-credential-<name> get` with the registry's address on stdin and reads
//! `{"ServerURL", "Username", "Secret"}` from stdout; errors go to stdout too, with exit code 1,
//! as the protocol wants (docker/docker-credential-helpers, `credentials/credentials.go`).
//!
//! `get` answers for private ECR registries only (every partition and endpoint form
//! [`shared::ecr::parse_host`] knows), with a token for that registry's region. Any other
//! address, ECR Public and look-alike hosts included, gets the protocol's "credentials not
//! found", so Docker goes on anonymously: with `"credsStore": "ecr-login"`, a pull from Docker
//! Hub or ghcr.io never carries an ECR token. Tokens are cached per caller identity and region
//! (see [`crate::cache`]). `store` and `erase` check their input as the protocol does and then
//! succeed without doing anything, so `docker login` and `docker logout` never break because of
//! the helper; `list` lists nothing, since nothing is stored.

use std::io::{Read, Write};
use std::process::ExitCode;

use aws::{Aws, AwsArgs};
use serde_json::{Value, json};
use shared::{Error, Result, ecr};

/// The protocol's answer for a registry the helper has no credentials for.
pub const NOT_FOUND: &str = "credentials not found in native keychain";
/// The protocol's answer when no server URL is given.
pub const NO_SERVER_URL: &str = "no credentials server URL";
/// The protocol's answer when `store` gets no username.
pub const NO_USERNAME: &str = "no credentials username";

/// The most the helper reads from stdin: an address, or a `store` request.
const INPUT_LIMIT: u64 = 64 << 10;

/// Runs one helper action from the command line and exits as the protocol says.
#[must_use]
pub fn main(action: &str) -> ExitCode {
    let answer = if is_version(action) {
        Ok(version())
    } else {
        let mut input = String::new();
        std::io::stdin()
            .take(INPUT_LIMIT)
            .read_to_string(&mut input)
            .map_err(|e| Error::read_io("reading standard input", &e))
            .and_then(|_| answer(action, input.trim()))
    };
    let (text, code) = match answer {
        Ok(text) => (text, 0),
        Err(err) => (shared::cli::one_line(&err.to_string()), 1),
    };
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "{text}").and_then(|()| out.flush());
    if written.is_err() {
        return ExitCode::from(1);
    }
    ExitCode::from(code)
}

fn is_version(action: &str) -> bool {
    matches!(action, "version" | "--version" | "-v")
}

fn version() -> String {
    format!(
        "docker-credential-ecr-login (imgpipe ecr-login) {}",
        env!("CARGO_PKG_VERSION")
    )
}

/// The protocol's plain error: its text alone, as other helpers print it.
fn protocol_error(text: &str) -> Error {
    Error::new(shared::exit::NO, text)
}

fn answer(action: &str, input: &str) -> Result<String> {
    match action {
        "get" => {
            let host = ecr_host(input)?;
            shared::cli::runtime()?.block_on(get(input, &host))
        }
        "list" => Ok("{}".to_owned()),
        "store" => {
            check_store(input)?;
            Ok(String::new())
        }
        "erase" => {
            if input.is_empty() {
                return Err(protocol_error(NO_SERVER_URL));
            }
            Ok(String::new())
        }
        other => Err(Error::new(
            shared::exit::USAGE,
            format!(
                "unknown credential helper action '{}' (expected get, list, store, erase or version)",
                shared::names::quote(other)
            ),
        )),
    }
}

/// The private ECR registry `server_url` names, or the protocol's "not found" for any other.
fn ecr_host(server_url: &str) -> Result<String> {
    if server_url.is_empty() {
        return Err(protocol_error(NO_SERVER_URL));
    }
    shared::names::host_of_address(server_url)
        .ok()
        .filter(|host| ecr::parse_host(host).is_some())
        .map(str::to_owned)
        .ok_or_else(|| protocol_error(NOT_FOUND))
}

/// Checks a `store` request as the protocol does: a server URL and a username are required.
fn check_store(input: &str) -> Result<()> {
    let request: Value = serde_json::from_str(input).map_err(|e| {
        Error::data(format!(
            "the store request is not JSON of ServerURL, Username and Secret: {e}"
        ))
    })?;
    let field = |name: &str| request.get(name).and_then(Value::as_str).unwrap_or("");
    if field("ServerURL").is_empty() {
        return Err(protocol_error(NO_SERVER_URL));
    }
    if field("Username").is_empty() {
        return Err(protocol_error(NO_USERNAME));
    }
    Ok(())
}

async fn get(server_url: &str, host: &str) -> Result<String> {
    let parsed = ecr::parse_host(host);
    let account = parsed.as_ref().map(|h| h.account.clone());
    let region = parsed.map(|h| h.region);
    let aws = Aws::load(&AwsArgs {
        region,
        ..AwsArgs::default()
    })
    .await?;
    let token = match crate::cache::dir() {
        Some(dir) => {
            let (key, sts_failed) = crate::cache::key(&aws).await?;
            let now = chrono::Utc::now();
            // One entry per identity, region and registry account.
            let scope = format!(
                "{}\n{}",
                aws.region(),
                account.as_deref().unwrap_or_default()
            );
            if let Some(token) = crate::cache::get(&dir, &key, &scope, now) {
                token
            } else {
                let token = aws::ecr::authorization_token(&aws, account.as_deref())
                    .await
                    .map_err(|e| match &sts_failed {
                        Some(sts) => e.with_hint(format!(
                            "STS failed as well ({}), so the token cache is keyed by access key",
                            sts.message()
                        )),
                        None => e,
                    })?;
                crate::cache::put(&dir, &key, &scope, &token, now)?;
                token
            }
        }
        None => aws::ecr::authorization_token(&aws, account.as_deref()).await?,
    };
    Ok(json!({
        "ServerURL": server_url,
        "Username": token.credentials.username,
        "Secret": token.credentials.password.expose(),
    })
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_private_ecr_hosts_are_answered() {
        for url in [
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/",
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
            "123456789012.dkr-ecr.eu-west-1.on.aws",
        ] {
            assert!(ecr_host(url).is_ok(), "{url}");
        }
        for url in [
            "https://index.docker.io/v1/",
            "ghcr.io",
            "public.ecr.aws",
            "127.0.0.1:5000",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
            "https://123456789012.dkr.ecr.us-east-1.amazonaws.com:443@evil.example/",
            "https://123456789012.dkr.ecr.us-east-1.amazonaws.com@evil.example",
        ] {
            let err = ecr_host(url).unwrap_err();
            assert_eq!(err.message(), NOT_FOUND, "{url}");
        }
        assert_eq!(ecr_host("").unwrap_err().message(), NO_SERVER_URL);
    }

    #[test]
    fn store_and_erase_check_their_input() {
        let cases = [
            (r#"{"ServerURL":"x","Username":"u","Secret":"s"}"#, None),
            (r#"{"Username":"u","Secret":"s"}"#, Some(NO_SERVER_URL)),
            (r#"{"ServerURL":"x","Secret":"s"}"#, Some(NO_USERNAME)),
        ];
        for (input, error) in cases {
            let got = answer("store", input).err().map(|e| e.message().to_owned());
            assert_eq!(got.as_deref(), error, "{input}");
        }
        assert_eq!(answer("erase", "").unwrap_err().message(), NO_SERVER_URL);
        for flag in ["version", "--version", "-v"] {
            assert!(is_version(flag));
        }
    }
}
