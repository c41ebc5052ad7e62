//! `--skip-if-present`: find the content tag in the registry and skip the build.

use std::time::Instant;

use context::{Context, Summary};
use serde_json::{Value, json};
use shared::platform::Platform;
use shared::{Document, Result, info, verbose, warn};

use crate::Cli;
use crate::build::insert_timing_and_context;
use crate::request::object;
use crate::request::registry_of;

/// The registry host and repository of the document: its `registry` and `repository`, else
/// those of its first reference (`host/repository:tag`); `None` when it names none. A registry
/// or repository that is not valid is an error ([`shared::names`]).
pub fn registry_repository(doc: &Document) -> Result<Option<(String, String)>> {
    let from_fields = doc
        .str("registry")
        .filter(|r| !r.is_empty())
        .zip(doc.str("repository").filter(|r| !r.is_empty()));
    if let Some((registry, repository)) = from_fields {
        shared::names::check_host(registry)?;
        shared::names::check_repository(repository)?;
        return Ok(Some((registry.to_owned(), repository.to_owned())));
    }
    let Some(first) = doc.strings("references").first().copied() else {
        return Ok(None);
    };
    if registry_of(first).is_none() {
        return Ok(None);
    }
    let reference = shared::names::Reference::parse(first)?;
    Ok(Some((reference.registry, reference.repository)))
}

/// An image found in the registry under the context's content tag.
pub(crate) struct Present {
    pub(crate) name: String,
    pub(crate) tag: String,
    pub(crate) digest: String,
}

/// Looks for the content tag of `hash` in the document's repository. `None` means build: the
/// tag is not there, the document names another content tag, or the registry could not be
/// asked (a warning: building is always correct, only slower). A registry name that is not
/// valid is an error: nothing is asked of it.
pub(crate) async fn find_present(
    cli: &Cli,
    doc: &Document,
    hash: &str,
    platforms: &[Platform],
) -> Result<Option<Present>> {
    let tag = shared::names::content_tag(hash);
    let Some((registry, repository)) = registry_repository(doc)? else {
        warn!(
            "--skip-if-present: the document names no registry and repository to look in; building"
        );
        return Ok(None);
    };
    let name = format!("{registry}/{repository}");
    let own: Vec<&str> = doc
        .strings("tags")
        .into_iter()
        .filter(|t| shared::names::is_content_tag(t))
        .collect();
    if own.is_empty() {
        verbose!(
            "--skip-if-present: the document has no content tag (img-tag --tag content), so this build will not be found next time"
        );
    } else if !own.contains(&tag.as_str()) {
        warn!(
            "--skip-if-present: the document's content tag {} is not this context's {tag} (img-tag hashed another context or Dockerfile); building",
            own.join(", ")
        );
        return Ok(None);
    }
    let lookup = async {
        let (client, _) =
            registry::credentials::registry(&registry, &cli.aws, registry::Retry::default())
                .await?;
        let Some(manifest) = client.manifest(&repository, &tag).await? else {
            return Ok::<_, shared::Error>(None);
        };
        let differs = platforms_differ(&client, &repository, &manifest, platforms).await?;
        Ok(Some((manifest.digest, differs)))
    };
    Ok(match lookup.await {
        Ok(Some((digest, None))) => Some(Present { name, tag, digest }),
        Ok(Some((_, Some(why)))) => {
            info!("{name}:{tag} is this context built for {why}: building");
            None
        }
        Ok(None) => {
            info!("{name}:{tag} is not in the registry: building");
            None
        }
        Err(e) => {
            warn!(
                "--skip-if-present: could not look for {name}:{tag} ({}); building",
                e.message()
            );
            None
        }
    })
}

/// Whether the image found is for other platforms than this build's: `Some(its platforms)`
/// when it is. A multi-platform build matches a list of exactly its platforms; a build for one
/// platform, an image of that platform; a build with no `--platform`, any single image.
async fn platforms_differ(
    client: &registry::Registry,
    repository: &str,
    manifest: &registry::Manifest,
    platforms: &[Platform],
) -> Result<Option<String>> {
    let names = |list: &[Platform]| {
        list.iter()
            .map(Platform::name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let found: Vec<Platform> = match registry::index::index_platforms(manifest, repository)? {
        Some(listed) => listed,
        None if platforms.len() == 1 => {
            let Some(config) = manifest.config_digest() else {
                return Ok(Some("no platform".to_owned()));
            };
            let blob = client.blob(repository, &config).await?.unwrap_or_default();
            vec![Platform::from_config(&blob, repository)?]
        }
        None if platforms.is_empty() => return Ok(None),
        None => return Ok(Some("one platform".to_owned())),
    };
    let same =
        found.len() == platforms.len() && platforms.iter().all(|p| found.iter().any(|f| f.same(p)));
    Ok((!same).then(|| names(&found)))
}

/// The document for a skipped build: the digest found, and why nothing was built.
pub(crate) fn skipped(
    ctx: &Context,
    mut doc: Document,
    summary: &Summary,
    found: &Present,
    started: Instant,
) -> Document {
    let seconds = started.elapsed().as_secs_f64();
    info!(
        "skipped the build: {}:{} is {} (context unchanged, {} files hashed in {seconds:.1} s)",
        found.name, found.tag, found.digest, summary.files
    );
    let mut build = object(&doc, "build");
    build.remove("platforms");
    build.insert("skipped".to_owned(), json!(true));
    build.insert(
        "skip_reason".to_owned(),
        json!(format!(
            "{}:{} already names {} (the same build context)",
            found.name, found.tag, found.digest
        )),
    );
    build.insert("content_tag".to_owned(), json!(found.tag));
    insert_timing_and_context(&mut build, seconds, ctx, summary);
    crate::build::forget_images(&mut doc);
    doc.set("digest", found.digest.as_str());
    doc.set("build", Value::Object(build));
    doc
}
