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

use std::path::PathBuf;

use aws::AwsArgs;
use clap::Parser;
use shared::Result;
use shared::cli::Common;
use shared::exit::Code;
use tokio::sync::OnceCell;

mod engine;
mod immutability;
mod platforms;
mod push;
mod record;
mod retag;
mod target;
#[cfg(test)]
mod tests;

pub use engine::{classify_push_error, digest_in_status};
pub use immutability::{TagState, ecr_tag_immutable};
use push::push;
pub use target::{Target, parse_reference, target};

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

  # A multi-platform build: each platform under TAG-ARCH, then one list under every tag
  img-tag | img-build --platform linux/amd64,linux/arm64 | img-push

A tag that already names this image is reported as already present and succeeds; a tag that
names another image where tags are immutable exits with 4 before anything is uploaded.

A document from img-build --platform A,B (its platforms with image ids) is pushed as one
multi-platform image: each platform's image under the first tag plus -ARCH (1.4.2-arm64),
written once, then a manifest list (an OCI index when a child is OCI) under every tag. Every
tag is checked first, so an immutable repository takes the same build again and refuses a
changed one with 4 before any upload."
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
