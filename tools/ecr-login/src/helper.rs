//! The Docker credential-helper protocol, for when this binary runs as
//! `docker-credential-ecr-login`.
//!
//! Docker runs `docker-credential-<name> get` with the registry's address on stdin and reads
//! `{"ServerURL", "Username", "Secret"}` from stdout; errors go to stdout too, with exit code 1,
//! as the protocol wants. `get` asks ECR for a token: for an ECR host in that host's region, for
//! any other host (a custom domain, a pull-through proxy) in the default region. `store` and
//! Tokens are cached per caller identity and region (see [`crate::cache`]). `store` and
//! `erase` succeed without doing anything, so `docker login` and `docker logout` never break
//! because of the helper; `list` lists nothing, since nothing is stored.

use std::io::{Read, Write};
use std::process::ExitCode;

use serde_json::json;
use shared::aws::{Aws, AwsArgs};
use shared::{Error, Result, ecr};

/// Runs one helper action from the command line and exits as the protocol says.
#[must_use]
pub fn main() -> ExitCode {
    let action = std::env::args().nth(1).unwrap_or_default();
    let mut input = String::new();
    let answer = std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| Error::io("reading standard input", &e))
        .and_then(|_| answer(&action, input.trim()));
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

fn answer(action: &str, input: &str) -> Result<String> {
    match action {
        "get" => shared::cli::runtime()?.block_on(get(input)),
        "list" => Ok("{}".to_owned()),
        "store" | "erase" => Ok(String::new()),
        "version" => Ok(format!(
            "docker-credential-ecr-login (imgpipe ecr-login {})",
            env!("CARGO_PKG_VERSION")
        )),
        other => Err(Error::new(
            shared::exit::USAGE,
            format!(
                "unknown credential helper action '{other}' (expected get, list, store or erase)"
            ),
        )),
    }
}

async fn get(server_url: &str) -> Result<String> {
    let host = shared::dockerconfig::hostname(server_url);
    if host.is_empty() {
        return Err(Error::data("no registry address on standard input"));
    }
    let region = ecr::parse_host(host).map(|h| h.region);
    let aws = Aws::load(&AwsArgs {
        region,
        ..AwsArgs::default()
    })
    .await?;
    let token = match crate::cache::dir() {
        Some(dir) => {
            let identity = aws.caller_identity().await?;
            let now = chrono::Utc::now();
            if let Some(token) = crate::cache::get(&dir, &identity, aws.region(), now) {
                token
            } else {
                let token = ecr::authorization_token(&aws).await?;
                crate::cache::put(&dir, &identity, aws.region(), &token, now)?;
                token
            }
        }
        None => ecr::authorization_token(&aws).await?,
    };
    Ok(json!({
        "ServerURL": server_url,
        "Username": token.credentials.username,
        "Secret": token.credentials.password.expose(),
    })
    .to_string())
}
