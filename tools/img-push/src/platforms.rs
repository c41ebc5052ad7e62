//! A multi-platform build (img-build `--platform linux/amd64,linux/arm64`): each platform's
//! image through the Engine under its own tag, then one list of them under every tag.
//!
//! The Engine pushes by tag only, so each child is pushed under `TAG-ARCH` (the first tag plus
//! the platform's suffix: `1.4.2-amd64`, `1.4.2-arm64`), the same names the batch buildspec's
//! native builds push. Each such tag is written once per build, so immutable repositories
//! work: the list is then put under every tag through the registry API (a Docker manifest
//! list, or an OCI index when a child is an OCI manifest), as img-manifest makes it, with each
//! child's platform read back from the configuration the registry holds.
//!
//! Everything is checked before the first upload: every child tag and every list tag that
//! names another image where tags are immutable is a conflict (exit 4). A child tag names the
//! same image when its configuration is the local image; a list tag, when it is exactly the
//! list this build makes, whose digest is known before the push once every child is there.

use std::time::{Duration, Instant};

use docker::{Engine, registry_auth_header};
use registry::index;
use serde_json::{Value, json};
use shared::error::chain;
use shared::exit;
use shared::platform::Platform;
use shared::{Document, Error, Result, info};

use crate::Cli;
use crate::immutability::{TagState, conflicts, tag_states};
use crate::push::{Preflight, preflight, push_tags, tag_locally};
use crate::record::{Outcome, finish};
use crate::target::{Target, target};

/// One platform's local image, from the document img-build wrote.
#[derive(Clone, Debug)]
pub(crate) struct Local {
    pub(crate) platform: Platform,
    pub(crate) image_id: String,
}

/// The platform images of a multi-platform build: the document's `platforms` that carry an
/// `image_id`. `None` when the document has none (one image, or a list already pushed).
pub(crate) fn local_children(doc: &Document) -> Result<Option<Vec<Local>>> {
    let Some(Value::Array(entries)) = doc.get("platforms") else {
        return Ok(None);
    };
    let with_ids = entries
        .iter()
        .filter(|e| e.get("image_id").is_some())
        .count();
    if with_ids == 0 {
        return Ok(None);
    }
    let mut children = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("platforms.{i}");
        let text = |key: &str| entry.get(key).and_then(Value::as_str).unwrap_or_default();
        let (platform, image_id) = (text("platform"), text("image_id"));
        if image_id.is_empty() || platform.is_empty() {
            return Err(Error::data(format!(
                "{at} of the document has no platform and image_id, though others do"
            ))
            .with_hint("pipe in the document img-build --platform wrote, unchanged"));
        }
        shared::names::check_digest(image_id).map_err(|e| e.context(&at))?;
        let platform = Platform::parse(platform)
            .map_err(|e| Error::data(e.message().to_owned()).context(&at))?;
        if children.iter().any(|c: &Local| c.platform.same(&platform)) {
            return Err(Error::data(format!(
                "the document lists platform {platform} twice"
            )));
        }
        children.push(Local {
            platform,
            image_id: image_id.to_owned(),
        });
    }
    Ok(Some(children))
}

/// Reads a pushed child back from the registry at `digest` and checks that it is `local`: the
/// same platform and, as its configuration, the same image.
async fn read_back(
    registry: &registry::Registry,
    target: &Target,
    local: &Local,
    digest: &str,
) -> Result<index::Child> {
    let name = target.name();
    let read = index::read_child(
        registry,
        &target.repository,
        digest,
        &format!("the {} image", local.platform),
    )
    .await?;
    if !read.platform.same(&local.platform) || read.config != local.image_id {
        return Err(Error::unavailable(format!(
            "registry {} holds {name}@{digest} as {} image {}, not as the {} image {}",
            target.registry,
            read.platform,
            shared::show::digest(&read.config),
            local.platform,
            shared::show::digest(&local.image_id)
        )));
    }
    Ok(read)
}

/// The list of `children`, sorted: its media type and bytes.
fn list_of(mut children: Vec<index::Child>) -> Result<(Vec<index::Child>, &'static str, Vec<u8>)> {
    index::sort_children(&mut children)?;
    let media_type = index::matching_type(&children);
    let body = index::index_bytes(media_type, &children);
    Ok((children, media_type, body))
}

/// The digest of the list this build makes, when every child's tag already names this very
/// image (read back from the registry); `None` while a child is still to be pushed.
async fn planned_digest(
    registry: &registry::Registry,
    target: &Target,
    locals: &[Local],
    child_states: &[Vec<TagState>],
) -> Result<Option<String>> {
    let mut children = Vec::new();
    for (local, states) in locals.iter().zip(child_states) {
        let Some(TagState::Present(digest)) = states.first() else {
            return Ok(None);
        };
        children.push(read_back(registry, target, local, digest).await?);
    }
    let (_, _, body) = list_of(children)?;
    Ok(Some(registry::sha256_digest(&body)))
}

/// Where each list tag stands: present only at exactly the list this build makes (its bytes'
/// digest, as `index::push_index` compares), else at another image.
async fn list_states(
    registry: &registry::Registry,
    target: &Target,
    planned: Option<&str>,
) -> Result<Vec<TagState>> {
    Ok(registry
        .manifest_digests(&target.repository, &target.tags)
        .await?
        .into_iter()
        .map(|found| match found {
            None => TagState::New,
            Some(d) if Some(d.as_str()) == planned => TagState::Present(d),
            Some(d) => TagState::Elsewhere(d),
        })
        .collect())
}

/// Each child's tag: the first tag plus the platform's suffix. One that is also a tag of the
/// list, or another child's, is refused: one push would overwrite the other.
fn child_targets(target: &Target, locals: &[Local]) -> Result<Vec<Target>> {
    let mut children: Vec<Target> = Vec::new();
    for local in locals {
        let tag = local.platform.child_tag(&target.tags[0])?;
        if target.tags.contains(&tag) || children.iter().any(|c| c.tags[0] == tag) {
            return Err(Error::data(format!(
                "the {} image would be pushed under tag {tag}, which is also a tag of the list or of another platform",
                local.platform
            ))
            .with_hint("the children are tagged FIRST_TAG-ARCH: give the list other tags, or put another tag first"));
        }
        children.push(Target {
            registry: target.registry.clone(),
            repository: target.repository.clone(),
            tags: vec![tag],
        });
    }
    Ok(children)
}

/// Refuses the containerd image store before anything moves: there an image id is a manifest
/// or index digest, not the configuration's, and the Engine stores every platform under one
/// tag, which this push is not made for.
async fn check_image_store(engine: &Engine) -> Result<()> {
    let info = engine.client.info().await.map_err(|e| {
        Error::unavailable(format!(
            "the Docker Engine at {} did not describe itself ({})",
            engine.host,
            chain(&e)
        ))
    })?;
    let containerd = info.driver_status.unwrap_or_default().iter().any(|pair| {
        pair.first().map(String::as_str) == Some("driver-type")
            && pair
                .get(1)
                .is_some_and(|v| v.contains("containerd.snapshotter"))
    });
    if containerd {
        return Err(Error::config(format!(
            "the Docker Engine at {} keeps images in the containerd image store, where img-push cannot push a multi-platform build image by image",
            engine.host
        ))
        .with_hint("turn off the containerd image store (the daemon's \"containerd-snapshotter\" feature), or push each platform's image from its own build and join them with img-manifest"));
    }
    Ok(())
}

/// Pushes a multi-platform build: pre-flight for every tag, each child under its own tag, the
/// list under every tag, the verification and the record.
#[allow(clippy::too_many_lines)]
pub(crate) async fn push_platforms(
    cli: &Cli,
    engine: &tokio::sync::OnceCell<Engine>,
    mut doc: Document,
    locals: Vec<Local>,
) -> Result<Document> {
    if cli.image.is_some() {
        return Err(Error::new(
            exit::USAGE,
            "--image names one local image, and the document is a multi-platform build",
        )
        .with_hint("drop --image: the document's platforms name each platform's image"));
    }
    let target = target(cli, &doc)?;
    let engine = engine.get_or_try_init(Engine::connect).await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(cli.deadline);
    let name = target.name();
    let child_targets = child_targets(&target, &locals)?;
    check_image_store(engine).await?;
    let mut repo_digests = Vec::new();
    for local in &locals {
        repo_digests.push(check_local(engine, local).await?);
    }

    let Preflight {
        retry,
        registry,
        credentials,
        source,
        immutable,
        exists,
    } = preflight(cli, &target, deadline).await?;

    // Every tag's state, children and list, before anything moves.
    let mut child_states = Vec::new();
    for ((local, child), digests) in locals.iter().zip(&child_targets).zip(&repo_digests) {
        child_states.push(if exists {
            tag_states(&registry, child, &local.image_id, digests).await?
        } else {
            vec![TagState::New]
        });
    }
    let planned = if exists {
        planned_digest(&registry, &target, &locals, &child_states).await?
    } else {
        None
    };
    let list_states = if exists {
        list_states(&registry, &target, planned.as_deref()).await?
    } else {
        vec![TagState::New; target.tags.len()]
    };
    let mut found = Vec::new();
    for (child, states) in child_targets.iter().zip(&child_states) {
        found.extend(conflicts(&child.tags, states, &immutable));
    }
    found.extend(conflicts(&target.tags, &list_states, &immutable));
    if !found.is_empty() {
        return Err(Error::new(
            exit::CONFLICT,
            format!(
                "immutable tags of {name} already name another build ({}): nothing was pushed",
                found.join("; ")
            ),
        )
        .with_hint(
            "push under a new tag (img-tag), or remove the old images from the registry first",
        ));
    }

    // Each child through the Engine, under its own tag.
    let header = registry_auth_header(credentials.as_ref(), &target.registry);
    let docker = engine.with_registry_auth(&header);
    let (mut pushed_layers, mut existing_layers, mut attempts) = (0, 0, 1);
    let mut children = Vec::new();
    let mut records = Vec::new();
    for ((local, child), states) in locals.iter().zip(&child_targets).zip(&child_states) {
        tag_locally(engine, &local.image_id, &name, &child.tags).await?;
        let pushes = push_tags(
            engine,
            &docker,
            child,
            states,
            &local.image_id,
            &retry,
            deadline,
        )
        .await?;
        attempts = attempts.max(pushes.attempts_used);
        if let Some((pushed, existing)) = pushes.layers {
            pushed_layers += pushed;
            existing_layers += existing;
        }
        let digest = match (&pushes.digest, &states[0]) {
            (Some(d), _) | (None, TagState::Present(d)) => d.clone(),
            _ => return Err(Error::internal("a child was neither pushed nor present")),
        };
        // Read back: the registry's own record of the child's platform and image.
        let read = read_back(&registry, &target, local, &digest).await?;
        records.push(json!({
            "platform": local.platform.name(),
            "tag": child.tags[0],
            "digest": digest,
            "pushed": !pushes.pushed_tags.is_empty(),
        }));
        children.push((read, local.image_id.clone(), child.tags[0].clone()));
    }

    // The list, under every tag.
    let (sorted, media_type, body) = list_of(children.iter().map(|(c, _, _)| c.clone()).collect())?;
    let digest = registry::sha256_digest(&body);
    if planned.as_ref().is_some_and(|p| *p != digest) {
        return Err(Error::internal(format!(
            "the list of {name} came to {digest}, not to the {} its children gave before the push",
            planned.unwrap_or_default()
        )));
    }
    let (pushed_tags, present_tags) = index::push_index(
        &registry,
        &target.repository,
        &target.tags,
        media_type,
        &body,
        &immutable,
    )
    .await?;
    info!(
        "{name}@{} lists {}",
        shared::show::digest(&digest),
        sorted
            .iter()
            .map(|c| format!("{} {}", c.platform, shared::show::digest(&c.digest)))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let outcome = Outcome {
        target,
        digest,
        image_id: None,
        pushed_tags,
        present_tags,
        layers: Some((pushed_layers, existing_layers)),
        source,
        attempts,
        retag: None,
        started,
    };
    doc.remove("image_id");
    let mut doc = finish(cli, &registry, doc, outcome, &immutable).await?;
    let mut platforms = index::platforms_field(&name, &sorted);
    for entry in &mut platforms {
        let digest = entry["digest"].as_str().unwrap_or_default().to_owned();
        if let Some((_, image_id, tag)) = children.iter().find(|(c, _, _)| c.digest == digest) {
            entry["image_id"] = json!(image_id);
            entry["tag"] = json!(tag);
        }
    }
    doc.set("platforms", platforms);
    if let Some(Value::Object(push)) = doc.get("push").cloned().as_mut() {
        push.insert("media_type".to_owned(), json!(media_type));
        push.insert("platforms".to_owned(), json!(records));
        doc.set("push", Value::Object(push.clone()));
    }
    Ok(doc)
}

/// Checks that the Engine has the platform's image, for that platform, and returns its
/// repository digests.
async fn check_local(engine: &Engine, local: &Local) -> Result<Vec<String>> {
    let image = &local.image_id;
    let inspect = engine
        .client
        .inspect_image(image)
        .await
        .map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            } => Error::data(format!(
                "the Docker Engine at {} has no image {image} (the {} image of the document)",
                engine.host, local.platform
            ))
            .with_hint("build it first (img-build --platform)"),
            e => Error::unavailable(format!(
                "the Docker Engine at {} did not describe image {image} ({})",
                engine.host,
                chain(&e)
            )),
        })?;
    let stated = Platform {
        os: inspect.os.clone().unwrap_or_default(),
        architecture: inspect.architecture.clone().unwrap_or_default(),
        variant: inspect.variant.clone().filter(|v| !v.is_empty()),
        os_version: None,
    };
    if !stated.same(&local.platform) {
        return Err(Error::data(format!(
            "image {} is for {stated}, but the document lists it as {}",
            shared::show::digest(image),
            local.platform
        ))
        .with_hint("pipe in the document img-build --platform wrote, unchanged"));
    }
    Ok(inspect.repo_digests.unwrap_or_default())
}
