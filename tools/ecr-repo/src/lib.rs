//! `ecr-repo`: make sure an ECR repository exists with the settings a pipeline needs.
//!
//! Creates the repository when it is missing, brings scan-on-push, tag mutability and resource
//! tags in line when it exists, and says plainly what cannot change (encryption is fixed when a
//! repository is created). Settings not given on the command line are left as they are on an
//! existing repository. A second run with the same flags changes nothing.
//!
//! Writes the image document with `registry`, `repository`, `repository_uri` and
//! `repository_arn`, ready for `img-tag`.

use aws_sdk_ecr::Client;
use aws_sdk_ecr::operation::describe_repositories::DescribeRepositoriesError;
use aws_sdk_ecr::types::{
    EncryptionConfiguration, EncryptionType, ImageScanningConfiguration, ImageTagMutability,
    Repository, Tag,
};
use clap::Parser;
use serde_json::json;
use shared::aws::{Aws, AwsArgs};
use shared::cli::Common;
use shared::exit::Code;
use shared::io::{Input, stdin_input};
use shared::{Document, Error, Result, info};

use shared::iam;

/// Make sure an ECR repository exists, with the settings given.
#[derive(Parser, Debug)]
#[command(
    name = "ecr-repo",
    version,
    after_long_help = "EXAMPLES:
  # Create my-app (scan on push, AES256) if it is missing; print the document for img-tag
  ecr-repo --repository my-app

  # Immutable tags and a cost-centre tag; print only the repository URI
  ecr-repo --repository team/api --tag-mutability immutable --tag cc=42 --field repository_uri

  # Several repositories at once: one document each
  ecr-repo --repository api --repository web

  # The least-privilege IAM policy for a build that logs in, pushes and scans
  ecr-repo --repository my-app --print-iam-policy login,push,scan > build-policy.json"
)]
pub struct Cli {
    /// Repository name (repeatable: one output document each; default: the input document's
    /// `repository`).
    #[arg(long, value_name = "NAME")]
    pub repository: Vec<String>,

    /// Print, instead of documents, the least-privilege IAM policy for these steps of a build
    /// (login, push, pull, scan, lifecycle, repository), scoped to the repositories' ARNs where
    /// the action allows. Changes nothing.
    #[arg(long, value_enum, value_name = "STEP[,STEP]", value_delimiter = ',')]
    pub print_iam_policy: Vec<iam::Step>,

    /// Scan images when they are pushed (the default for a new repository).
    #[arg(long, overrides_with = "no_scan_on_push")]
    pub scan_on_push: bool,

    /// Do not scan images when they are pushed.
    #[arg(long, overrides_with = "scan_on_push")]
    pub no_scan_on_push: bool,

    /// Whether a tag, once pushed, may point at another image later (new repositories: mutable).
    #[arg(long, value_enum, value_name = "MODE")]
    pub tag_mutability: Option<Mutability>,

    /// Encryption of a new repository: aes256 (the default) or kms. Fixed once created.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub encryption: Option<Encryption>,

    /// KMS key (ARN, id or alias) for --encryption kms; AWS's managed key when omitted.
    #[arg(long, value_name = "KEY", requires = "encryption")]
    pub kms_key: Option<String>,

    /// Resource tag KEY=VALUE to set on the repository (repeatable). Other tags are kept.
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,

    /// Account that owns the registry (default: the caller's account).
    #[arg(long, value_name = "ACCOUNT")]
    pub registry_id: Option<String>,

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

/// Tag mutability.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutability {
    /// Tags may be moved to another image.
    Mutable,
    /// A tag, once pushed, always names the same image.
    Immutable,
}

/// Encryption at rest.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encryption {
    /// Amazon S3-managed keys (AES-256).
    Aes256,
    /// AWS KMS keys.
    Kms,
    /// AWS KMS keys, dual-layer (DSSE).
    KmsDsse,
}

impl Mutability {
    fn api(self) -> ImageTagMutability {
        match self {
            Mutability::Mutable => ImageTagMutability::Mutable,
            Mutability::Immutable => ImageTagMutability::Immutable,
        }
    }
}

impl Encryption {
    fn api(self) -> EncryptionType {
        match self {
            Encryption::Aes256 => EncryptionType::Aes256,
            Encryption::Kms => EncryptionType::Kms,
            Encryption::KmsDsse => EncryptionType::KmsDsse,
        }
    }
}

fn parse_tag(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

impl Cli {
    fn scan_on_push(&self) -> Option<bool> {
        if self.scan_on_push {
            Some(true)
        } else if self.no_scan_on_push {
            Some(false)
        } else {
            None
        }
    }
}

/// Runs `ecr-repo`.
pub fn run(cli: &Cli) -> Result<Code> {
    shared::cli::runtime()?.block_on(async {
        let aws = Aws::load(&cli.aws).await?;
        let ecr = aws.ecr();
        if !cli.print_iam_policy.is_empty() {
            return print_iam_policy(cli, &aws, &ecr).await;
        }
        shared::cli::pipeline_over(
            &cli.common,
            cli.common.no_input,
            "repository",
            &cli.repository,
            |doc| ensure(cli, &aws, &ecr, doc),
        )
        .await?;
        Ok(shared::exit::SUCCESS)
    })
}

/// Prints the IAM policy for `--print-iam-policy`: repositories from the flags or the input
/// documents; their ARNs built from the account (`--registry-id`, the document's `account_id`)
/// or read from DescribeRepositories.
async fn print_iam_policy(cli: &Cli, aws: &Aws, ecr: &Client) -> Result<Code> {
    use std::io::Write;
    let mut wanted: Vec<(String, Option<String>)> = Vec::new();
    let mut add = |name: &str, account: Option<&str>| {
        if !wanted.iter().any(|(n, _)| n == name) {
            wanted.push((name.to_owned(), account.map(str::to_owned)));
        }
    };
    if cli.repository.is_empty() {
        if let Input::Stream(records) = stdin_input(cli.common.no_input) {
            for record in records {
                let doc = record?;
                if let Some(name) = doc.str("repository") {
                    add(name, doc.str("account_id"));
                }
            }
        }
    } else {
        for name in &cli.repository {
            add(name, None);
        }
    }
    if wanted.is_empty() {
        return Err(Error::data("no repository named for the IAM policy")
            .with_hint("pass --repository NAME, or give documents with a repository field"));
    }
    let mut arns = Vec::new();
    for (name, account) in &wanted {
        shared::names::check_repository(name)?;
        let account = cli.registry_id.clone().or_else(|| account.clone());
        let arn = match account {
            Some(account) => iam::repository_arn(aws.region(), &account, name),
            None => describe(aws, ecr, cli, name)
                .await?
                .and_then(|r| r.repository_arn().map(str::to_owned))
                .ok_or_else(|| {
                    Error::data(format!("repository {name} does not exist, so its ARN is unknown"))
                        .with_hint("create it first (ecr-repo --repository NAME), or pass --registry-id ACCOUNT")
                })?,
        };
        arns.push(arn);
    }
    let policy = iam::policy(&cli.print_iam_policy, &arns);
    let mut out = std::io::stdout().lock();
    let text = serde_json::to_string_pretty(&policy).map_err(|e| Error::internal(e.to_string()))?;
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("writing to standard output", &e))?;
    info!(
        "IAM policy for {} on {}",
        cli.print_iam_policy
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", "),
        wanted
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(shared::exit::SUCCESS)
}

async fn ensure(cli: &Cli, aws: &Aws, ecr: &Client, mut doc: Document) -> Result<Document> {
    let name = doc
        .str("repository")
        .ok_or_else(|| {
            Error::data("no repository named")
                .with_hint("pass --repository NAME, or give a document with a repository field")
        })?
        .to_owned();
    shared::names::check_repository(&name)?;

    let (repository, created, changed) = match describe(aws, ecr, cli, &name).await? {
        None => (create(aws, ecr, cli, &name).await?, true, Vec::new()),
        Some(existing) => {
            check_encryption(cli, &name, &existing)?;
            let changed = update(aws, ecr, cli, &name, &existing).await?;
            (existing, false, changed)
        }
    };
    let uri = repository.repository_uri().unwrap_or_default().to_owned();
    let registry = uri.split_once('/').map_or("", |(host, _)| host).to_owned();

    if created {
        info!("created repository {name} ({uri})");
    } else if changed.is_empty() {
        info!("repository {name} is up to date ({uri})");
    } else {
        info!("updated repository {name}: {}", changed.join(", "));
    }

    doc.set("registry", registry);
    doc.set("repository", name.as_str());
    doc.set("repository_uri", uri);
    doc.set_some("repository_arn", repository.repository_arn());
    doc.set_some("account_id", repository.registry_id());
    doc.set("region", aws.region());
    let scan = match cli.scan_on_push() {
        Some(value) => value,
        None => repository
            .image_scanning_configuration()
            .is_some_and(ImageScanningConfiguration::scan_on_push),
    };
    let mutability = cli.tag_mutability.map_or_else(
        || {
            repository
                .image_tag_mutability()
                .map_or("MUTABLE", ImageTagMutability::as_str)
                .to_owned()
        },
        |m| m.api().as_str().to_owned(),
    );
    let encryption = repository
        .encryption_configuration()
        .map_or("AES256", |e| e.encryption_type().as_str());
    doc.set(
        "repository_settings",
        json!({
            "created": created,
            "changed": changed,
            "scan_on_push": scan,
            "tag_mutability": mutability,
            "encryption": encryption,
        }),
    );
    Ok(doc)
}

async fn describe(aws: &Aws, ecr: &Client, cli: &Cli, name: &str) -> Result<Option<Repository>> {
    let result = ecr
        .describe_repositories()
        .repository_names(name)
        .set_registry_id(cli.registry_id.clone())
        .send()
        .await;
    match result {
        Ok(output) => Ok(output.repositories().first().cloned()),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(DescribeRepositoriesError::is_repository_not_found_exception) =>
        {
            Ok(None)
        }
        Err(err) => Err(aws.error(&format!("looking up repository {name}"), &err)),
    }
}

async fn create(aws: &Aws, ecr: &Client, cli: &Cli, name: &str) -> Result<Repository> {
    let encryption = EncryptionConfiguration::builder()
        .encryption_type(cli.encryption.unwrap_or(Encryption::Aes256).api())
        .set_kms_key(cli.kms_key.clone())
        .build()
        .map_err(|e| Error::internal(e.to_string()))?;
    let mut request = ecr
        .create_repository()
        .repository_name(name)
        .set_registry_id(cli.registry_id.clone())
        .image_scanning_configuration(
            ImageScanningConfiguration::builder()
                .scan_on_push(cli.scan_on_push().unwrap_or(true))
                .build(),
        )
        .image_tag_mutability(cli.tag_mutability.unwrap_or(Mutability::Mutable).api())
        .encryption_configuration(encryption);
    for (key, value) in &cli.tags {
        request = request.tags(api_tag(key, value)?);
    }
    match request.send().await {
        Ok(output) => output
            .repository()
            .cloned()
            .ok_or_else(|| Error::unavailable("CreateRepository answered without the repository")),
        Err(err) => Err(aws.error(&format!("creating repository {name}"), &err)),
    }
}

fn api_tag(key: &str, value: &str) -> Result<Tag> {
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .map_err(|e| Error::internal(e.to_string()))
}

fn check_encryption(cli: &Cli, name: &str, existing: &Repository) -> Result<()> {
    let Some(wanted) = cli.encryption else {
        return Ok(());
    };
    let current = existing.encryption_configuration();
    let current_type = current.map_or(EncryptionType::Aes256, |e| e.encryption_type().clone());
    let key_differs = cli.kms_key.as_deref().is_some_and(|key| {
        current
            .and_then(EncryptionConfiguration::kms_key)
            .is_none_or(|current_key| current_key != key && !current_key.ends_with(key))
    });
    if current_type != wanted.api() || key_differs {
        return Err(Error::config(format!(
            "repository {name} is encrypted with {}, not {}{}: encryption is fixed when a repository is created",
            current_type.as_str(),
            wanted.api().as_str(),
            cli.kms_key.as_deref().map(|k| format!(" key {k}")).unwrap_or_default(),
        ))
        .with_hint("drop --encryption to keep the repository as it is, or create a new repository"));
    }
    Ok(())
}

async fn update(
    aws: &Aws,
    ecr: &Client,
    cli: &Cli,
    name: &str,
    existing: &Repository,
) -> Result<Vec<String>> {
    let mut changed = Vec::new();
    if let Some(scan) = cli.scan_on_push() {
        let current = existing
            .image_scanning_configuration()
            .is_some_and(ImageScanningConfiguration::scan_on_push);
        if current != scan {
            ecr.put_image_scanning_configuration()
                .repository_name(name)
                .set_registry_id(cli.registry_id.clone())
                .image_scanning_configuration(
                    ImageScanningConfiguration::builder()
                        .scan_on_push(scan)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| aws.error(&format!("setting scan on push for {name}"), &e))?;
            changed.push(format!("scan_on_push={scan}"));
        }
    }
    if let Some(mutability) = cli.tag_mutability
        && existing.image_tag_mutability() != Some(&mutability.api())
    {
        ecr.put_image_tag_mutability()
            .repository_name(name)
            .set_registry_id(cli.registry_id.clone())
            .image_tag_mutability(mutability.api())
            .send()
            .await
            .map_err(|e| aws.error(&format!("setting tag mutability for {name}"), &e))?;
        changed.push(format!("tag_mutability={}", mutability.api().as_str()));
    }
    if !cli.tags.is_empty() {
        let arn = existing.repository_arn().unwrap_or_default();
        let current = ecr
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(|e| aws.error(&format!("reading the tags of {name}"), &e))?;
        let missing: Vec<&(String, String)> = cli
            .tags
            .iter()
            .filter(|(key, value)| {
                !current
                    .tags()
                    .iter()
                    .any(|t| t.key() == key && t.value() == value)
            })
            .collect();
        if !missing.is_empty() {
            let mut request = ecr.tag_resource().resource_arn(arn);
            for (key, value) in &missing {
                request = request.tags(api_tag(key, value)?);
                changed.push(format!("tag {key}={value}"));
            }
            request
                .send()
                .await
                .map_err(|e| aws.error(&format!("tagging {name}"), &e))?;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_key_value() {
        assert_eq!(
            parse_tag("team=api=v2"),
            Ok(("team".into(), "api=v2".into()))
        );
        assert_eq!(parse_tag("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_tag("novalue").is_err());
        assert!(parse_tag("=x").is_err());
    }

    #[test]
    fn scan_flags_are_tri_state() {
        let cli = Cli::parse_from(["ecr-repo"]);
        assert_eq!(cli.scan_on_push(), None);
        let cli = Cli::parse_from(["ecr-repo", "--no-scan-on-push"]);
        assert_eq!(cli.scan_on_push(), Some(false));
        let cli = Cli::parse_from(["ecr-repo", "--no-scan-on-push", "--scan-on-push"]);
        assert_eq!(cli.scan_on_push(), Some(true));
    }
}
