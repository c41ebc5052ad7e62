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
use registry::{Registry, Retry, sha256_digest};
use serde_json::{Map, Value, json};
use shared::cli::Common;
use shared::exit::{self, Code};
use shared::io::{Input, Output, stdin_input};
use shared::{Document, Error, Result, info, verbose};

use shared::media::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX};

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

    /// The format matching the children's media types: Docker when all are Docker v2
    /// manifests, else OCI.
    #[must_use]
    pub fn matching<'a>(media_types: impl IntoIterator<Item = &'a str>) -> Self {
        if media_types.into_iter().all(|t| t == DOCKER_MANIFEST) {
            Format::Docker
        } else {
            Format::Oci
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

/// A platform as an image configuration states it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Platform {
    /// `linux`, `windows`.
    pub os: String,
    /// `amd64`, `arm64`.
    pub architecture: String,
    /// `v8`, `v7`, if stated.
    pub variant: Option<String>,
    /// The OS version (Windows images), if stated.
    pub os_version: Option<String>,
}

impl Platform {
    /// Reads the platform from an image configuration blob.
    pub fn from_config(config: &[u8], what: &str) -> Result<Self> {
        let value: Value = serde_json::from_slice(config).map_err(|e| {
            Error::data(format!(
                "the image configuration of {what} is not JSON ({e})"
            ))
        })?;
        let text = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let (Some(os), Some(architecture)) = (text("os"), text("architecture")) else {
            return Err(Error::data(format!(
                "the image configuration of {what} states no os and architecture"
            ))
            .with_hint("build the image with a builder that records its platform"));
        };
        Ok(Self {
            os,
            architecture,
            variant: text("variant"),
            os_version: text("os.version"),
        })
    }

    /// `os/architecture[/variant]`.
    #[must_use]
    pub fn name(&self) -> String {
        let mut name = format!("{}/{}", self.os, self.architecture);
        if let Some(variant) = &self.variant {
            let _ = write!(name, "/{variant}");
        }
        name
    }

    /// The platform object of a descriptor.
    fn descriptor(&self) -> Value {
        let mut platform = Map::new();
        platform.insert("architecture".into(), json!(self.architecture));
        platform.insert("os".into(), json!(self.os));
        if let Some(version) = &self.os_version {
            platform.insert("os.version".into(), json!(version));
        }
        if let Some(variant) = &self.variant {
            platform.insert("variant".into(), json!(variant));
        }
        Value::Object(platform)
    }
}

/// A child image as the registry holds it.
#[derive(Clone, Debug)]
pub struct Child {
    /// Its platform, from its configuration.
    pub platform: Platform,
    /// Its manifest digest.
    pub digest: String,
    /// Its manifest's media type.
    pub media_type: String,
    /// Its manifest's size in bytes.
    pub size: usize,
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

/// Sorts the children by platform and refuses two of one platform.
pub fn sort_children(children: &mut [Child]) -> Result<()> {
    children.sort_by(|a, b| a.platform.cmp(&b.platform).then(a.digest.cmp(&b.digest)));
    for pair in children.windows(2) {
        if pair[0].platform == pair[1].platform {
            return Err(Error::data(format!(
                "two images are for platform {}: {} and {}",
                pair[0].platform.name(),
                pair[0].digest,
                pair[1].digest
            ))
            .with_hint("join one image per platform"));
        }
    }
    Ok(())
}

/// The bytes of the list or index: compact JSON, children in the order given.
#[must_use]
pub fn index_bytes(format: Format, children: &[Child]) -> Vec<u8> {
    let manifests: Vec<Value> = children
        .iter()
        .map(|c| {
            json!({
                "mediaType": c.media_type,
                "size": c.size,
                "digest": c.digest,
                "platform": c.platform.descriptor(),
            })
        })
        .collect();
    let value = json!({
        "schemaVersion": 2,
        "mediaType": format.media_type(),
        "manifests": manifests,
    });
    // Serialising a Value cannot fail.
    serde_json::to_vec(&value).unwrap_or_default()
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

/// Reads one child from the registry: its manifest by digest, then its configuration.
async fn child(registry: &Registry, child: &ChildRef) -> Result<Child> {
    let name = format!("{}@{}", child.name(), child.digest);
    let manifest = registry
        .manifest(&child.repository, &child.digest)
        .await?
        .ok_or_else(|| {
            Error::data(format!(
                "{}: registry {} has no image {name}",
                child.from, child.registry
            ))
            .with_hint("push every architecture with img-push before joining them")
        })?;
    if manifest.digest != child.digest || sha256_digest(&manifest.body) != child.digest {
        return Err(Error::unavailable(format!(
            "registry {} served {name} with digest {}",
            child.registry,
            sha256_digest(&manifest.body)
        )));
    }
    if manifest.media_type == DOCKER_LIST || manifest.media_type == OCI_INDEX {
        return Err(Error::data(format!(
            "{}: {name} is itself a multi-platform image ({})",
            child.from, manifest.media_type
        ))
        .with_hint("join the single-platform images it lists, by their digests"));
    }
    let config = manifest.config_digest().ok_or_else(|| {
        Error::data(format!(
            "{}: the manifest of {name} names no configuration",
            child.from
        ))
    })?;
    let blob = registry
        .blob(&child.repository, &config)
        .await?
        .ok_or_else(|| {
            Error::data(format!(
                "{}: registry {} has no configuration {config} for {name}",
                child.from, child.registry
            ))
            .with_hint("push the image again with img-push")
        })?;
    let platform = Platform::from_config(&blob, &name)?;
    verbose!("{name}: {}", platform.name());
    Ok(Child {
        platform,
        digest: child.digest.clone(),
        media_type: manifest.media_type,
        size: manifest.body.len(),
    })
}

/// Pushes the list under every tag not already at its digest, then checks through the
/// registry's API that every tag resolves to it. Returns the tags pushed and those present.
async fn push_tags(
    registry: &Registry,
    repository: &str,
    tags: &[String],
    format: Format,
    body: &[u8],
) -> Result<(Vec<String>, Vec<String>)> {
    let digest = sha256_digest(body);
    let host = registry.host();
    let mut pushed: Vec<String> = Vec::new();
    let mut present: Vec<String> = Vec::new();
    let before = registry.manifest_digests(repository, tags).await?;
    for (tag, found) in tags.iter().zip(before) {
        if found.as_deref() == Some(digest.as_str()) {
            present.push(tag.clone());
            continue;
        }
        let stored = registry
            .put_manifest(repository, tag, format.media_type(), body)
            .await?;
        if stored != digest {
            return Err(Error::unavailable(format!(
                "registry {host} stored {host}/{repository}:{tag} as {stored}, not as {digest}"
            )));
        }
        pushed.push(tag.clone());
    }
    let after = registry.manifest_digests(repository, tags).await?;
    for (tag, found) in tags.iter().zip(after) {
        match found {
            Some(found) if found == digest => {}
            Some(found) => {
                return Err(Error::new(
                    exit::CONFLICT,
                    format!("after the push, {host}/{repository}:{tag} resolves to {found}, not to {digest}"),
                )
                .with_hint("another push moved the tag meanwhile: run img-manifest again"));
            }
            None => {
                return Err(Error::unavailable(format!(
                    "after the push, registry {host} does not know {host}/{repository}:{tag}"
                ))
                .with_hint("the registry lost the push: run img-manifest again"));
            }
        }
    }

    Ok((pushed, present))
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
        children.push(child(&registry, r).await?);
    }
    sort_children(&mut children)?;
    let format = cli
        .format
        .unwrap_or_else(|| Format::matching(children.iter().map(|c| c.media_type.as_str())));
    let body = index_bytes(format, &children);
    let digest = sha256_digest(&body);

    registry.check_push_access(&repository).await?;
    let (pushed, present) = push_tags(&registry, &repository, &tags, format, &body).await?;

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
    let platforms: Vec<Value> = children
        .iter()
        .map(|c| {
            let mut p = json!({
                "platform": c.platform.name(),
                "os": c.platform.os,
                "architecture": c.platform.architecture,
            });
            if let Some(variant) = &c.platform.variant {
                p["variant"] = json!(variant);
            }
            if let Some(version) = &c.platform.os_version {
                p["os_version"] = json!(version);
            }
            p["digest"] = json!(c.digest);
            p["digest_uri"] = json!(format!("{name}@{}", c.digest));
            p["media_type"] = json!(c.media_type);
            p
        })
        .collect();
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
