//! `ecr-login`: log Docker (and the other imgpipe tools) in to Amazon ECR.
//!
//! Gets one authorization token per region from ECR and stores it where Docker looks for
//! credentials, exactly as `docker login` would: through the `credHelpers`/`credsStore` helper
//! that applies, else in `auths` of `$DOCKER_CONFIG/config.json`. The password never reaches
//! argv, stdout (unless `--password-stdout` asks for exactly that), stderr or a log.
//!
//! Run as `docker-credential-ecr-login` (a link to this binary), it is a Docker credential
//! helper instead: see [`helper`].

mod cache;
pub mod helper;
mod state;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use aws::ecr::{Token, authorization_token};
use aws::{Aws, AwsArgs};
use chrono::{DateTime, Utc};
use clap::Parser;
use registry::dockerconfig::{ConfigLock, DockerConfig};
use serde_json::{Value, json};
use shared::cli::{Answer, Common};
use shared::ecr;
use shared::exit::{self, Code};
use shared::{Document, Error, Result, info, warn};

/// Log Docker in to Amazon ECR (and other registries) with an ECR token.
#[derive(Parser, Debug)]
#[command(
    name = "ecr-login",
    version,
    after_long_help = "EXAMPLES:
  # Log Docker in to the caller's ECR registry in the current region
  ecr-login

  # The same token for a second account's registry and a local mirror
  ecr-login --registry 111122223333.dkr.ecr.eu-west-1.amazonaws.com --registry mirror.example.com

  # Drop-in for `aws ecr get-login-password` (helm, oras, podman)
  ecr-login --password-stdout | helm registry login --username AWS --password-stdin $REGISTRY

  # Fail the build early when the stored credentials expire within 30 minutes
  ecr-login --check --registry $REGISTRY --min-valid 30m

CREDENTIAL HELPER:
  Linked as docker-credential-ecr-login on PATH, this binary answers Docker's credential-helper
  protocol (get, list, store, erase): set {\"credHelpers\": {\"<registry>\": \"ecr-login\"}} in
  Docker's config.json and Docker asks it for a fresh token whenever it needs one."
)]
// Each bool is a command-line switch of its own; clap needs them as fields.
#[allow(clippy::struct_excessive_bools)]
pub struct Cli {
    /// Registry host to store the credentials for (repeatable). Default: the input document's
    /// `registry`, else the registry ECR names in the token (the caller's account and region).
    /// An ECR host in another region gets a token from that region.
    #[arg(long = "registry", value_name = "HOST")]
    pub registries: Vec<String>,

    /// Print only the password on stdout and store nothing (like `aws ecr get-login-password`).
    #[arg(long, conflicts_with_all = ["check", "logout"])]
    pub password_stdout: bool,

    /// Check the stored credentials instead of logging in: exit 1 when they are missing or
    /// expire within --min-valid.
    #[arg(long, conflicts_with = "logout")]
    pub check: bool,

    /// With --check: how long the credentials must stay valid (90s, 30m, 2h).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = shared::duration::parse)]
    pub min_valid: std::time::Duration,

    /// Remove the credentials ecr-login stored for the registries (others are left alone).
    #[arg(long)]
    pub logout: bool,

    /// Print the IAM policy a login needs (ecr:GetAuthorizationToken) and do nothing else.
    #[arg(long, conflicts_with_all = ["check", "logout", "password_stdout"])]
    pub print_iam_policy: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub aws: AwsArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

impl shared::cli::Cli for Cli {
    fn common(&self) -> &Common {
        &self.common
    }
}

/// The tool's `main`: a credential helper when called as `docker-credential-*`, else the
/// `ecr-login` command. `args[0]` is the name it was called by.
#[must_use]
pub fn main_from(args: Vec<std::ffi::OsString>) -> ExitCode {
    let called_as = args
        .first()
        .and_then(|arg| {
            std::path::Path::new(arg)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    if called_as.starts_with("docker-credential-") {
        let action = args
            .get(1)
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        return helper::main(&action);
    }
    shared::cli::main_from::<Cli>("ecr-login", run, args)
}

/// Runs `ecr-login`.
pub fn run(cli: &Cli) -> Result<Code> {
    if cli.print_iam_policy {
        let policy = aws::iam::policy(&[aws::iam::Step::Login], &[]);
        shared::io::print_pretty(&policy)?;
        return Ok(exit::SUCCESS);
    }
    shared::cli::runtime()?.block_on(async {
        if cli.check || cli.logout {
            // Neither needs AWS: they look at what is stored.
            return shared::cli::pipeline(&cli.common, |doc| {
                let result = if cli.check {
                    check(cli, doc)
                } else {
                    logout(cli, doc).map(Answer::from)
                };
                std::future::ready(result)
            })
            .await;
        }
        let aws = Aws::load(&cli.aws).await?;
        let mut tokens = Tokens::default();
        if cli.password_stdout {
            let token = tokens.get(&aws, &cli.aws, aws.region(), None).await?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", token.credentials.password.expose())
                .and_then(|()| out.flush())
                .map_err(|e| Error::write_io("writing to standard output", &e))?;
            return Ok(exit::SUCCESS);
        }
        shared::cli::pipeline(&cli.common, async |doc| {
            login(cli, &aws, &mut tokens, doc).await
        })
        .await
    })
}

/// Tokens fetched so far, one per region and registry account (`None`: the caller's own).
#[derive(Default)]
struct Tokens {
    by_registry: BTreeMap<(String, Option<String>), Token>,
}

impl Tokens {
    async fn get(
        &mut self,
        aws: &Aws,
        args: &AwsArgs,
        region: &str,
        account: Option<&str>,
    ) -> Result<&Token> {
        let key = (region.to_owned(), account.map(str::to_owned));
        if !self.by_registry.contains_key(&key) {
            let token = if region == aws.region() {
                authorization_token(aws, account).await?
            } else {
                let regional = Aws::load(&AwsArgs {
                    region: Some(region.to_owned()),
                    ..args.clone()
                })
                .await?;
                authorization_token(&regional, account).await?
            };
            self.by_registry.insert(key.clone(), token);
        }
        self.by_registry
            .get(&key)
            .ok_or_else(|| Error::internal("token cache lost an entry"))
    }
}

/// The registries named by flags, else the document.
fn named_registries(cli: &Cli, doc: &Document) -> Vec<String> {
    if cli.registries.is_empty() {
        doc.str("registry").map(str::to_owned).into_iter().collect()
    } else {
        cli.registries.clone()
    }
}

fn check_host(host: &str) -> Result<String> {
    shared::names::host_of_address(host).map(str::to_owned)
}

async fn login(cli: &Cli, aws: &Aws, tokens: &mut Tokens, mut doc: Document) -> Result<Document> {
    let mut hosts = named_registries(cli, &doc)
        .iter()
        .map(|h| check_host(h))
        .collect::<Result<Vec<_>>>()?;
    if hosts.is_empty() {
        let token = tokens.get(aws, &cli.aws, aws.region(), None).await?;
        hosts.push(check_host(&token.registry)?);
    }

    let path = DockerConfig::default_path()?;
    let mut stored_in = serde_json::Map::new();
    let mut expiry: Option<DateTime<Utc>> = None;
    let mut username = String::new();
    for host in &hosts {
        let parsed = ecr::parse_host(host);
        let region = parsed
            .as_ref()
            .map_or_else(|| aws.region().to_owned(), |h| h.region.clone());
        let account = parsed.as_ref().map(|h| h.account.as_str());
        let token = tokens.get(aws, &cli.aws, &region, account).await?.clone();
        let lock = ConfigLock::acquire(&path)?;
        let store = DockerConfig::store(&path, host, &token.credentials)?;
        state::record(&path, host, &token.credentials, token.expires_at)?;
        drop(lock);
        info!("logged in to {host} ({store})");
        stored_in.insert(host.clone(), Value::String(store.to_string()));
        expiry = match (expiry, token.expires_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        username.clone_from(&token.credentials.username);
    }

    doc.set("registry", hosts[0].as_str());
    if let Some(parsed) = ecr::parse_host(&hosts[0]) {
        doc.set("account_id", parsed.account);
        doc.set("region", parsed.region);
    } else {
        doc.set("region", aws.region());
    }
    doc.set(
        "login",
        json!({
            "registries": hosts,
            "username": username,
            "expires_at": expiry.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "stored_in": stored_in,
        }),
    );
    Ok(doc)
}

fn require_registries(cli: &Cli, doc: &Document, action: &str) -> Result<Vec<String>> {
    let hosts = named_registries(cli, doc)
        .iter()
        .map(|h| check_host(h))
        .collect::<Result<Vec<_>>>()?;
    if hosts.is_empty() {
        return Err(Error::data(format!("no registry to {action}"))
            .with_hint("pass --registry HOST, or give a document with a registry field"));
    }
    Ok(hosts)
}

fn check(cli: &Cli, mut doc: Document) -> Result<Answer> {
    let hosts = require_registries(cli, &doc, "check")?;
    let path = DockerConfig::default_path()?;
    let config = DockerConfig::load_from(&path)?;
    let now = Utc::now();
    let mut results = Vec::new();
    let mut all_ok = true;
    for host in &hosts {
        let stored = config.credentials(host)?;
        let expires_at = stored.as_ref().and_then(|c| {
            ecr::password_expiry(&c.password).or_else(|| state::expiry(&path, host, c))
        });
        let (ok, reason) = match (&stored, expires_at) {
            (None, _) => (false, format!("no credentials are stored for {host}")),
            (Some(_), Some(t)) if t <= now => {
                (false, format!("the credentials for {host} expired at {t}"))
            }
            (Some(_), Some(t)) if (t - now).to_std().is_ok_and(|left| left < cli.min_valid) => (
                false,
                format!(
                    "the credentials for {host} expire at {t}, within {}",
                    shared::duration::show(cli.min_valid)
                ),
            ),
            (Some(_), Some(t)) => (
                true,
                format!("the credentials for {host} are valid until {t}"),
            ),
            (Some(_), None) => (
                true,
                format!("credentials are stored for {host} (expiry unknown)"),
            ),
        };
        if ok {
            info!("{reason}");
        } else {
            warn!("{reason}");
            all_ok = false;
        }
        results.push(json!({
            "registry": host,
            "stored": stored.is_some(),
            "expires_at": expires_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "valid_for_seconds": expires_at.map(|t| (t - now).num_seconds().max(0)),
            "ok": ok,
        }));
    }
    doc.set("registry", hosts[0].as_str());
    doc.set("login", json!({ "check": results }));
    Ok(Answer::no_if(!all_ok, doc))
}

fn logout(cli: &Cli, mut doc: Document) -> Result<Document> {
    let hosts = require_registries(cli, &doc, "log out of")?;
    let path = DockerConfig::default_path()?;
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    for host in &hosts {
        let _lock = ConfigLock::acquire(&path)?;
        let ours =
            DockerConfig::erase_if(&path, host, |current| !state::is_ours(&path, host, current))?;
        state::forget(&path, host)?;
        if ours {
            info!("removed the credentials ecr-login stored for {host}");
            removed.push(host.clone());
        } else {
            info!("left {host} alone: ecr-login did not store its current credentials");
            kept.push(host.clone());
        }
    }
    doc.set("registry", hosts[0].as_str());
    doc.set(
        "login",
        json!({ "logged_out": removed, "left_alone": kept }),
    );
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_lose_scheme_and_path() {
        assert_eq!(
            check_host("https://r.example:5000/v2/").unwrap(),
            "r.example:5000"
        );
        assert!(check_host("").is_err());
        assert!(check_host("a b").is_err());
    }
}
