//! `lifecycle-set`: ECR lifecycle policies that are correct before they reach AWS.
//!
//! Builds a policy from flags or reads one from a file or stdin, validates it against AWS's
//! documented rules (the local ECR API server validates less), and applies it idempotently:
//! the current policy is read back, both are normalised and compared, and the policy is written
//! only when they differ, with the difference on stderr. `--check` only compares (exit 1 when
//! different), `--dry-run` only prints, `--preview` shows what the policy would do to the
//! repository's images (or an images file) without applying it.
//!
//! The result is the document's `lifecycle` field.

pub mod build;
pub mod policy;
pub mod preview;

use std::path::PathBuf;

use aws::{Aws, AwsArgs};
use aws_sdk_ecr::Client;
use aws_sdk_ecr::operation::get_lifecycle_policy::GetLifecyclePolicyError;
use aws_sdk_ecr::types::{DescribeImagesFilter, ImageIdentifier, ImageStatus, ImageStatusFilter};
use chrono::{DateTime, Utc};
use clap::Parser;
use serde_json::{Value, json};
use shared::cli::{Answer, Common};
use shared::exit::{self, Code};
use shared::files;
use shared::{Document, Error, Result, info, verbose, warn};

use crate::policy::{Policy, StorageClass};
use crate::preview::{EcrAction, Image, Outcome};

/// Build, check, apply and preview an ECR repository's lifecycle policy.
#[derive(Parser, Debug)]
#[command(
    name = "lifecycle-set",
    version,
    after_long_help = "EXAMPLES:
  # Keep the last 20 images tagged v* or release-*, expire untagged images after 7 days
  ecr-repo --repository my-app | lifecycle-set --keep-last 20 --tag-prefix v --expire-untagged-after 7

  # Never expire images tagged latest or prod-*, keep 50 pr-* images; fail the build on drift
  lifecycle-set --repository my-app --keep latest --keep 'prod-*' --rule 'pattern=pr-* count>50' --check

  # Apply a policy file to several repositories
  lifecycle-set --repository api --repository web --policy lifecycle.json

  # What would this policy expire? (evaluated locally with ECR's documented rules)
  lifecycle-set --repository my-app --policy lifecycle.json --preview --field lifecycle.preview.images

  # Validate and print the policy without calling AWS
  lifecycle-set --rule 'untagged pushed>14d' --dry-run --field lifecycle.policy

RULES (--rule): a selection (untagged, any, prefix=A,B, pattern=P*,Q*), a count (count>N,
pushed>Nd, pulled>Nd, archived>Nd) and optionally an action (expire, the default, or archive)."
)]
pub struct Cli {
    /// Repository to work on (repeatable: one output document each; default: the input
    /// document's `repository`).
    #[arg(long, value_name = "NAME")]
    pub repository: Vec<String>,

    /// Read the policy (ECR's JSON) from FILE, or from stdin with `-` (then no documents are read).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["keep", "expire_untagged_after", "keep_last", "rule"])]
    pub policy: Option<PathBuf>,

    /// Never expire images with a tag matching PATTERN (`*` wildcards): adds a rule of highest
    /// priority that identifies them (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub keep: Vec<String>,

    /// Expire untagged images pushed more than DAYS days ago.
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    pub expire_untagged_after: Option<u32>,

    /// Keep the last N images tagged with --tag-prefix (or --tag-pattern); expire older ones.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_last: Option<u32>,

    /// Tag prefix for --keep-last (repeatable: an image needs a tag matching each).
    #[arg(long, value_name = "PREFIX")]
    pub tag_prefix: Vec<String>,

    /// Tag pattern with `*` wildcards for --keep-last (repeatable, like --tag-prefix).
    #[arg(long, value_name = "PATTERN")]
    pub tag_pattern: Vec<String>,

    /// A rule in words, e.g. 'pattern=pr-* count>50' or 'any pulled>90d archive' (repeatable;
    /// priorities follow the order given). See RULES below.
    #[arg(long, value_name = "SPEC")]
    pub rule: Vec<String>,

    /// Only compare with the repository's current policy: exit 1 when they differ.
    #[arg(long, conflicts_with_all = ["dry_run", "preview"])]
    pub check: bool,

    /// Validate and print the policy in the document; call no AWS API.
    #[arg(long)]
    pub dry_run: bool,

    /// Show what the policy would do to each image instead of applying it.
    #[arg(long)]
    pub preview: bool,

    /// Images to preview against: aws-cli's describe-images output or image details, one
    /// per line (default: the repository's images, from DescribeImages).
    #[arg(long, value_name = "FILE", requires = "preview")]
    pub images: Option<PathBuf>,

    /// Evaluate the preview as of this time (RFC 3339), instead of now.
    #[arg(long, value_name = "TIME", value_parser = parse_now, requires = "preview")]
    pub now: Option<DateTime<Utc>>,

    /// How long to wait for ECR's own preview (StartLifecyclePolicyPreview) to compare with
    /// the local evaluation; 0 skips it. Where ECR has no preview API, the local evaluation
    /// stands alone and the tool says so.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = shared::duration::parse)]
    pub ecr_preview_timeout: std::time::Duration,

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

fn parse_now(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("'{text}' is not an RFC 3339 time such as 2025-01-31T12:00:00Z: {e}"))
}

impl Cli {
    fn flags(&self) -> build::Flags {
        build::Flags {
            keep: self.keep.clone(),
            expire_untagged_after: self.expire_untagged_after,
            keep_last: self.keep_last,
            tag_prefixes: self.tag_prefix.clone(),
            tag_patterns: self.tag_pattern.clone(),
            rules: self.rule.clone(),
        }
    }

    fn policy_from_stdin(&self) -> bool {
        self.policy.as_deref() == Some(std::path::Path::new("-"))
    }
}

/// Reads or builds the policy and validates it: every problem found, on one line.
pub fn load_policy(cli: &Cli) -> Result<Policy> {
    let policy = match &cli.policy {
        Some(path) => {
            let (text, from) = if cli.policy_from_stdin() {
                let bytes = files::read_limited(
                    std::io::stdin().lock(),
                    files::TEXT_LIMIT,
                    "the policy from standard input",
                )?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| Error::data("the policy from standard input is not UTF-8 text"))?;
                (text, "standard input".to_owned())
            } else {
                let text = files::read_text(path, files::TEXT_LIMIT, "policy file")?;
                (text, path.display().to_string())
            };
            Policy::parse(&text).map_err(|p| {
                Error::data(format!("policy from {from}: {p}"))
                    .with_hint("see the policy properties in the Amazon ECR user guide")
            })?
        }
        None if cli.flags().any() => build::build(&cli.flags()).map_err(|e| {
            Error::new(exit::USAGE, e).with_hint("see lifecycle-set --help for the rule flags")
        })?,
        None => {
            return Err(Error::new(exit::USAGE, "no policy given").with_hint(
                "pass --policy FILE, or build one with --keep-last, --expire-untagged-after, --keep or --rule",
            ));
        }
    };
    let problems = policy.validate();
    if let Some(first) = problems.first() {
        let more = match problems.len() {
            1 => String::new(),
            n => format!(
                "; and {} more: {}",
                n - 1,
                problems[1..]
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        };
        return Err(
            Error::data(format!("invalid lifecycle policy: {first}{more}")).with_hint(
                "ECR would refuse it; see the policy properties in the Amazon ECR user guide",
            ),
        );
    }
    Ok(policy)
}

/// Runs `lifecycle-set`.
pub fn run(cli: &Cli) -> Result<Code> {
    let policy = load_policy(cli)?;
    let images = match &cli.images {
        Some(path) => {
            let text = files::read_text(path, files::DATA_LIMIT, "images file")?;
            Some(preview::parse_images(&text).map_err(|e| {
                Error::data(format!("images file {}: {e}", path.display()))
                    .with_hint("give aws ecr describe-images output, or image details one per line")
            })?)
        }
        None => None,
    };
    for warning in preview::static_warnings(&policy) {
        warn!("{warning}");
    }
    let no_input = cli.common.no_input || cli.policy_from_stdin();
    shared::cli::runtime()?.block_on(async {
        let offline = cli.dry_run || (cli.preview && images.is_some());
        let aws = if offline {
            None
        } else {
            Some(Aws::load(&cli.aws).await?)
        };
        let ecr = aws.as_ref().map(Aws::ecr);
        shared::cli::pipeline_over(
            &cli.common,
            no_input,
            "repository",
            &cli.repository,
            |doc| {
                let job = Job {
                    cli,
                    policy: &policy,
                    images: images.as_deref(),
                    aws: aws.as_ref(),
                    ecr: ecr.as_ref(),
                };
                async move { job.process(doc).await }
            },
        )
        .await
    })
}

struct Job<'a> {
    cli: &'a Cli,
    policy: &'a Policy,
    images: Option<&'a [Image]>,
    aws: Option<&'a Aws>,
    ecr: Option<&'a Client>,
}

impl Job<'_> {
    fn services(&self) -> Result<(&Aws, &Client)> {
        self.aws
            .zip(self.ecr)
            .ok_or_else(|| Error::internal("AWS is needed but was not set up"))
    }

    async fn process(&self, mut doc: Document) -> Result<Answer> {
        let name = doc.str("repository").map(str::to_owned);
        if let Some(name) = &name {
            shared::names::check_repository(name)?;
        }
        let mut result = serde_json::Map::new();
        result.insert("policy".into(), self.policy.to_value());
        result.insert("rules".into(), json!(self.policy.rules.len()));
        if self.cli.dry_run && !self.cli.preview {
            result.insert("dry_run".into(), json!(true));
            info!(
                "policy with {} rules is valid ({} characters); not applied (--dry-run)",
                self.policy.rules.len(),
                self.policy.text().chars().count()
            );
            doc.set("lifecycle", Value::Object(result));
            return Ok(doc.into());
        }
        if self.cli.preview {
            let value = self.preview(name.as_deref()).await?;
            result.insert("preview".into(), value.0);
            result.insert("warnings".into(), json!(value.1));
            doc.set("lifecycle", Value::Object(result));
            return Ok(doc.into());
        }
        let name = name.ok_or_else(|| {
            Error::data("no repository named")
                .with_hint("pass --repository NAME, or give a document with a repository field")
        })?;
        let (aws, ecr) = self.services()?;
        let current = self.current(aws, ecr, &name).await?;
        let changes: Vec<String> = match &current {
            None => vec!["+ the whole policy (the repository has none)".to_owned()],
            Some(Ok(current)) => policy::diff(current, self.policy)
                .iter()
                .map(ToString::to_string)
                .collect(),
            Some(Err(problem)) => vec![format!(
                "~ the current policy cannot be read ({problem}); it would be replaced"
            )],
        };
        let has_changes = !changes.is_empty();
        for change in &changes {
            info!("{name}: {change}");
        }
        let mut written = false;
        if !has_changes {
            info!("lifecycle policy of {name} is up to date");
        } else if self.cli.check {
            info!(
                "lifecycle policy of {name} differs from the wanted one ({} changes)",
                changes.len()
            );
        } else {
            ecr.put_lifecycle_policy()
                .repository_name(&name)
                .set_registry_id(self.cli.registry_id.clone())
                .lifecycle_policy_text(self.policy.text())
                .send()
                .await
                .map_err(|e| aws.error(&format!("setting the lifecycle policy of {name}"), &e))?;
            written = true;
            info!(
                "set the lifecycle policy of {name} ({} rules)",
                self.policy.rules.len()
            );
        }
        result.insert("changed".into(), json!(has_changes));
        result.insert("written".into(), json!(written));
        result.insert("changes".into(), json!(changes));
        doc.set("lifecycle", Value::Object(result));
        // --check says no when the policy differs.
        Ok(Answer::no_if(self.cli.check && has_changes, doc))
    }

    /// The repository's current policy: `None` when it has none.
    async fn current(
        &self,
        aws: &Aws,
        ecr: &Client,
        name: &str,
    ) -> Result<Option<std::result::Result<Policy, policy::Problem>>> {
        match ecr
            .get_lifecycle_policy()
            .repository_name(name)
            .set_registry_id(self.cli.registry_id.clone())
            .send()
            .await
        {
            Ok(output) => Ok(Some(Policy::parse(
                output.lifecycle_policy_text().unwrap_or_default(),
            ))),
            Err(err)
                if err.as_service_error().is_some_and(
                    GetLifecyclePolicyError::is_lifecycle_policy_not_found_exception,
                ) =>
            {
                Ok(None)
            }
            Err(err) => Err(aws.error(&format!("reading the lifecycle policy of {name}"), &err)),
        }
    }

    async fn preview(&self, name: Option<&str>) -> Result<(Value, Vec<String>)> {
        let now = self.cli.now.unwrap_or_else(Utc::now);
        let mut ecr_preview = None;
        let (images, source) = if let Some(images) = self.images {
            (images.to_vec(), "images file")
        } else {
            let name = name.ok_or_else(|| {
                Error::data("no repository named for the preview").with_hint(
                    "pass --repository NAME or --images FILE, or give a document with a repository field",
                )
            })?;
            let (aws, ecr) = self.services()?;
            ecr_preview = self.ecr_preview(aws, ecr, name).await;
            (
                describe_images(aws, ecr, name, self.cli.registry_id.as_deref()).await?,
                "DescribeImages",
            )
        };
        let result = preview::evaluate(self.policy, &images, now);
        for decision in &result.decisions {
            verbose!(
                "{} [{}]: {}: {}",
                shared::show::digest(&decision.digest),
                decision.tags.join(", "),
                decision.outcome.as_str(),
                decision.reason
            );
        }
        for warning in &result.warnings {
            warn!("{warning}");
        }
        let mut value = preview::to_value(&result, source, now);
        if let Some(ecr) = ecr_preview {
            let differences = preview::differences(&result, &ecr);
            for d in &differences {
                warn!(
                    "ECR's preview says {} for {} (rule {}), the local evaluation {} (rule {}): ECR's answer is what will happen",
                    d.ecr.0.as_str(),
                    shared::show::digest(&d.digest),
                    d.ecr.1.map_or("-".to_owned(), |r| r.to_string()),
                    d.local.0.as_str(),
                    d.local.1.map_or("-".to_owned(), |r| r.to_string()),
                );
            }
            if differences.is_empty() {
                info!("ECR's own preview agrees with the local evaluation");
            }
            value["ecr"] = preview::ecr_value(&ecr, &differences);
        }
        info!(
            "preview{}: {} images; {} expire, {} archive, {} keep (not applied)",
            name.map(|n| format!(" of {n}")).unwrap_or_default(),
            result.decisions.len(),
            value["expire"],
            value["archive"],
            value["keep"]
        );
        Ok((value, result.warnings))
    }

    /// ECR's own preview of the policy, when ECR offers one within `--ecr-preview-timeout`:
    /// the images its rules act on (every page). `None`, said plainly, where the API is not
    /// there (the local ECR API server has none), fails, or takes too long; the local
    /// evaluation then stands alone.
    async fn ecr_preview(&self, aws: &Aws, ecr: &Client, name: &str) -> Option<Vec<EcrAction>> {
        let timeout = self.cli.ecr_preview_timeout;
        if timeout.is_zero() {
            return None;
        }
        let started = ecr
            .start_lifecycle_policy_preview()
            .repository_name(name)
            .set_registry_id(self.cli.registry_id.clone())
            .lifecycle_policy_text(self.policy.text())
            .send()
            .await;
        if let Err(err) = started {
            info!(
                "ECR's lifecycle policy preview API is not available at {} ({}); evaluating locally with ECR's documented rules",
                aws.endpoint(),
                shared::cli::one_line(&aws.error("starting the preview", &err).to_string())
            );
            return None;
        }
        verbose!("ECR's lifecycle policy preview started for {name}");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.ecr_preview_results(ecr, name).await {
                Ok(Some(actions)) => return Some(actions),
                Ok(None) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                }
                Ok(None) => {
                    warn!(
                        "ECR's preview for {name} did not finish within {}; showing the local evaluation alone",
                        shared::duration::show(timeout)
                    );
                    return None;
                }
                Err(message) => {
                    warn!("{message}; showing the local evaluation alone");
                    return None;
                }
            }
        }
    }

    /// Every page of a finished ECR preview; `Ok(None)` while it is still running.
    async fn ecr_preview_results(
        &self,
        ecr: &Client,
        name: &str,
    ) -> std::result::Result<Option<Vec<EcrAction>>, String> {
        use aws_sdk_ecr::types::{ImageActionType, LifecyclePolicyPreviewStatus};
        let mut actions = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = ecr
                .get_lifecycle_policy_preview()
                .repository_name(name)
                .set_registry_id(self.cli.registry_id.clone())
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "ECR's preview for {name} could not be read: {}",
                        shared::cli::one_line(&shared::error::chain(&e))
                    )
                })?;
            match page.status() {
                Some(LifecyclePolicyPreviewStatus::Complete) => {}
                Some(LifecyclePolicyPreviewStatus::InProgress) | None => return Ok(None),
                Some(other) => {
                    return Err(format!("ECR's preview for {name} ended {}", other.as_str()));
                }
            }
            for result in page.preview_results() {
                let outcome = match result.action().and_then(|a| a.r#type()) {
                    Some(ImageActionType::Transition) => Outcome::Archive,
                    _ => Outcome::Expire,
                };
                if let Some(digest) = result.image_digest() {
                    actions.push(EcrAction {
                        digest: digest.to_owned(),
                        outcome,
                        rule: result.applied_rule_priority().map(i64::from),
                    });
                }
            }
            match page.next_token() {
                Some(next) => token = Some(next.to_owned()),
                None => return Ok(Some(actions)),
            }
        }
    }
}

fn time(value: Option<&aws_sdk_ecr::primitives::DateTime>) -> Option<DateTime<Utc>> {
    value.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

/// Every image of the repository (every DescribeImages page, archived ones included), with the
/// digests each manifest list references.
async fn describe_images(
    aws: &Aws,
    ecr: &Client,
    name: &str,
    registry_id: Option<&str>,
) -> Result<Vec<Image>> {
    let mut images = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0usize;
    loop {
        let output = ecr
            .describe_images()
            .repository_name(name)
            .set_registry_id(registry_id.map(str::to_owned))
            .filter(
                DescribeImagesFilter::builder()
                    .image_status(ImageStatusFilter::Any)
                    .build(),
            )
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| aws.error(&format!("listing the images of {name}"), &e))?;
        pages += 1;
        for detail in output.image_details() {
            let (Some(digest), Some(pushed_at)) =
                (detail.image_digest(), time(detail.image_pushed_at()))
            else {
                continue;
            };
            images.push(Image {
                digest: digest.to_owned(),
                tags: detail.image_tags().to_vec(),
                pushed_at,
                last_pulled: time(detail.last_recorded_pull_time()),
                storage: if detail.image_status() == Some(&ImageStatus::Archived) {
                    StorageClass::Archive
                } else {
                    StorageClass::Standard
                },
                archived_at: time(detail.last_archived_at()),
                manifests: Vec::new(),
            });
        }
        token = output.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    verbose!(
        "{name}: {} images in {pages} DescribeImages pages",
        images.len()
    );
    let lists: Vec<String> = images
        .iter()
        .filter(|i| i.storage == StorageClass::Standard)
        .map(|i| i.digest.clone())
        .collect();
    let children = manifest_children(aws, ecr, name, registry_id, &lists).await?;
    for image in &mut images {
        if let Some(list) = children.iter().find(|(d, _)| *d == image.digest) {
            image.manifests.clone_from(&list.1);
        }
    }
    Ok(images)
}

/// The digests referenced by those of `digests` that are manifest lists / image indexes.
async fn manifest_children(
    aws: &Aws,
    ecr: &Client,
    name: &str,
    registry_id: Option<&str>,
    digests: &[String],
) -> Result<Vec<(String, Vec<String>)>> {
    use shared::media::{INDEX_TYPES, is_index};
    let mut found = Vec::new();
    // BatchGetImage takes at most 100 image ids a call.
    for chunk in digests.chunks(100) {
        let mut request = ecr
            .batch_get_image()
            .repository_name(name)
            .set_registry_id(registry_id.map(str::to_owned))
            .set_accepted_media_types(Some(INDEX_TYPES.iter().map(|s| (*s).to_owned()).collect()));
        for digest in chunk {
            request = request.image_ids(ImageIdentifier::builder().image_digest(digest).build());
        }
        let output = request
            .send()
            .await
            .map_err(|e| aws.error(&format!("reading the manifests of {name}"), &e))?;
        for image in output.images() {
            let is_index = image.image_manifest_media_type().is_some_and(is_index);
            let (Some(id), Some(manifest)) = (image.image_id(), image.image_manifest()) else {
                continue;
            };
            let Ok(parsed) = serde_json::from_str::<Value>(manifest) else {
                continue;
            };
            let listed = parsed.get("manifests").and_then(Value::as_array);
            if !is_index && listed.is_none() {
                continue;
            }
            let children: Vec<String> = listed
                .into_iter()
                .flatten()
                .filter_map(|m| m.get("digest").and_then(Value::as_str).map(str::to_owned))
                .collect();
            if let Some(digest) = id.image_digest()
                && !children.is_empty()
            {
                found.push((digest.to_owned(), children));
            }
        }
    }
    Ok(found)
}
