//! `img-build`: build an image through the Docker Engine API, sending the build context exactly as
//! the docker CLI does (see `context`), and tag it with every reference of the document.
//!
//! Replaces `docker build -t $ECR_REGISTRY/$IMAGE_REPO:$IMAGE_TAG .` and the cache variant
//! (`docker pull ...:latest || true; docker build --cache-from ...`). The context is streamed to
//! the daemon from a writer thread through a small channel, so memory stays flat whatever its size.
//!
//! Two builders: the daemon's BuildKit through a session (`--builder buildkit`, preferred by
//! `auto` when the daemon offers it; see `buildkit` for its progress) and the classic builder.
//! Both get the same tar context as the request body.
//!
//! Writes the image document with `image_id` and a `build` object: the references applied, the
//! context's entries, files, bytes and content hash, the steps (and how many came from cache)
//! and the duration.

use std::path::PathBuf;

mod body;
mod build;
mod builder;
mod buildkit;
mod cache;
mod explain;
mod platforms;
mod request;
pub mod session;
mod skip;
mod stream;
#[cfg(test)]
mod tests;

use build::build;
pub use builder::{Builder, api_version, choose};
use explain::explain;
pub use request::INLINE_CACHE_ARG;
pub use request::{build_args, references, split_reference};
pub use skip::registry_repository;
pub use stream::{Progress, plain};

use aws::AwsArgs;
use clap::Parser;
use shared::Result;
use shared::cli::Common;
use shared::exit::Code;
use shared::platform::Platform;
use tokio::sync::OnceCell;

/// How many output lines of the failing step are shown with the error.
pub(crate) const LAST_LINES: usize = 12;

/// The size of the chunks the context is sent in.
pub(crate) const CHUNK: usize = 256 * 1024;

/// Build an image through the Docker Engine API and tag it with every reference of the document.
// The flags mirror `docker build`'s, which are on/off switches.
#[allow(clippy::struct_excessive_bools)]
#[derive(Parser, Debug)]
#[command(
    name = "img-build",
    version,
    after_long_help = "EXAMPLES:
  # The seed's build: tags from img-tag, OCI labels included, cache from the last image
  ecr-login | img-tag | img-build --cache-from \"$ECR_REGISTRY/$IMAGE_REPO:latest\" | img-push

  # A Dockerfile outside the context, one stage, a build argument from the environment
  img-build --no-input -f docker/Dockerfile.prod --target runtime --build-arg APP_VERSION \\
      --tag my-app:dev ./app

  # What would be sent, and why node_modules/x is not
  img-build --no-input --explain-context --why node_modules/x .

  # The classic builder, whatever the daemon offers
  img-build --no-input --builder classic --tag my-app:dev .

  # Build only what changed: an unchanged context is found in the registry by its content tag
  img-tag --tag sha --tag content | img-build --skip-if-present | img-push

  # A token for a private registry, from a file or the environment, never in the image
  img-build --no-input --secret id=npmrc,src=$HOME/.npmrc --secret id=token,env=NPM_TOKEN .

  # Private git dependencies through the SSH agent (RUN --mount=type=ssh)
  img-build --no-input --ssh default .

  # One image for x86 and ARM from this host (arm64 RUN steps under QEMU), pushed as one list
  img-tag | img-build --platform linux/amd64,linux/arm64 | img-push

BuildKit (the default when the daemon offers it) gets the context, the Dockerfile, secrets and
SSH agents through a session, as the docker CLI sends them: only the files .dockerignore keeps,
and on a rebuild only those that changed. It gets BUILDKIT_INLINE_CACHE=1, so a pushed image
serves as --cache-from for the next build. A failing build step exits with 65 (bad input: the
Dockerfile or the sources), after its last output lines; a --secret or --ssh whose source is
missing exits with 2 before the build; a --platform this host can neither run nor emulate exits
with 78 before the build."
)]
pub struct Cli {
    /// The build context directory.
    #[arg(value_name = "CONTEXT", default_value = ".")]
    pub context: PathBuf,

    /// The Dockerfile (relative to the current directory, as `docker build -f`; it may lie outside
    /// the context). Default: CONTEXT/Dockerfile.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,

    /// Build only up to this stage of a multi-stage Dockerfile.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// Build argument KEY=VALUE, or KEY to take the value from the environment (repeatable).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,

    /// Label KEY=VALUE for the image, on top of the document's `labels` (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = shared::cli::key_value)]
    pub labels: Vec<(String, String)>,

    /// Another reference to tag the image with, besides the document's (repeatable).
    #[arg(short = 't', long = "tag", value_name = "REF")]
    pub tags: Vec<String>,

    /// An image whose layers may serve as cache; pulled first when not local, and skipped with a
    /// warning when it cannot be found (repeatable).
    #[arg(long = "cache-from", value_name = "REF")]
    pub cache_from: Vec<String>,

    /// Always try to pull a newer version of the base images.
    #[arg(long)]
    pub pull: bool,

    /// Do not use the build cache (with BuildKit on Engine 20.10, cache mounts start empty too).
    #[arg(long)]
    pub no_cache: bool,

    /// A secret for `RUN --mount=type=secret,id=ID`: id=ID[,src=PATH], id=ID,env=VAR, or
    /// type=file|env; with neither src nor env, the variable ID if set, else the file ID. Read
    /// before the build; never written to the image, the logs or the document (repeatable;
    /// BuildKit only).
    #[arg(long = "secret", value_name = "id=ID[,src=PATH|env=VAR]", value_parser = session::secrets::parse_secret)]
    pub secrets: Vec<session::secrets::SecretSpec>,

    /// An SSH agent for `RUN --mount=type=ssh`: default (SSH_AUTH_SOCK), or ID=SOCKET, or
    /// ID=KEY[,KEY] to serve key files from a private ssh-agent (repeatable; BuildKit only).
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET_OR_KEYS]", value_parser = session::ssh::parse_ssh)]
    pub ssh: Vec<session::ssh::SshSpec>,

    /// Target platforms, os/arch[/variant], comma-separated or repeated
    /// (linux/amd64,linux/arm64). One platform builds one image. Several build one image each
    /// (the Engine's image store keeps one platform per tag), listed in the document's
    /// `platforms` for img-push to push as one multi-platform image; each is tagged locally as
    /// the first reference plus -ARCH (my-app:1.4.2-arm64). A platform that is not the
    /// daemon's own runs its RUN steps under QEMU, which must be registered with binfmt_misc:
    /// checked before any build (exit 78 when it is not).
    #[arg(long = "platform", value_name = "PLATFORM[,PLATFORM]", value_delimiter = ',', value_parser = shared::cli::platform)]
    pub platforms: Vec<Platform>,

    /// Network mode for RUN steps (default, host, none, or a network name).
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,

    /// Which builder to use: auto takes the daemon's BuildKit when it offers it (Engine 18.09+
    /// on Linux) and the classic builder otherwise, or as DOCKER_BUILDKIT=0|1 says.
    #[arg(long, value_enum, default_value = "auto")]
    pub builder: Builder,

    /// Keep each file's own modification time in the context (the docker CLI's behaviour)
    /// instead of a fixed one (SOURCE_DATE_EPOCH, else 1980-01-01).
    #[arg(long)]
    pub keep_mtimes: bool,

    /// Do not build: show what would be sent (sizes by directory, largest files, warnings) on
    /// stderr, and the counts in the document.
    #[arg(long)]
    pub explain_context: bool,

    /// With --explain-context: say whether PATH (relative to the context) is sent, and which
    /// .dockerignore rule decided (repeatable; implies --explain-context).
    #[arg(long = "why", value_name = "PATH")]
    pub why: Vec<String>,

    /// Skip the build when the registry already holds this context: hash the context (as
    /// img-tag's `content` rule does) and, when the document's repository has the tag
    /// `ctx-<hash>`, write its digest to the document with `build.skipped: true` instead of
    /// building; img-push then only adds the document's tags to that image. A skipped build
    /// needs no Docker Engine. A registry that cannot be asked is a warning, and the image is
    /// built.
    #[arg(long)]
    pub skip_if_present: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub aws: AwsArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

impl Cli {
    /// The platforms asked for, each once, in the order given.
    #[must_use]
    pub fn platforms(&self) -> Vec<Platform> {
        let mut out: Vec<Platform> = Vec::new();
        for p in &self.platforms {
            if !out.iter().any(|o| o.same(p)) {
                out.push(p.clone());
            }
        }
        out
    }
}

impl shared::cli::Cli for Cli {
    fn common(&self) -> &Common {
        &self.common
    }
}

/// Runs the tool: one build per input document.
pub fn run(cli: &Cli) -> Result<Code> {
    shared::cli::runtime()?.block_on(async {
        if cli.explain_context || !cli.why.is_empty() {
            return shared::cli::pipeline(&cli.common, |doc| async { explain(cli, doc) }).await;
        }
        // The daemon is asked for on the first build: a skipped build needs none.
        let daemon = OnceCell::new();
        shared::cli::pipeline(&cli.common, |doc| build(cli, &daemon, doc)).await
    })
}
