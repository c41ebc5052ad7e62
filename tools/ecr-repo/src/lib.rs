//! `ecr-repo`: make sure an ECR repository exists with the settings a pipeline needs.
//!
//! Creates the repository when it is missing, brings scan-on-push, tag mutability and resource
//! tags in line when it exists, and says plainly what cannot change (encryption is fixed when a
//! repository is created). Settings not given on the command line are left as they are on an
//! existing repository. A second run with the same flags changes nothing.
//!
//! Writes the image document with `registry`, `repository`, `repository_uri` and
//! `repository_arn`, ready for `img-tag`.

use aws::{Aws, AwsArgs};
use aws_sdk_ecr::Client;
use aws_sdk_ecr::operation::describe_repositories::DescribeRepositoriesError;
use aws_sdk_ecr::types::{
    EncryptionConfiguration, EncryptionType, ImageScanningConfiguration, ImageTagMutability,
    ImageTagMutabilityExclusionFilter, ImageTagMutabilityExclusionFilterType, Repository, Tag,
};
use clap::Parser;
use serde_json::json;
use shared::cli::Common;
use shared::exit::Code;
use shared::io::{Input, stdin_input};
use shared::{Document, Error, Result, info};

use aws::iam;

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

  # Immutable release tags, but latest and dev-* may move
  ecr-repo --repository my-app --tag-mutability immutable --mutability-exception latest \
    --mutability-exception 'dev-*'

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

    /// A tag pattern exempt from --tag-mutability (repeatable, up to 5; `*` matches any
    /// characters): with immutable, matching tags may move (latest, dev-*); with mutable,
    /// matching tags are fixed once pushed (v*). Without it, --tag-mutability has no exceptions.
    #[arg(long, value_name = "PATTERN", requires = "tag_mutability", value_parser = parse_exception)]
    pub mutability_exception: Vec<String>,

    /// Encryption of a new repository: aes256 (the default) or kms. Fixed once created.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub encryption: Option<Encryption>,

    /// KMS key (ARN, id or alias) for --encryption kms; AWS's managed key when omitted.
    #[arg(long, value_name = "KEY", requires = "encryption")]
    pub kms_key: Option<String>,

    /// Resource tag KEY=VALUE to set on the repository (repeatable). Other tags are kept.
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = shared::cli::key_value)]
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
    /// The API's mode: the plain one, or its `_WITH_EXCLUSION` form when tags are exempt.
    fn api(self, with_exceptions: bool) -> ImageTagMutability {
        match (self, with_exceptions) {
            (Mutability::Mutable, false) => ImageTagMutability::Mutable,
            (Mutability::Mutable, true) => ImageTagMutability::MutableWithExclusion,
            (Mutability::Immutable, false) => ImageTagMutability::Immutable,
            (Mutability::Immutable, true) => ImageTagMutability::ImmutableWithExclusion,
        }
    }
}

/// The most exception filters ECR takes on one repository.
const MAX_EXCEPTIONS: usize = 5;

/// Checks a tag-mutability exception as ECR does: 1-128 characters of `0-9 a-z A-Z . _ * -`.
fn parse_exception(text: &str) -> std::result::Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '*' | '-');
    if text.is_empty() || text.len() > 128 {
        return Err(format!(
            "'{text}' must be 1 to 128 characters long (ECR's limit for a tag filter)"
        ));
    }
    if let Some(bad) = text.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "'{text}' has '{bad}': a tag filter takes letters, digits, '.', '_', '-' and the wildcard '*'"
        ));
    }
    Ok(text.to_owned())
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

impl Cli {
    /// The tag mutability asked for, in the API's form, with its exception filters in the
    /// order given.
    fn mutability(&self) -> Option<(ImageTagMutability, Vec<String>)> {
        let mut exceptions: Vec<String> = Vec::new();
        for pattern in &self.mutability_exception {
            if !exceptions.contains(pattern) {
                exceptions.push(pattern.clone());
            }
        }
        self.tag_mutability
            .map(|m| (m.api(!exceptions.is_empty()), exceptions))
    }

    /// Refuses what ECR would refuse about the flags, before any call.
    fn check(&self) -> Result<()> {
        if self
            .mutability()
            .is_some_and(|(_, e)| e.len() > MAX_EXCEPTIONS)
        {
            return Err(Error::new(
                shared::exit::USAGE,
                format!(
                    "{} --mutability-exception patterns given; ECR takes at most {MAX_EXCEPTIONS}",
                    self.mutability_exception.len()
                ),
            )
            .with_hint("combine them with wildcards, e.g. dev-* instead of dev-a and dev-b"));
        }
        Ok(())
    }

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
    cli.check()?;
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
    shared::io::print_pretty(&policy)?;
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
    let (mutability, exceptions) = cli
        .mutability()
        .unwrap_or_else(|| current_mutability(&repository));
    let encryption = repository
        .encryption_configuration()
        .map_or("AES256", |e| e.encryption_type().as_str());
    doc.set(
        "repository_settings",
        json!({
            "created": created,
            "changed": changed,
            "scan_on_push": scan,
            "tag_mutability": mutability.as_str(),
            "mutability_exceptions": exceptions,
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
        .encryption_configuration(encryption);
    if let Some((mode, exceptions)) = cli.mutability() {
        request = request
            .image_tag_mutability(mode)
            .set_image_tag_mutability_exclusion_filters(exception_filters(&exceptions)?);
    } else {
        request = request.image_tag_mutability(ImageTagMutability::Mutable);
    }
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

/// A repository's tag mutability and its exception filters, as ECR describes them.
fn current_mutability(repository: &Repository) -> (ImageTagMutability, Vec<String>) {
    let mode = repository
        .image_tag_mutability()
        .cloned()
        .unwrap_or(ImageTagMutability::Mutable);
    let exceptions = repository
        .image_tag_mutability_exclusion_filters()
        .iter()
        .map(|f| f.filter().to_owned())
        .collect();
    (mode, exceptions)
}

/// Whether two tag mutabilities are the same: the mode, and the exceptions in any order.
fn same_mutability(
    a: &(ImageTagMutability, Vec<String>),
    b: &(ImageTagMutability, Vec<String>),
) -> bool {
    let sorted = |list: &[String]| {
        let mut list = list.to_vec();
        list.sort();
        list.dedup();
        list
    };
    a.0 == b.0 && sorted(&a.1) == sorted(&b.1)
}

/// The API's exclusion filters for `exceptions`, or none (the field left out) when empty.
fn exception_filters(
    exceptions: &[String],
) -> Result<Option<Vec<ImageTagMutabilityExclusionFilter>>> {
    if exceptions.is_empty() {
        return Ok(None);
    }
    exceptions
        .iter()
        .map(|pattern| {
            ImageTagMutabilityExclusionFilter::builder()
                .filter_type(ImageTagMutabilityExclusionFilterType::Wildcard)
                .filter(pattern)
                .build()
                .map_err(|e| Error::internal(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
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
    if let Some(wanted) = cli.mutability()
        && !same_mutability(&current_mutability(existing), &wanted)
    {
        let (mode, exceptions) = wanted;
        ecr.put_image_tag_mutability()
            .repository_name(name)
            .set_registry_id(cli.registry_id.clone())
            .image_tag_mutability(mode.clone())
            .set_image_tag_mutability_exclusion_filters(exception_filters(&exceptions)?)
            .send()
            .await
            .map_err(|e| aws.error(&format!("setting tag mutability for {name}"), &e))?;
        if exceptions.is_empty() {
            changed.push(format!("tag_mutability={}", mode.as_str()));
        } else {
            changed.push(format!(
                "tag_mutability={} except {}",
                mode.as_str(),
                exceptions.join(",")
            ));
        }
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
            shared::cli::key_value("team=api=v2"),
            Ok(("team".into(), "api=v2".into()))
        );
        assert_eq!(
            shared::cli::key_value("empty="),
            Ok(("empty".into(), String::new()))
        );
        assert!(shared::cli::key_value("novalue").is_err());
        assert!(shared::cli::key_value("=x").is_err());
    }

    #[test]
    fn exceptions_follow_ecrs_filter_grammar() {
        assert_eq!(parse_exception("dev-*"), Ok("dev-*".into()));
        assert_eq!(parse_exception("v1.2_rc"), Ok("v1.2_rc".into()));
        assert!(parse_exception("").is_err());
        assert!(parse_exception(&"a".repeat(129)).is_err());
        assert!(parse_exception("feature/x").unwrap_err().contains("'/'"));
    }

    #[test]
    fn exceptions_pick_the_with_exclusion_mode() {
        let cli = Cli::parse_from(["ecr-repo", "--tag-mutability", "immutable"]);
        assert_eq!(
            cli.mutability(),
            Some((ImageTagMutability::Immutable, vec![]))
        );
        let cli = Cli::parse_from([
            "ecr-repo",
            "--tag-mutability",
            "mutable",
            "--mutability-exception",
            "v*",
            "--mutability-exception",
            "release-*",
            "--mutability-exception",
            "v*",
        ]);
        assert_eq!(
            cli.mutability(),
            Some((
                ImageTagMutability::MutableWithExclusion,
                vec!["v*".to_owned(), "release-*".to_owned()]
            ))
        );
        assert!(Cli::try_parse_from(["ecr-repo", "--mutability-exception", "x"]).is_err());
        let mut args = vec!["ecr-repo", "--tag-mutability", "immutable"];
        let patterns = ["a", "b", "c", "d", "e", "f"];
        for p in &patterns {
            args.extend(["--mutability-exception", p]);
        }
        assert!(Cli::parse_from(args).check().is_err());
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
