//! A retag: copying a manifest already in the registry under new tags, without the Engine.

use std::time::{Duration, Instant};

use registry::credentials::{self, Found};
use registry::{Manifest, Registry, Retry};
use serde_json::Value;
use shared::exit::{self};
use shared::{Document, Error, Result, info, verbose};

use crate::Cli;
use crate::immutability::TagState;
use crate::immutability::conflicts;
use crate::immutability::immutability;
use crate::record::Outcome;
use crate::record::finish;
use crate::target::Target;
use crate::target::target;

/// Why this document is retagged rather than pushed, or `None` for a push: --retag or --from;
/// img-build skipped the build (`build.skipped`); or the document names a digest and no local
/// image. --image always means a push.
pub(crate) fn retag_reason(cli: &Cli, doc: &Document) -> Option<String> {
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
pub(crate) async fn retag_states(
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
pub(crate) async fn retag(cli: &Cli, doc: Document, why: String) -> Result<Document> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(cli.deadline);
    let target = target(cli, &doc)?;
    let name = target.name();
    let from = source_reference(cli, &doc, &name)?;
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
    let (pushed_tags, present_tags) = copy_tags(&registry, &target, &manifest, &states).await?;
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

/// The image to retag: `--from`, else the document's digest; a tag or a digest, never a
/// reference to another repository.
fn source_reference(cli: &Cli, doc: &Document, name: &str) -> Result<String> {
    let from: String = cli
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
    Ok(from)
}

/// Stores the manifest under each tag that does not name it yet; returns the tags written and
/// the tags already there.
async fn copy_tags(
    registry: &Registry,
    target: &Target,
    manifest: &Manifest,
    states: &[TagState],
) -> Result<(Vec<String>, Vec<String>)> {
    let name = target.name();
    let digest = &manifest.digest;
    let mut pushed_tags = Vec::new();
    let mut present_tags = Vec::new();
    for (tag, state) in target.tags.iter().zip(states) {
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
        if stored != *digest {
            return Err(Error::unavailable(format!(
                "registry {} stored {name}:{tag} as {stored}, not as the copied {digest}",
                target.registry
            )));
        }
        pushed_tags.push(tag.clone());
    }
    Ok((pushed_tags, present_tags))
}
