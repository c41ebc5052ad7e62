//! `img-push`: push every tag of the image document through the Docker Engine API, prove through
//! the registry's own API that every tag resolves to the pushed digest, and only then write the
//! deployment artifacts.
//!
//! Replaces `docker push $ECR_REGISTRY/$IMAGE_REPO:$IMAGE_TAG` (once per tag) and
//! `echo "$ECR_REGISTRY/$IMAGE_REPO:$IMAGE_TAG" > image_uri.txt`.
//!
//! Before anything is pushed: the credentials (as Docker finds them, else from ECR for an ECR
//! host, see `registry::credentials`), the repository (DescribeRepositories for ECR; the registry's
//! own answer otherwise) and every tag's current manifest. A tag already at this image is
//! reported as already present; a tag at another image is a conflict (exit 4) when tags are
//! immutable (the ECR repository's setting, or `--immutable`), before any upload.
//!
//! The Engine's `X-Registry-Auth` header is sent as base64url, which the daemon decodes (bollard
//! sends standard base64, which the daemon silently drops whenever it holds `+` or `/`): see
//! `docker::registry_auth_header`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws::{Aws, AwsArgs};
use bollard::Docker;
use bollard::query_parameters::{PushImageOptionsBuilder, TagImageOptionsBuilder};
use clap::Parser;
use docker::{Engine, registry_auth_header};
use futures_util::StreamExt;
use registry::credentials::{self, Found};
use registry::{Registry, Retry};
use serde_json::{Value, json};
use shared::cli::Common;
use shared::error::chain;
use shared::exit::{self, Code};
use shared::{Document, Error, Result, info, verbose, warn};
use tokio::sync::OnceCell;

/// Push every tag of the image document, verify the digest in the registry, write the
/// deployment artifacts.
#[derive(Parser, Debug)]
#[command(
    name = "img-push",
    version,
    after_long_help = "EXAMPLES:
  # The seed's push of the commit tag and latest, and image_uri.txt for the next stage
  ecr-login | img-tag | img-build | img-push --image-uri-file image_uri.txt

  # ECS standard deployment (imagedefinitions.json) and blue/green (imageDetail.json)
  ... | img-push --imagedefinitions imagedefinitions.json --container web \\
      --image-detail imageDetail.json

  # A plain registry whose tags must never move
  img-push --no-input --registry 127.0.0.1:5000 --repository my-app --tag 1.4.2 --immutable

  # Promote an image already in the registry: copy the manifest of sha-abc1234 as prod
  img-push --no-input --retag --from sha-abc1234 --registry 127.0.0.1:5000 \\
      --repository my-app --tag prod

  # Skip unchanged builds: img-build finds the content tag, img-push only adds the new tags
  img-tag --tag sha --tag content | img-build --skip-if-present | img-push

A tag that already names this image is reported as already present and succeeds; a tag that
names another image where tags are immutable exits with 4 before anything is uploaded."
)]
pub struct Cli {
    /// Registry host (default: the document's `registry`, or the host in its `references`).
    #[arg(long, value_name = "HOST")]
    pub registry: Option<String>,

    /// Repository in the registry (default: the document's `repository`).
    #[arg(long, value_name = "NAME")]
    pub repository: Option<String>,

    /// Tag to push (repeatable; default: the document's `references`, else its `tags`).
    #[arg(short = 't', long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// The local image to push, by id or reference (default: the document's `image_id`, else
    /// the first reference).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,

    /// Retag: add the tags to an image that is already in the registry by copying its manifest
    /// (the exact bytes, under the same media type; manifest lists and OCI indexes too). No
    /// local image, no Docker Engine, no pull, no layer traffic: e.g. promote `sha-abc1234` to
    /// `prod`. The image
    /// is the document's `digest`, or --from. Implied when img-build --skip-if-present skipped
    /// the build (`build.skipped`), or when the document has a `digest` but no `image_id`.
    #[arg(long)]
    pub retag: bool,

    /// With --retag (implies it): the image to copy, by tag or digest (`sha256:...`) in the same
    /// repository (default: the document's `digest`).
    #[arg(long, value_name = "TAG|DIGEST")]
    pub from: Option<String>,

    /// Treat the registry's tags as immutable: a tag that names another image is a conflict
    /// (exit 4) instead of being moved. ECR repositories say this themselves
    /// (imageTagMutability).
    #[arg(long)]
    pub immutable: bool,

    /// Attempts in all for a push or registry request that hits a transient fault (connection
    /// refused or reset, EOF, 5xx, 429), with exponential backoff and jitter between them.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub attempts: u32,

    /// Give up (exit 75) when the push has not finished after this many seconds, retries
    /// included.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800, value_parser = shared::duration::parse_seconds)]
    pub deadline: u64,

    /// After a verified push, write the image URI (by tag) to this file.
    #[arg(long, value_name = "FILE")]
    pub image_uri_file: Option<PathBuf>,

    /// After a verified push, write ECS's imagedefinitions.json (standard deployment) for
    /// --container to this file.
    #[arg(long, value_name = "FILE", requires = "container")]
    pub imagedefinitions: Option<PathBuf>,

    /// The container name for --imagedefinitions.
    #[arg(long, value_name = "NAME", requires = "imagedefinitions")]
    pub container: Option<String>,

    /// After a verified push, write ECS's imageDetail.json (blue/green deployment, the image
    /// by digest) to this file.
    #[arg(long, value_name = "FILE")]
    pub image_detail: Option<PathBuf>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub aws: AwsArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

impl Cli {
    /// The artifact files asked for.
    fn artifact_paths(&self) -> impl Iterator<Item = &std::path::Path> {
        [
            &self.image_uri_file,
            &self.imagedefinitions,
            &self.image_detail,
        ]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
    }
}

impl shared::cli::Cli for Cli {
    fn common(&self) -> &Common {
        &self.common
    }
}

/// Runs the tool: one push per input document.
pub fn run(cli: &Cli) -> Result<Code> {
    // Every artifact path is checked before anything is pushed.
    for path in cli.artifact_paths() {
        shared::files::check_writable(path)?;
    }
    shared::cli::runtime()?.block_on(async {
        // The daemon is asked for on the first push: a retag needs none.
        let engine = OnceCell::new();
        shared::cli::pipeline(&cli.common, |doc| Box::pin(push(cli, &engine, doc))).await
    })
}

/// Where to push: a registry, a repository and the tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The registry host (`127.0.0.1:5000`).
    pub registry: String,
    /// The repository (`team/my-app`).
    pub repository: String,
    /// The tags, in order, without repeats.
    pub tags: Vec<String>,
}

impl Target {
    /// `registry/repository`.
    #[must_use]
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// Splits `host[:port]/repo/name:tag` into registry, repository and tag (`latest` when none),
/// as [`shared::names::Reference`] reads it; a digest reference is refused.
pub fn parse_reference(reference: &str) -> Result<(String, String, String)> {
    let parsed = shared::names::Reference::parse(reference)?;
    if parsed.digest.is_some() {
        return Err(Error::data(format!(
            "reference '{reference}' cannot be pushed: a digest reference names an image, not a tag"
        ))
        .with_hint("give references as registry/repository:tag, e.g. 127.0.0.1:5000/my-app:1.0"));
    }
    let tag = parsed.tag.unwrap_or_else(|| "latest".to_owned());
    Ok((parsed.registry, parsed.repository, tag))
}

/// What to push, from the flags and the document: flags win; then the document's `references`;
/// then its `registry`, `repository` and `tags`.
pub fn target(cli: &Cli, doc: &Document) -> Result<Target> {
    let references = doc.strings("references");
    let mut registry = cli.registry.clone();
    let mut repository = cli.repository.clone();
    let mut tags: Vec<String> = cli.tags.clone();
    if tags.is_empty() && !references.is_empty() {
        let mut first: Option<(String, String)> = None;
        for reference in references {
            let (host, repo, tag) = parse_reference(reference)?;
            match &first {
                None => first = Some((host.clone(), repo.clone())),
                Some((first_host, first_repo))
                    if (first_host != &host || first_repo != &repo)
                        && cli.registry.is_none()
                        && cli.repository.is_none() =>
                {
                    return Err(Error::data(format!(
                        "the document's references name more than one repository ({reference} and {first_host}/{first_repo})"
                    ))
                    .with_hint(
                        "img-push pushes one repository per document: split the references",
                    ));
                }
                Some(_) => {}
            }
            registry.get_or_insert(host);
            repository.get_or_insert(repo);
            tags.push(tag);
        }
    }
    if tags.is_empty() {
        tags = doc.strings("tags").into_iter().map(str::to_owned).collect();
    }
    let registry = registry
        .or_else(|| doc.str("registry").map(str::to_owned))
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            Error::data("no registry to push to").with_hint(
                "pipe in a document from ecr-login/img-tag, or pass --registry and --repository",
            )
        })?;
    let repository = repository
        .or_else(|| doc.str("repository").map(str::to_owned))
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            Error::data("no repository to push to").with_hint(
                "set the document's repository (img-tag --repository), or pass --repository",
            )
        })?;
    shared::names::check_host(&registry)?;
    shared::names::check_repository(&repository)?;
    let mut seen = std::collections::HashSet::new();
    tags.retain(|t| seen.insert(t.clone()));
    if tags.is_empty() {
        return Err(
            Error::data(format!("no tags to push to {registry}/{repository}"))
                .with_hint("tag the image first (img-tag), or pass --tag"),
        );
    }
    for tag in &tags {
        shared::names::check_tag(tag)?;
    }
    Ok(Target {
        registry,
        repository,
        tags,
    })
}

/// Where a tag stands before the push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagState {
    /// The registry has no such tag.
    New,
    /// The tag already names this image, at this manifest digest.
    Present(String),
    /// The tag names another image, at this manifest digest.
    Elsewhere(String),
}

/// The tags that name another image where tags are immutable, as `tag names <digest>`: each
/// one a conflict that stops a push or a retag before anything is stored.
fn conflicts(
    tags: &[String],
    states: &[TagState],
    immutable: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    tags.iter()
        .zip(states)
        .filter_map(|(tag, state)| match state {
            TagState::Elsewhere(digest) if immutable(tag) => Some(format!("{tag} names {digest}")),
            _ => None,
        })
        .collect()
}

/// Whether a tag is immutable in an ECR repository whose mutability is `mutability`
/// (`MUTABLE`, `IMMUTABLE`, `IMMUTABLE_WITH_EXCLUSION`, ...) with `exclusions` (wildcard filters
/// of tags that stay mutable).
#[must_use]
pub fn ecr_tag_immutable(mutability: &str, exclusions: &[String], tag: &str) -> bool {
    match mutability {
        "IMMUTABLE" => true,
        "IMMUTABLE_WITH_EXCLUSION" => !exclusions.iter().any(|f| shared::ecr::tag_matches(f, tag)),
        "MUTABLE_WITH_EXCLUSION" => exclusions.iter().any(|f| shared::ecr::tag_matches(f, tag)),
        _ => false,
    }
}

/// The digest in a push stream's final status (`1.0: digest: sha256:... size: 527`).
#[must_use]
pub fn digest_in_status(status: &str) -> Option<String> {
    let (_, after) = status.split_once("digest: ")?;
    let digest = after.split_whitespace().next()?;
    let (algorithm, hex) = digest.split_once(':')?;
    let ok = !algorithm.is_empty()
        && hex.len() >= 32
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    ok.then(|| digest.to_owned())
}

/// Turns the daemon's error text for a failed push into an error with the right exit code:
/// denials fail fast, a missing repository says so, everything else is a transient fault.
#[must_use]
pub fn classify_push_error(text: &str, target: &Target, tag: &str) -> Error {
    let text = shared::cli::one_line(text);
    let lower = text.to_lowercase();
    let name = format!("{}:{tag}", target.name());
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    if has(&[
        "no basic auth credentials",
        "unauthorized",
        "authentication required",
    ]) {
        Error::no_perm(format!(
            "registry {} refused the push of {name}: {text}",
            target.registry
        ))
        .with_hint(format!(
            "the credentials are missing, wrong or expired: run ecr-login --registry {}",
            target.registry
        ))
    } else if has(&["denied", "forbidden"]) {
        Error::no_perm(format!(
            "registry {} denied the push of {name}: {text}",
            target.registry
        ))
        .with_hint("grant the build's role push access to the repository")
    } else if has(&["tag invalid", "immutable"]) {
        Error::new(
            exit::CONFLICT,
            format!(
                "registry {} refused to move tag {tag}: {text}",
                target.registry
            ),
        )
        .with_hint("the repository's tags are immutable: push under a new tag")
    } else if has(&[
        "name unknown",
        "name_unknown",
        "repository does not exist",
        "repositorynotfound",
    ]) {
        missing_repository(target, &text)
    } else if has(&[
        "does not exist locally",
        "no such image",
        "an image does not exist",
    ]) {
        Error::data(format!("the Docker Engine has no image {name}: {text}"))
            .with_hint("build and tag it first (img-build)")
    } else {
        Error::unavailable(format!(
            "registry {} did not take {name}: {text}",
            target.registry
        ))
        .with_hint("check that the registry is running and reachable, then run img-push again")
    }
}

fn missing_repository(target: &Target, said: &str) -> Error {
    let mut message = format!(
        "repository {} does not exist in registry {}",
        target.repository, target.registry
    );
    if !said.is_empty() {
        message = format!("{message}: the registry said {said}");
    }
    Error::data(message).with_hint("create it with ecr-repo")
}

/// What the push stream said, counted.
#[derive(Debug, Default)]
struct Stream {
    digest: Option<String>,
    pushed: u64,
    existing: u64,
}

/// Per-layer progress on stderr: every change when stderr is a terminal, else a line every
/// few seconds (a CI log should not hold a line per megabyte).
struct Progress {
    name: String,
    every: Duration,
    last: Option<Instant>,
    /// Bytes sent and total of each layer in flight, keyed by its size (the Engine API's push
    /// messages carry no layer id through bollard).
    layers: BTreeMap<i64, i64>,
    done: u64,
    existing: u64,
    last_retry: Option<i64>,
}

impl Progress {
    fn new(name: String) -> Self {
        let every = if shared::log::stderr_is_terminal() {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        Self {
            name,
            every,
            last: None,
            layers: BTreeMap::new(),
            done: 0,
            existing: 0,
            last_retry: None,
        }
    }

    fn update(&mut self, status: &str, current: Option<i64>, total: Option<i64>) {
        match status {
            "Pushing" => {
                if let (Some(current), Some(total)) = (current, total) {
                    self.layers.insert(total, current.min(total));
                }
                self.maybe_print();
            }
            "Pushed" => {
                self.done += 1;
                verbose!("{}: layer {} pushed", self.name, self.done + self.existing);
            }
            "Layer already exists" => self.existing += 1,
            s if s.starts_with("Mounted from") => self.existing += 1,
            s if s.starts_with("Retrying in ") && self.retry_announced(s) => {
                warn!(
                    "{}: a layer upload failed; the Docker daemon retries it in {} s",
                    self.name,
                    self.last_retry.unwrap_or_default()
                );
            }
            _ => {}
        }
    }

    /// Whether a `Retrying in N seconds` status starts a new countdown (the daemon counts down
    /// each second, and repeats the first number).
    fn retry_announced(&mut self, status: &str) -> bool {
        let seconds: Option<i64> = status
            .trim_start_matches("Retrying in ")
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok());
        let new = match (self.last_retry, seconds) {
            (Some(last), Some(n)) => n > last,
            _ => true,
        };
        self.last_retry = seconds;
        new
    }

    fn maybe_print(&mut self) {
        if self.last.is_some_and(|t| t.elapsed() < self.every) {
            return;
        }
        self.last = Some(Instant::now());
        let layers: Vec<String> = self
            .layers
            .iter()
            .filter(|(total, sent)| *sent < *total)
            .map(|(total, sent)| {
                format!(
                    "{} of {}",
                    shared::show::bytes(u64::try_from(*sent).unwrap_or_default()),
                    shared::show::bytes(u64::try_from(*total).unwrap_or_default())
                )
            })
            .collect();
        if !layers.is_empty() {
            info!(
                "{}: uploading {} ({} layers pushed, {} already there)",
                self.name,
                layers.join(", "),
                self.done,
                self.existing
            );
        }
    }
}

/// One push of one tag through the Engine, to the end of its stream.
async fn push_tag(
    docker: &Docker,
    target: &Target,
    tag: &str,
    deadline: Instant,
    progress: &mut Progress,
) -> Result<Stream> {
    let name = target.name();
    let options = PushImageOptionsBuilder::new().tag(tag).build();
    // The credentials go in the header `docker` carries (see Engine::with_registry_auth).
    let mut stream = docker.push_image(&name, Some(options), None);
    let mut out = Stream::default();
    let consume = async {
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    let status = info.status.unwrap_or_default();
                    let detail = info.progress_detail.unwrap_or_default();
                    progress.update(&status, detail.current, detail.total);
                    match status.as_str() {
                        "Pushed" => out.pushed += 1,
                        "Layer already exists" => out.existing += 1,
                        s if s.starts_with("Mounted from") => out.existing += 1,
                        s => {
                            if let Some(digest) = digest_in_status(s) {
                                out.digest = Some(digest);
                            }
                        }
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(classify_push_error(&error, target, tag));
                }
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code,
                    message,
                }) => {
                    return Err(if status_code == 404 {
                        Error::data(format!(
                            "the Docker Engine has no image {name}:{tag}: {}",
                            shared::cli::one_line(&message)
                        ))
                        .with_hint("build and tag it first (img-build)")
                    } else {
                        classify_push_error(&message, target, tag)
                    });
                }
                Err(e) => {
                    return Err(Error::unavailable(format!(
                        "the Docker Engine stopped answering during the push of {name}:{tag} ({})",
                        chain(&e)
                    )));
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout_at(deadline.into(), consume).await {
        Ok(Ok(())) => Ok(out),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::timeout(format!(
            "the push of {name}:{tag} did not finish before the deadline"
        ))
        .with_hint("raise --deadline, or check the network to the registry")),
    }
}

/// Whether each tag is immutable: all of them with --immutable; in ECR, as the repository's
/// setting says; elsewhere none.
async fn immutability(cli: &Cli, target: &Target) -> Result<impl Fn(&str) -> bool + use<>> {
    let forced = cli.immutable;
    let ecr = ecr_repository(cli, target).await?;
    Ok(move |tag: &str| {
        forced
            || ecr
                .as_ref()
                .is_some_and(|(m, exclusions)| ecr_tag_immutable(m, exclusions, tag))
    })
}

/// ECR's answer for the repository: whether tags are immutable, and its exclusion filters.
async fn ecr_repository(cli: &Cli, target: &Target) -> Result<Option<(String, Vec<String>)>> {
    let Some(host) = shared::ecr::parse_host(&target.registry) else {
        return Ok(None);
    };
    let mut args = cli.aws.clone();
    if args.region.is_none() {
        args.region = Some(host.region.clone());
    }
    let aws = Aws::load(&args).await?;
    let answer = aws
        .ecr()
        .describe_repositories()
        .registry_id(&host.account)
        .repository_names(&target.repository)
        .send()
        .await;
    match answer {
        Ok(output) => {
            let Some(repo) = output.repositories().first() else {
                return Err(missing_repository(target, ""));
            };
            let mutability = repo
                .image_tag_mutability()
                .map_or_else(|| "MUTABLE".to_owned(), |m| m.as_str().to_owned());
            let exclusions = repo
                .image_tag_mutability_exclusion_filters()
                .iter()
                .map(|f| f.filter().to_owned())
                .collect();
            Ok(Some((mutability, exclusions)))
        }
        Err(err)
            if err.as_service_error().is_some_and(
                aws_sdk_ecr::operation::describe_repositories::DescribeRepositoriesError::is_repository_not_found_exception,
            ) =>
        {
            Err(missing_repository(target, ""))
        }
        Err(err) => Err(aws.error(
            &format!("looking up repository {}", target.repository),
            &err,
        )),
    }
}

/// The state of each tag before the push.
async fn tag_states(
    registry: &Registry,
    target: &Target,
    image_id: &str,
    repo_digests: &[String],
) -> Result<Vec<TagState>> {
    let manifests = registry.manifests(&target.repository, &target.tags).await?;
    let mut states = Vec::new();
    for manifest in manifests {
        let state = match manifest {
            None => TagState::New,
            Some(manifest) => {
                let same = manifest.config_digest().as_deref() == Some(image_id)
                    || repo_digests.contains(&format!("{}@{}", target.name(), manifest.digest));
                if same {
                    TagState::Present(manifest.digest)
                } else {
                    TagState::Elsewhere(manifest.digest)
                }
            }
        };
        states.push(state);
    }
    Ok(states)
}

// One push, told in order: pre-flight, push, verification, artifacts, document.
#[allow(clippy::too_many_lines)]
async fn push(cli: &Cli, engine: &OnceCell<Engine>, doc: Document) -> Result<Document> {
    if let Some(why) = retag_reason(cli, &doc) {
        return retag(cli, doc, why).await;
    }
    // The names are checked before anything is asked of the Engine or a registry.
    let target = target(cli, &doc)?;
    let engine = engine.get_or_try_init(Engine::connect).await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(cli.deadline);
    let name = target.name();

    // The local image.
    let image = cli
        .image
        .clone()
        .or_else(|| doc.str("image_id").map(str::to_owned))
        .unwrap_or_else(|| format!("{name}:{}", target.tags[0]));
    let inspect = engine
        .client
        .inspect_image(&image)
        .await
        .map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            } => Error::data(format!(
                "the Docker Engine at {} has no image {image}",
                engine.host
            ))
            .with_hint("build it first (img-build), or name it with --image"),
            e => Error::unavailable(format!(
                "the Docker Engine at {} did not describe image {image} ({})",
                engine.host,
                chain(&e)
            )),
        })?;
    let image_id = inspect.id.clone().unwrap_or_default();
    let repo_digests = inspect.repo_digests.clone().unwrap_or_default();

    // Credentials and the repository, before anything moves.
    let retry = Retry::within(cli.attempts, deadline);
    let (
        registry,
        Found {
            credentials,
            source,
        },
    ) = credentials::registry(&target.registry, &cli.aws, retry.clone()).await?;
    let immutable = immutability(cli, &target).await?;
    registry.check_push_access(&target.repository).await?;
    let exists = registry.repository_exists(&target.repository).await?;
    if !exists {
        verbose!("{name} has no tags yet: the registry creates the repository on the first push");
    }
    let states = if exists {
        tag_states(&registry, &target, &image_id, &repo_digests).await?
    } else {
        vec![TagState::New; target.tags.len()]
    };
    let conflicts = conflicts(&target.tags, &states, &immutable);
    if !conflicts.is_empty() {
        return Err(Error::new(
            exit::CONFLICT,
            format!(
                "immutable tags of {name} already name another image ({}), not image {}: nothing was pushed",
                conflicts.join("; "),
                shared::show::digest(&image_id)
            ),
        )
        .with_hint("push under a new tag (img-tag), or remove the old image from the registry first"));
    }

    // Tag locally, then push what is not there yet.
    for tag in &target.tags {
        let options = TagImageOptionsBuilder::new().repo(&name).tag(tag).build();
        engine
            .client
            .tag_image(&image_id, Some(options))
            .await
            .map_err(|e| {
                Error::unavailable(format!(
                    "the Docker Engine did not tag image {} as {name}:{tag} ({})",
                    shared::show::digest(&image_id),
                    chain(&e)
                ))
            })?;
    }
    let header = registry_auth_header(credentials.as_ref(), &target.registry);
    let docker = engine.with_registry_auth(&header);
    let mut pushed_tags = Vec::new();
    let mut present_tags = Vec::new();
    let mut digest: Option<String> = None;
    let mut layers: Option<(u64, u64)> = None;
    let mut attempts_used = 0u32;
    for (tag, state) in target.tags.iter().zip(&states) {
        if let TagState::Present(existing) = state {
            info!("{name}:{tag} is already present at {existing}");
            present_tags.push(tag.clone());
            continue;
        }
        if matches!(state, TagState::New) {
            info!("pushing {name}:{tag}");
        } else {
            info!("pushing {name}:{tag} (moving it from another image)");
        }
        let progress = std::cell::RefCell::new(Progress::new(format!("{name}:{tag}")));
        let result = retry
            .run(&format!("pushing {name}:{tag}"), |attempt| {
                attempts_used = attempts_used.max(attempt);
                let progress = &progress;
                let docker = &docker;
                let target = &target;
                // Attempts run one after another, so the borrow is never contended.
                #[allow(clippy::await_holding_refcell_ref)]
                async move {
                    let mut progress = progress.borrow_mut();
                    push_tag(docker, target, tag, deadline, &mut progress).await
                }
            })
            .await;
        let stream = result?;
        // Layers pushed by failed attempts show as already there in the last one.
        let sent_before = progress.borrow().done.saturating_sub(stream.pushed);
        if layers.is_none() {
            let total = stream.pushed + stream.existing;
            let pushed = (stream.pushed + sent_before).min(total);
            layers = Some((pushed, total - pushed));
        }
        let this = match stream.digest {
            Some(d) => d,
            None => inspect_digest(engine, &name, &image_id).await?,
        };
        if let Some(first) = &digest
            && *first != this
        {
            return Err(Error::unavailable(format!(
                "the pushes of {name} gave two digests, {first} and {this}"
            )));
        }
        digest = Some(this);
        pushed_tags.push(tag.clone());
    }
    let digest = match digest {
        Some(d) => d,
        None => states
            .iter()
            .find_map(|s| match s {
                TagState::Present(d) => Some(d.clone()),
                _ => None,
            })
            .ok_or_else(|| Error::internal("no tag was pushed and none was present"))?,
    };
    let outcome = Outcome {
        target,
        digest,
        image_id: Some(image_id),
        pushed_tags,
        present_tags,
        layers,
        source: source.to_string(),
        attempts: attempts_used.max(1),
        retag: None,
        started,
    };
    finish(cli, &registry, doc, outcome, &immutable).await
}

/// What a push or a retag did, for the verification and the document.
struct Outcome {
    target: Target,
    digest: String,
    /// The local image pushed (`None` for a retag: nothing local was involved).
    image_id: Option<String>,
    pushed_tags: Vec<String>,
    present_tags: Vec<String>,
    /// Layers pushed and already there (`None` when no layer went through the Engine).
    layers: Option<(u64, u64)>,
    /// Where the credentials came from.
    source: String,
    attempts: u32,
    /// For a retag: the source reference and why img-push retagged.
    retag: Option<(String, String)>,
    started: Instant,
}

/// Proves through the registry's own API that every tag resolves to the digest, writes the
/// artifacts and fills in the document: the same for a push and a retag.
async fn finish(
    cli: &Cli,
    registry: &Registry,
    mut doc: Document,
    outcome: Outcome,
    immutable: &dyn Fn(&str) -> bool,
) -> Result<Document> {
    let Outcome {
        target,
        digest,
        image_id,
        pushed_tags,
        present_tags,
        layers,
        source,
        attempts,
        retag,
        started,
    } = outcome;
    let name = target.name();
    let found = registry
        .manifest_digests(&target.repository, &target.tags)
        .await?;
    for (tag, found) in target.tags.iter().zip(found) {
        match found {
            Some(found) if found == digest => {}
            Some(found) => {
                return Err(Error::new(
                    exit::CONFLICT,
                    format!(
                        "after the push, {name}:{tag} resolves to {found}, not to the pushed {digest}"
                    ),
                )
                .with_hint("another push moved the tag meanwhile: push again, or use immutable tags"));
            }
            None => {
                return Err(Error::unavailable(format!(
                    "after the push, registry {} does not know {name}:{tag}",
                    target.registry
                ))
                .with_hint("the registry lost the push: run img-push again"));
            }
        }
    }

    let image_uri = format!("{name}:{}", target.tags[0]);
    let digest_uri = format!("{name}@{digest}");
    write_artifacts(cli, &image_uri, &digest_uri)?;

    let (layers_pushed, layers_existing) = layers.unwrap_or((0, 0));
    let seconds = started.elapsed().as_secs_f64();
    let verb = if retag.is_some() { "tagged" } else { "pushed" };
    let mut summary = if pushed_tags.is_empty() {
        format!("nothing to push: {digest_uri} is there")
    } else {
        format!("{verb} {digest_uri} as {}", pushed_tags.join(", "))
    };
    if !present_tags.is_empty() {
        let _ = write!(summary, "; already present: {}", present_tags.join(", "));
    }
    if layers.is_some() {
        let _ = write!(
            summary,
            "; layers: {layers_pushed} pushed, {layers_existing} already in the registry"
        );
    } else if retag.is_some() {
        summary.push_str("; manifest copied, no layers sent");
    }
    info!("{summary} ({seconds:.1} s)");

    doc.set("registry", target.registry.as_str());
    doc.set("repository", target.repository.as_str());
    doc.set("tags", target.tags.clone());
    doc.set(
        "references",
        target
            .tags
            .iter()
            .map(|t| format!("{name}:{t}"))
            .collect::<Vec<_>>(),
    );
    if let Some(image_id) = &image_id {
        doc.set("image_id", image_id.as_str());
    }
    doc.set("digest", digest.as_str());
    doc.set("image_uri", image_uri.as_str());
    doc.set("digest_uri", digest_uri.as_str());
    let mut push = json!({
        "registry": target.registry,
        "repository": target.repository,
        "tags_pushed": pushed_tags,
        "tags_present": present_tags,
        "immutable": target.tags.iter().any(|t| immutable(t)),
        "credentials": source,
        "attempts": attempts,
        "seconds": (seconds * 10.0).round() / 10.0,
    });
    if layers.is_some() {
        push["layers_pushed"] = json!(layers_pushed);
        push["layers_existing"] = json!(layers_existing);
    }
    if let Some((from, why)) = retag {
        push["retag"] = json!({ "from": from, "reason": why });
    }
    doc.set("push", push);
    Ok(doc)
}

/// Why this document is retagged rather than pushed, or `None` for a push: --retag or --from;
/// img-build skipped the build (`build.skipped`); or the document names a digest and no local
/// image. --image always means a push.
fn retag_reason(cli: &Cli, doc: &Document) -> Option<String> {
    if cli.retag || cli.from.is_some() {
        return Some("--retag".to_owned());
    }
    if cli.image.is_some() {
        return None;
    }
    let skipped = doc
        .get("build")
        .and_then(|b| b.get("skipped"))
        .and_then(Value::as_bool)
        == Some(true);
    if skipped {
        return Some("img-build skipped the build".to_owned());
    }
    (doc.str("digest").is_some() && doc.str("image_id").is_none())
        .then(|| "the document has a digest and no local image".to_owned())
}

/// Where each tag stands against the digest to copy; a tag at another image where tags are
/// immutable is a conflict (exit 4) before anything is stored.
async fn retag_states(
    registry: &Registry,
    target: &Target,
    digest: &str,
    immutable: &dyn Fn(&str) -> bool,
) -> Result<Vec<TagState>> {
    let name = target.name();
    let states: Vec<TagState> = registry
        .manifest_digests(&target.repository, &target.tags)
        .await?
        .into_iter()
        .map(|found| match found {
            None => TagState::New,
            Some(d) if d == digest => TagState::Present(d),
            Some(d) => TagState::Elsewhere(d),
        })
        .collect();
    let conflicts = conflicts(&target.tags, &states, &immutable);
    if !conflicts.is_empty() {
        return Err(Error::new(
            exit::CONFLICT,
            format!(
                "immutable tags of {name} already name another image ({}), not {digest}: nothing was tagged",
                conflicts.join("; ")
            ),
        )
        .with_hint("retag under a new tag, or remove the old image from the registry first"));
    }
    Ok(states)
}

/// Adds the target's tags to an image already in the registry: reads its manifest and stores
/// the same bytes, under the same media type, under each tag that does not name it yet.
// One retag, told in order: source, pre-flight, copies, then the shared verification.
#[allow(clippy::too_many_lines)]
async fn retag(cli: &Cli, doc: Document, why: String) -> Result<Document> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(cli.deadline);
    let target = target(cli, &doc)?;
    let name = target.name();
    let from = cli
        .from
        .clone()
        .or_else(|| doc.str("digest").map(str::to_owned))
        .ok_or_else(|| {
            Error::data(format!("nothing to retag in {name}: no --from and no digest in the document"))
                .with_hint("name the image to copy with --from TAG|DIGEST, or pipe in a document with its digest")
        })?;
    shared::names::check_tag_or_digest(&from).map_err(|e| {
        e.context("--from").with_hint(
            "name an image of the same repository: a tag, or a digest as sha256:<64 hex>",
        )
    })?;
    let (registry, Found { source, .. }) = credentials::registry(
        &target.registry,
        &cli.aws,
        Retry::within(cli.attempts, deadline),
    )
    .await?;
    let immutable = immutability(cli, &target).await?;
    let missing = || {
        Error::data(format!("cannot retag: {name} has no image {from}"))
            .with_hint("push the image first (img-push), or name one that is there with --from")
    };
    registry.check_push_access(&target.repository).await?;
    let manifest = registry
        .manifest(&target.repository, &from)
        .await?
        .ok_or_else(missing)?;
    if shared::names::is_digest(&from) && manifest.digest != from {
        return Err(Error::unavailable(format!(
            "registry {} answered {name}@{from} with a manifest of digest {}",
            target.registry, manifest.digest
        )));
    }
    let digest = manifest.digest.clone();
    verbose!(
        "retagging {name}@{digest} ({}, {} bytes) from {from}",
        manifest.media_type,
        manifest.body.len()
    );
    let states = retag_states(&registry, &target, &digest, &immutable).await?;
    let mut pushed_tags = Vec::new();
    let mut present_tags = Vec::new();
    for (tag, state) in target.tags.iter().zip(&states) {
        match state {
            TagState::Present(_) => {
                info!("{name}:{tag} is already present at {digest}");
                present_tags.push(tag.clone());
                continue;
            }
            TagState::New => info!("tagging {name}@{digest} as {tag}"),
            TagState::Elsewhere(old) => {
                info!("tagging {name}@{digest} as {tag} (moving it from {old})");
            }
        }
        let stored = registry
            .put_manifest(
                &target.repository,
                tag,
                &manifest.media_type,
                &manifest.body,
            )
            .await?;
        if stored != digest {
            return Err(Error::unavailable(format!(
                "registry {} stored {name}:{tag} as {stored}, not as the copied {digest}",
                target.registry
            )));
        }
        pushed_tags.push(tag.clone());
    }
    let outcome = Outcome {
        target,
        digest,
        image_id: None,
        pushed_tags,
        present_tags,
        layers: None,
        source: source.to_string(),
        attempts: 1,
        retag: Some((from, why)),
        started,
    };
    finish(cli, &registry, doc, outcome, &immutable).await
}

/// The digest of `name` from the image's repo digests, when the push stream did not say it.
async fn inspect_digest(engine: &Engine, name: &str, image_id: &str) -> Result<String> {
    let inspect = engine.client.inspect_image(image_id).await.map_err(|e| {
        Error::unavailable(format!(
            "the Docker Engine did not describe image {} after the push ({})",
            shared::show::digest(image_id),
            chain(&e)
        ))
    })?;
    inspect
        .repo_digests
        .unwrap_or_default()
        .iter()
        .find_map(|d| d.strip_prefix(&format!("{name}@")).map(str::to_owned))
        .ok_or_else(|| {
            Error::unavailable(format!(
                "the push of {name} reported no digest, and the image has none for it"
            ))
        })
}

/// The artifact files, written only now that the push is verified: all of them, or none.
fn write_artifacts(cli: &Cli, image_uri: &str, digest_uri: &str) -> Result<()> {
    let mut outputs: Vec<(&std::path::Path, Vec<u8>)> = Vec::new();
    if let Some(path) = &cli.image_uri_file {
        outputs.push((path, format!("{image_uri}\n").into_bytes()));
    }
    if let (Some(path), Some(container)) = (&cli.imagedefinitions, &cli.container) {
        let value = json!([{ "name": container, "imageUri": image_uri }]);
        outputs.push((path, pretty(&value)));
    }
    if let Some(path) = &cli.image_detail {
        outputs.push((path, pretty(&json!({ "ImageURI": digest_uri }))));
    }
    shared::files::write_all(&outputs)?;
    for (path, _) in &outputs {
        verbose!("wrote {}", path.display());
    }
    Ok(())
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(value).unwrap_or_default();
    text.push(b'\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["img-push"];
        all.extend_from_slice(args);
        Cli::parse_from(all)
    }

    fn doc(value: Value) -> Document {
        Document::from_value(value, "test").unwrap()
    }

    #[test]
    fn references_split_into_registry_repository_and_tag() {
        let cases = [
            (
                "127.0.0.1:5000/my-app:1.0",
                ("127.0.0.1:5000", "my-app", "1.0"),
            ),
            ("localhost/team/app", ("localhost", "team/app", "latest")),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/a/b:c",
                ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "a/b", "c"),
            ),
        ];
        for (reference, (host, repo, tag)) in cases {
            let parsed = parse_reference(reference).unwrap();
            assert_eq!(
                parsed,
                (host.into(), repo.into(), tag.into()),
                "{reference}"
            );
        }
        let digest = format!("sha256:{}", "a".repeat(64));
        for bad in [
            "my-app:1.0",
            "team/app:1",
            &format!("r.example/app@{digest}"),
            "r.example/app@sha256:abc",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:443@other.host/app:1",
            "r.example/../other:1",
            "r.example/app:1\nx",
        ] {
            assert_eq!(
                parse_reference(bad).unwrap_err().code(),
                exit::DATA,
                "{bad}"
            );
        }
    }

    #[test]
    fn targets_come_from_flags_then_references_then_tags() {
        let d = doc(json!({
            "registry": "r.example", "repository": "app", "tags": ["a", "b"],
            "references": ["r.example/app:x", "r.example/app:y", "r.example/app:x"]
        }));
        assert_eq!(target(&cli(&[]), &d).unwrap().tags, ["x", "y"]);
        let t = target(&cli(&["--tag", "z", "--repository", "other"]), &d).unwrap();
        assert_eq!(
            (t.registry.as_str(), t.repository.as_str()),
            ("r.example", "other")
        );
        assert_eq!(t.tags, ["z"]);
        let d = doc(json!({"registry": "r.example", "repository": "app", "tags": ["a", "b"]}));
        assert_eq!(target(&cli(&[]), &d).unwrap().tags, ["a", "b"]);
        let cases = [
            (json!({"repository": "app", "tags": ["a"]}), "no registry"),
            (
                json!({"registry": "r.example", "tags": ["a"]}),
                "no repository",
            ),
            (
                json!({"registry": "r.example", "repository": "app"}),
                "no tags",
            ),
            (
                json!({"registry": "r.example", "repository": "App", "tags": ["a"]}),
                "not valid",
            ),
            (
                json!({"registry": "r.example", "repository": "app", "tags": ["-a"]}),
                "not valid",
            ),
            (
                json!({"references": ["r.example/app:1", "r.example/other:1"]}),
                "more than one repository",
            ),
        ];
        for (value, why) in cases {
            let err = target(&cli(&[]), &doc(value.clone())).unwrap_err();
            assert_eq!(err.code(), exit::DATA, "{value}");
            assert!(err.message().contains(why), "{value}: {}", err.message());
        }
    }

    #[test]
    fn ecr_mutability_with_exclusions() {
        let ex = vec!["latest".to_owned(), "dev-*".to_owned()];
        let cases = [
            ("MUTABLE", "1.0", false),
            ("IMMUTABLE", "latest", true),
            ("IMMUTABLE_WITH_EXCLUSION", "latest", false),
            ("IMMUTABLE_WITH_EXCLUSION", "dev-42", false),
            ("IMMUTABLE_WITH_EXCLUSION", "1.0", true),
            ("MUTABLE_WITH_EXCLUSION", "dev-1", true),
            ("MUTABLE_WITH_EXCLUSION", "1.0", false),
        ];
        for (mutability, tag, immutable) in cases {
            assert_eq!(
                ecr_tag_immutable(mutability, &ex, tag),
                immutable,
                "{mutability} {tag}"
            );
        }
    }

    #[test]
    fn push_stream_digests_and_errors() {
        let hex = "a".repeat(64);
        assert_eq!(
            digest_in_status(&format!("1.0: digest: sha256:{hex} size: 527")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(digest_in_status("Pushed"), None);
        assert_eq!(digest_in_status("x: digest: sha256:XYZ size: 1"), None);
        let target = Target {
            registry: "127.0.0.1:5001".into(),
            repository: "app".into(),
            tags: vec!["1".into()],
        };
        let cases = [
            ("no basic auth credentials", exit::NO_PERM, "refused"),
            (
                "unauthorized: authentication required",
                exit::NO_PERM,
                "refused",
            ),
            (
                "denied: requested access to the resource is denied",
                exit::NO_PERM,
                "denied",
            ),
            (
                "tag invalid: The image tag '1' already exists in the 'app' repository and cannot be overwritten because the repository is immutable.",
                exit::CONFLICT,
                "refused to move tag 1",
            ),
            (
                "name unknown: The repository with name 'app' does not exist in the registry with id '1'",
                exit::DATA,
                "repository app does not exist in registry 127.0.0.1:5001",
            ),
            (
                "EOF",
                exit::UNAVAILABLE,
                "registry 127.0.0.1:5001 did not take 127.0.0.1:5001/app:1: EOF",
            ),
            (
                "Get \"http://127.0.0.1:5001/v2/\": dial tcp 127.0.0.1:5001: connect: connection refused",
                exit::UNAVAILABLE,
                "connection refused",
            ),
            (
                "received unexpected HTTP status: 502 Bad Gateway",
                exit::UNAVAILABLE,
                "502",
            ),
        ];
        for (text, code, words) in cases {
            let err = classify_push_error(text, &target, "1");
            assert_eq!(err.code(), code, "{text}");
            assert!(err.message().contains(words), "{text}: {}", err.message());
        }
    }

    #[test]
    fn retag_when_asked_or_when_the_build_was_skipped() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let cases = [
            (vec![], json!({}), None),
            (vec!["--retag"], json!({}), Some("--retag")),
            (vec!["--from", "sha-1"], json!({}), Some("--retag")),
            (
                vec![],
                json!({"digest": digest, "image_id": "sha256:1", "build": {"skipped": true}}),
                Some("img-build skipped the build"),
            ),
            (
                vec![],
                json!({"digest": digest}),
                Some("the document has a digest and no local image"),
            ),
            (
                vec![],
                json!({"digest": digest, "image_id": "sha256:1"}),
                None,
            ),
            (vec!["--image", "x"], json!({"digest": digest}), None),
            (
                vec![],
                json!({"digest": digest, "image_id": "sha256:1", "build": {"skipped": false}}),
                None,
            ),
        ];
        for (args, value, want) in cases {
            let got = retag_reason(&cli(&args), &doc(value.clone()));
            assert_eq!(got.as_deref(), want, "{args:?} {value}");
        }
    }
}

#[cfg(test)]
mod progress_tests {
    use super::*;

    #[test]
    fn a_retry_countdown_is_announced_once() {
        let mut progress = Progress::new("x".into());
        let mut announced = Vec::new();
        for n in [5, 5, 4, 3, 2, 1, 10, 10, 9, 1] {
            if progress.retry_announced(&format!("Retrying in {n} seconds")) {
                announced.push(n);
            }
        }
        assert_eq!(announced, [5, 10]);
    }
}
