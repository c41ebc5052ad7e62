//! `img-manifest`: join per-architecture images, already pushed, into one multi-platform image
//! (a Docker manifest list or an OCI index) and push it under the document's tags.
//!
//! Replaces the seed's `docker buildx build --platform linux/amd64,linux/arm64 --push`: on
//! CodeBuild each architecture is built natively (a batch build on x86 and ARM hosts), pushed
//! with `img-push`, and a last step pipes their documents into `img-manifest`.
//!
//! Every child is named by digest and must live in the same registry and repository. Its
//! platform is read from its image configuration (a blob GET through the registry API), never
//! guessed. A child that is itself a list or index is refused, not flattened: its platforms
//! would have to be trusted from its own descriptors. The list's bytes are deterministic (the
//! children sorted by platform), so a re-run gives the same digest, and a tag already at that
//! digest is reported as already present and not written again.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use aws::AwsArgs;
use clap::{Parser, ValueEnum};
use registry::credentials::{self, Found};
use registry::index;
use registry::{Registry, Retry, sha256_digest};
use serde_json::json;
use shared::cli::Common;
use shared::exit::{self, Code};
use shared::io::{Input, Output, stdin_input};
use shared::{Document, Error, Result, info, verbose};

use shared::media::{DOCKER_LIST, OCI_INDEX};
pub use shared::platform::Platform;

/// Join per-architecture images into one multi-platform image (manifest list or OCI index)
/// and push it under the document's tags.
#[derive(Parser, Debug)]
#[command(
    name = "img-manifest",
    version,
    after_long_help = "EXAMPLES:
  # Join the documents img-push wrote for each architecture
  cat amd64.json arm64.json | img-manifest

  # The join step of a CodeBuild batch build: each architecture's build pushed its own tag
  img-manifest --no-input --image $URI:$TAG-amd64 --image $URI:$TAG-arm64 --tag $TAG

  # From references, under tags of your own, as an OCI index
  img-manifest --no-input --format oci \\
      --image 127.0.0.1:5000/my-app@sha256:1f3e... --image 127.0.0.1:5000/my-app@sha256:9ac0... \\
      --tag 1.4.2 --tag latest

Children from another repository, two children of one platform, a child the registry does not
have, or a child that is itself a list all exit with 65 before anything is pushed."
)]
pub struct Cli {
    /// A child image, `registry/repository@sha256:...`, or by tag, `registry/repository:TAG`,
    /// which is resolved to its digest once, before anything else (repeatable; added to the
    /// images of the input documents). A tag is how a batch build's last step finds the
    /// images the other builds pushed.
    #[arg(long = "image", value_name = "REF")]
    pub images: Vec<String>,

    /// Tag to push the list under (repeatable; default: the first document's `tags`).
    #[arg(short = 't', long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// What to write: a Docker manifest list or an OCI index (default: a Docker list when every
    /// child is a Docker v2 manifest, else an OCI index).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Attempts in all for a registry request that hits a transient fault (connection refused
    /// or reset, EOF, 5xx, 429), with exponential backoff and jitter between them.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub attempts: u32,

    /// Give up (exit 75) when the join has not finished after this many seconds, retries
    /// included.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = shared::duration::parse_seconds)]
    pub deadline: u64,

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

/// The kind of multi-platform manifest to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A Docker manifest list (`application/vnd.docker.distribution.manifest.list.v2+json`).
    Docker,
    /// An OCI image index (`application/vnd.oci.image.index.v1+json`).
    Oci,
}

impl Format {
    /// The media type of the list or index.
    #[must_use]
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Docker => DOCKER_LIST,
            Format::Oci => OCI_INDEX,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Docker => "docker",
            Format::Oci => "oci",
        }
    }
}

/// A child image named by the input: where it is and where it was named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildRef {
    /// The registry host.
    pub registry: String,
    /// The repository.
    pub repository: String,
    /// The manifest digest (empty until a tag reference is resolved).
    pub digest: String,
    /// The tag it was named by, when not by digest.
    pub tag: Option<String>,
    /// Where it was named (`record 2`, `--image ...`), for error messages.
    pub from: String,
}

impl ChildRef {
    fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// What a reference names: a digest, or a tag to resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Named {
    /// `@sha256:...`.
    Digest(String),
    /// `:TAG`.
    Tag(String),
}

/// Splits `host[:port]/repository[:tag]@sha256:...` into registry, repository and digest, or
/// `host[:port]/repository:tag` into registry, repository and tag, as
/// [`shared::names::Reference`] reads them.
pub fn parse_image_reference(reference: &str) -> Result<(String, String, Named)> {
    let hint = "name each image as registry/repository@sha256:... (img-push prints digest_uri) or registry/repository:tag";
    let parsed = shared::names::Reference::parse(reference).map_err(|e| e.with_hint(hint))?;
    let named = match (parsed.digest, parsed.tag) {
        (Some(digest), _) => Named::Digest(digest),
        (None, Some(tag)) => Named::Tag(tag),
        (None, None) => {
            return Err(Error::data(format!(
                "image '{reference}' cannot be joined: it names neither a digest nor a tag"
            ))
            .with_hint(hint));
        }
    };
    Ok((parsed.registry, parsed.repository, named))
}

fn check_digest(digest: &str) -> Result<()> {
    shared::names::check_digest(digest)
        .map_err(|e| e.with_hint("push the image with img-push first: it writes the digest"))
}

/// The children named by the documents (their `registry`, `repository` and `digest`) and the
/// `--image` flags, all in one registry and repository.
pub fn child_refs(cli: &Cli, docs: &[Document]) -> Result<Vec<ChildRef>> {
    let mut refs = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let from = format!("record {}", i + 1);
        let need = |field: &str| {
            doc.str(field)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| {
                    Error::data(format!("{from}: the document has no {field}"))
                        .with_hint("pipe in the documents img-push wrote for each architecture")
                })
        };
        let digest = need("digest")?;
        check_digest(&digest).map_err(|e| e.context(&from))?;
        let registry = need("registry")?;
        let repository = need("repository")?;
        shared::names::check_host(&registry).map_err(|e| e.context(&from))?;
        shared::names::check_repository(&repository).map_err(|e| e.context(&from))?;
        refs.push(ChildRef {
            registry,
            repository,
            digest,
            tag: None,
            from,
        });
    }
    for image in &cli.images {
        let (registry, repository, named) = parse_image_reference(image)?;
        let (digest, tag) = match named {
            Named::Digest(digest) => (digest, None),
            Named::Tag(tag) => (String::new(), Some(tag)),
        };
        refs.push(ChildRef {
            registry,
            repository,
            digest,
            tag,
            from: format!("--image {image}"),
        });
    }
    let Some(first) = refs.first() else {
        return Err(Error::data("no images to join").with_hint(
            "pipe in the per-architecture documents from img-push, or pass --image REF",
        ));
    };
    if let Some(other) = refs.iter().find(|r| r.name() != first.name()) {
        return Err(Error::data(format!(
            "the images are in different repositories: {} ({}) and {} ({})",
            first.name(),
            first.from,
            other.name(),
            other.from
        ))
        .with_hint("a multi-platform image joins images of one repository: push every architecture to the same one"));
    }
    Ok(refs)
}

/// The tags to push under: the flags, else the first document's `tags`.
pub fn tags(cli: &Cli, docs: &[Document]) -> Result<Vec<String>> {
    let mut tags: Vec<String> = if cli.tags.is_empty() {
        docs.first()
            .map(|d| d.strings("tags").into_iter().map(str::to_owned).collect())
            .unwrap_or_default()
    } else {
        cli.tags.clone()
    };
    let mut seen = std::collections::HashSet::new();
    tags.retain(|t| seen.insert(t.clone()));
    if tags.is_empty() {
        return Err(
            Error::data("no tags to push the multi-platform image under")
                .with_hint("give the first document tags (img-tag), or pass --tag"),
        );
    }
    for tag in &tags {
        shared::names::check_tag(tag)?;
    }
    Ok(tags)
}

/// Runs the tool: every input document is one child; one document out.
pub fn run(cli: &Cli) -> Result<Code> {
    let mut docs = Vec::new();
    if let Input::Stream(records) = stdin_input(cli.common.no_input) {
        for record in records {
            docs.push(record?);
        }
    }
    let mut output = Output::stdout(cli.common.field.clone());
    // The list is built on the first document, so a --field typo is found before any push.
    output.check(docs.first().unwrap_or(&Document::default()))?;
    let doc = shared::cli::runtime()?.block_on(join(cli, docs))?;
    output.write(doc)?;
    Ok(exit::SUCCESS)
}

/// Resolves the children named by tag to their digests, once, before anything else reads
/// them: from then on every child is named by digest.
async fn resolve_tags(registry: &Registry, refs: &mut [ChildRef]) -> Result<()> {
    for r in refs.iter_mut() {
        if let Some(tag) = &r.tag {
            r.digest = registry
                .manifest_digest(&r.repository, tag)
                .await?
                .ok_or_else(|| {
                    Error::data(format!(
                        "{}: registry {} has no image {}:{tag}",
                        r.from,
                        r.registry,
                        r.name()
                    ))
                    .with_hint("push every architecture with img-push before joining them")
                })?;
            verbose!("{}:{tag} is {}", r.name(), r.digest);
        }
    }
    Ok(())
}

async fn join(cli: &Cli, docs: Vec<Document>) -> Result<Document> {
    let started = Instant::now();
    let mut refs = child_refs(cli, &docs)?;
    let tags = tags(cli, &docs)?;
    let (host, repository) = (refs[0].registry.clone(), refs[0].repository.clone());
    let name = refs[0].name();

    let retry = Retry::within(cli.attempts, started + Duration::from_secs(cli.deadline));
    let (registry, Found { source, .. }) = credentials::registry(&host, &cli.aws, retry).await?;

    resolve_tags(&registry, &mut refs).await?;
    let mut children = Vec::with_capacity(refs.len());
    for r in &refs {
        children.push(index::read_child(&registry, &r.repository, &r.digest, &r.from).await?);
    }
    index::sort_children(&mut children)?;
    let format = cli
        .format
        .unwrap_or(if index::matching_type(&children) == DOCKER_LIST {
            Format::Docker
        } else {
            Format::Oci
        });
    let body = index::index_bytes(format.media_type(), &children);
    let digest = sha256_digest(&body);

    registry.check_push_access(&repository).await?;
    let (pushed, present) = index::push_index(
        &registry,
        &repository,
        &tags,
        format.media_type(),
        &body,
        // img-manifest knows no immutability of its own: the registry enforces its own.
        &|_: &str| false,
    )
    .await?;

    let digest_uri = format!("{name}@{digest}");
    let platform_names: Vec<String> = children.iter().map(|c| c.platform.name()).collect();
    let mut summary = if pushed.is_empty() {
        format!("nothing to push: {digest_uri} is there")
    } else {
        format!("pushed {digest_uri} as {}", pushed.join(", "))
    };
    if !present.is_empty() {
        let _ = write!(summary, "; already present: {}", present.join(", "));
    }
    info!(
        "{summary} ({} of {}: {}; {:.1} s)",
        format.name(),
        children.len(),
        platform_names.join(", "),
        started.elapsed().as_secs_f64()
    );

    let mut doc = docs.into_iter().next().unwrap_or_default();
    // The first child's own facts would now describe the list wrongly.
    doc.remove("platform");
    doc.remove("image_id");
    doc.set("registry", host.as_str());
    doc.set("repository", repository.as_str());
    doc.set("tags", tags.clone());
    doc.set(
        "references",
        tags.iter()
            .map(|t| format!("{name}:{t}"))
            .collect::<Vec<_>>(),
    );
    doc.set("digest", digest.as_str());
    doc.set("image_uri", format!("{name}:{}", tags[0]));
    doc.set("digest_uri", digest_uri.as_str());
    let platforms = index::platforms_field(&name, &children);
    doc.set("platforms", platforms);
    doc.set(
        "manifest",
        json!({
            "format": format.name(),
            "media_type": format.media_type(),
            "tags_pushed": pushed,
            "tags_present": present,
            "credentials": source.to_string(),
        }),
    );
    Ok(doc)
}

#[cfg(test)]
mod tests;
