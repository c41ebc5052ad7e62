//! The shared end of a push and a retag: verification, the record in the document, the artifacts.

use std::fmt::Write as _;
use std::time::Instant;

use registry::Registry;
use serde_json::{Value, json};
use shared::exit::{self};
use shared::{Document, Error, Result, info, verbose};

use crate::Cli;
use crate::target::Target;

/// What a push or a retag did, for the verification and the document.
pub(crate) struct Outcome {
    pub(crate) target: Target,
    pub(crate) digest: String,
    /// The local image pushed (`None` for a retag: nothing local was involved).
    pub(crate) image_id: Option<String>,
    pub(crate) pushed_tags: Vec<String>,
    pub(crate) present_tags: Vec<String>,
    /// Layers pushed and already there (`None` when no layer went through the Engine).
    pub(crate) layers: Option<(u64, u64)>,
    /// Where the credentials came from.
    pub(crate) source: String,
    pub(crate) attempts: u32,
    /// For a retag: the source reference and why img-push retagged.
    pub(crate) retag: Option<(String, String)>,
    pub(crate) started: Instant,
}

/// Proves through the registry's own API that every tag resolves to the digest, writes the
/// artifacts and fills in the document: the same for a push and a retag.
pub(crate) async fn finish(
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

/// The artifact files, written only now that the push is verified: all of them, or none.
pub(crate) fn write_artifacts(cli: &Cli, image_uri: &str, digest_uri: &str) -> Result<()> {
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

pub(crate) fn pretty(value: &Value) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(value).unwrap_or_default();
    text.push(b'\n');
    text
}
