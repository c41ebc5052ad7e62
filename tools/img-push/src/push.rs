//! One push, told in order: pre-flight, push, verification, then the record.

use std::time::{Duration, Instant};

use bollard::query_parameters::TagImageOptionsBuilder;
use docker::{Engine, registry_auth_header};
use registry::Retry;
use registry::credentials::{self, Found};
use shared::error::chain;
use shared::exit::{self};
use shared::{Document, Error, Result, info, verbose};
use tokio::sync::OnceCell;

use crate::Cli;
use crate::engine::Progress;
use crate::engine::inspect_digest;
use crate::engine::push_tag;
use crate::immutability::TagState;
use crate::immutability::conflicts;
use crate::immutability::immutability;
use crate::immutability::tag_states;
use crate::platforms::{local_children, push_platforms};
use crate::record::Outcome;
use crate::record::finish;
use crate::retag::retag;
use crate::retag::retag_reason;
use crate::target::{Target, target};

// One push, told in order: pre-flight, push, verification, artifacts, document.
pub(crate) async fn push(cli: &Cli, engine: &OnceCell<Engine>, doc: Document) -> Result<Document> {
    if let Some(why) = retag_reason(cli, &doc) {
        return retag(cli, doc, why).await;
    }
    if let Some(locals) = local_children(&doc)? {
        return push_platforms(cli, engine, doc, locals).await;
    }
    // The names are checked before anything is asked of the Engine or a registry.
    let target = target(cli, &doc)?;
    let engine = engine.get_or_try_init(Engine::connect).await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(cli.deadline);
    let name = target.name();

    let (image_id, repo_digests) = local_image(cli, engine, &doc, &target).await?;

    // Credentials and the repository, before anything moves.
    let Preflight {
        retry,
        registry,
        credentials,
        source,
        immutable,
        exists,
    } = preflight(cli, &target, deadline).await?;
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
    tag_locally(engine, &image_id, &name, &target.tags).await?;
    let header = registry_auth_header(credentials.as_ref(), &target.registry);
    let docker = engine.with_registry_auth(&header);
    let Pushes {
        pushed_tags,
        present_tags,
        digest,
        layers,
        attempts_used,
    } = push_tags(
        engine, &docker, &target, &states, &image_id, &retry, deadline,
    )
    .await?;
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
        source,
        attempts: attempts_used.max(1),
        retag: None,
        started,
    };
    finish(cli, &registry, doc, outcome, &immutable).await
}

/// What a push knows before anything moves: the registry with its credentials and where they
/// came from, which tags are immutable, and whether the repository has any tags yet.
pub(crate) struct Preflight<F> {
    pub(crate) retry: Retry,
    pub(crate) registry: registry::Registry,
    pub(crate) credentials: Option<shared::secret::Credentials>,
    pub(crate) source: String,
    pub(crate) immutable: F,
    pub(crate) exists: bool,
}

/// The credentials (as Docker finds them, else from ECR), the repository's immutability and
/// push access, and whether it exists, for a push to `target` that must end by `deadline`.
pub(crate) async fn preflight(
    cli: &Cli,
    target: &Target,
    deadline: Instant,
) -> Result<Preflight<impl Fn(&str) -> bool + use<>>> {
    let retry = Retry::within(cli.attempts, deadline);
    let (
        registry,
        Found {
            credentials,
            source,
        },
    ) = credentials::registry(&target.registry, &cli.aws, retry.clone()).await?;
    let immutable = immutability(cli, target).await?;
    registry.check_push_access(&target.repository).await?;
    let exists = registry.repository_exists(&target.repository).await?;
    if !exists {
        verbose!(
            "{} has no tags yet: the registry creates the repository on the first push",
            target.name()
        );
    }
    Ok(Preflight {
        retry,
        registry,
        credentials,
        source: source.to_string(),
        immutable,
        exists,
    })
}

/// The local image to push (`--image`, the document's `image_id`, or the first tag) and its
/// ID and repository digests, as the Engine describes it.
async fn local_image(
    cli: &Cli,
    engine: &Engine,
    doc: &Document,
    target: &Target,
) -> Result<(String, Vec<String>)> {
    let name = target.name();
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
    Ok((image_id, repo_digests))
}

/// Tags the image locally under each of the target's tags, as `docker tag` does before a push.
pub(crate) async fn tag_locally(
    engine: &Engine,
    image_id: &str,
    name: &str,
    tags: &[String],
) -> Result<()> {
    for tag in tags {
        let options = TagImageOptionsBuilder::new().repo(name).tag(tag).build();
        engine
            .client
            .tag_image(image_id, Some(options))
            .await
            .map_err(|e| {
                Error::unavailable(format!(
                    "the Docker Engine did not tag image {} as {name}:{tag} ({})",
                    shared::show::digest(image_id),
                    chain(&e)
                ))
            })?;
    }
    Ok(())
}

/// What pushing the tags gave.
pub(crate) struct Pushes {
    pub(crate) pushed_tags: Vec<String>,
    pub(crate) present_tags: Vec<String>,
    /// The digest the pushes gave, if any tag was pushed.
    pub(crate) digest: Option<String>,
    /// Layers pushed and already there, from the first push.
    pub(crate) layers: Option<(u64, u64)>,
    pub(crate) attempts_used: u32,
}

/// Pushes every tag not already present, each retried as `retry` says; every push must give
/// the same digest.
pub(crate) async fn push_tags(
    engine: &Engine,
    docker: &bollard::Docker,
    target: &Target,
    states: &[TagState],
    image_id: &str,
    retry: &Retry,
    deadline: Instant,
) -> Result<Pushes> {
    let name = target.name();
    let mut pushed_tags = Vec::new();
    let mut present_tags = Vec::new();
    let mut digest: Option<String> = None;
    let mut layers: Option<(u64, u64)> = None;
    let mut attempts_used = 0u32;
    for (tag, state) in target.tags.iter().zip(states) {
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
            None => inspect_digest(engine, &name, image_id).await?,
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
    Ok(Pushes {
        pushed_tags,
        present_tags,
        digest,
        layers,
        attempts_used,
    })
}
