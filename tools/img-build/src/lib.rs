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

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Instant;

mod buildkit;

use aws::AwsArgs;
use bollard::models::{BuildInfoAux, ImageId};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, BuilderVersion, CreateImageOptionsBuilder, TagImageOptionsBuilder,
};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use context::{Context, Options, Report, Summary};
use docker::Engine;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use shared::cli::Common;
use shared::error::chain;
use shared::exit::Code;
use shared::{Document, Error, Result, info, verbose, warn};
use tokio::sync::OnceCell;

/// How many output lines of the failing step are shown with the error.
pub(crate) const LAST_LINES: usize = 12;

/// The size of the chunks the context is sent in.
const CHUNK: usize = 256 * 1024;

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

BuildKit (the default when the daemon offers it) gets BUILDKIT_INLINE_CACHE=1, so a pushed image
serves as --cache-from for the next build. Secrets (RUN --mount=type=secret) are not supported:
see docs/img-build.md. A failing build step exits with 65 (bad input: the Dockerfile or the
sources), after its last output lines."
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

    /// Target platform, os/arch[/variant] (e.g. linux/amd64).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,

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

/// The builder to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Builder {
    /// BuildKit when the daemon offers it, else the classic builder (with a note).
    Auto,
    /// The daemon's BuildKit through a session: cache mounts, inline cache, parallel stages.
    Buildkit,
    /// The classic (legacy) builder.
    Classic,
}

impl Builder {
    /// The name written to the document.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Builder::Buildkit => "buildkit",
            Builder::Classic | Builder::Auto => "classic",
        }
    }
}

/// The oldest Engine API version whose BuildKit builds through `/build` with a session
/// (Engine 18.09).
const BUILDKIT_MIN_API: (u32, u32) = (1, 39);

/// Parses an API version `1.41` into its numbers.
#[must_use]
pub fn api_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The builder to use, from the flag, `DOCKER_BUILDKIT` (as the docker CLI reads it: `0`/`false`
/// is classic, `1`/`true` BuildKit) and what the daemon offers; `Err` with the reason when
/// BuildKit is asked for but the daemon cannot give it. With `auto` and no BuildKit, the second
/// value is the note to show.
pub fn choose(
    flag: Builder,
    env: Option<&str>,
    daemon: std::result::Result<(), String>,
) -> std::result::Result<(Builder, Option<String>), String> {
    let wanted = match (flag, env.map(|v| v.trim().to_ascii_lowercase())) {
        (Builder::Auto, Some(v)) if v == "0" || v == "false" => Builder::Classic,
        (Builder::Auto, Some(v)) if v == "1" || v == "true" => Builder::Buildkit,
        (other, _) => other,
    };
    match (wanted, daemon) {
        (Builder::Classic, _) => Ok((Builder::Classic, None)),
        (Builder::Buildkit, Err(why)) => Err(why),
        (Builder::Auto, Err(why)) => Ok((
            Builder::Classic,
            Some(format!("{why}; using the classic builder")),
        )),
        (Builder::Buildkit | Builder::Auto, Ok(())) => Ok((Builder::Buildkit, None)),
    }
}

/// Whether the daemon offers BuildKit through the Engine API: a Linux daemon with API 1.39+.
async fn daemon_buildkit(engine: &Engine) -> std::result::Result<(), String> {
    let version = engine.client.version().await.map_err(|e| {
        format!(
            "the Docker daemon at {} did not say its version ({})",
            engine.host,
            chain(&e)
        )
    })?;
    let os = version.os.unwrap_or_default();
    let api = version.api_version.unwrap_or_default();
    if !os.eq_ignore_ascii_case("linux") {
        return Err(format!(
            "the Docker daemon at {} runs on {os}, where BuildKit is not offered",
            engine.host
        ));
    }
    match api_version(&api) {
        Some(v) if v >= BUILDKIT_MIN_API => Ok(()),
        _ => Err(format!(
            "the Docker daemon at {} speaks API {api}; BuildKit needs 1.39 (Engine 18.09) or newer",
            engine.host
        )),
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

/// Connects to the Docker Engine and chooses the builder (the daemon's BuildKit, unless the
/// classic builder is asked for or BuildKit is not there).
async fn connect(cli: &Cli) -> Result<(Engine, Builder)> {
    let engine = Engine::connect().await?;
    let daemon = if cli.builder == Builder::Classic {
        Ok(())
    } else {
        daemon_buildkit(&engine).await
    };
    let env = std::env::var("DOCKER_BUILDKIT").ok();
    let (builder, note) = choose(cli.builder, env.as_deref(), daemon).map_err(|why| {
        Error::config(format!("BuildKit was asked for, but {why}")).with_hint(
            "use --builder classic (or auto, which falls back to it) and unset DOCKER_BUILDKIT",
        )
    })?;
    if let Some(note) = note {
        info!("note: {note}");
    }
    Ok((engine, builder))
}

fn open_context(cli: &Cli) -> Result<Context> {
    let options = if cli.keep_mtimes {
        Options { mtime: None }
    } else {
        Options::default()
    };
    Context::open(&cli.context, cli.file.as_deref(), options)
}

fn explain(cli: &Cli, mut doc: Document) -> Result<Document> {
    let ctx = open_context(cli)?;
    let report = ctx.explain(10)?;
    print_report(&ctx, &report);
    for path in &cli.why {
        info!("{}", ctx.ignore().explain(path));
    }
    let mut build = object(&doc, "build");
    build.insert(
        "context".to_owned(),
        json!({
            "dir": ctx.root().display().to_string(),
            "dockerfile": ctx.dockerfile_name(),
            "entries": report.entries,
            "files": report.files,
            "bytes": report.bytes,
        }),
    );
    doc.set("build", Value::Object(build));
    Ok(doc)
}

fn print_report(ctx: &Context, report: &Report) {
    info!(
        "context {}: {} files, {} in {} entries; Dockerfile sent as {}",
        ctx.root().display(),
        report.files,
        shared::show::bytes(report.bytes),
        report.entries,
        ctx.dockerfile_name()
    );
    if ctx.ignore().rules().is_empty() {
        info!("no .dockerignore rules: everything is sent");
    } else {
        info!("rules, in order (the last that matches wins):");
        for rule in ctx.ignore().rules() {
            info!("  {:<30} {}", rule.text, rule.location());
        }
    }
    info!("by directory:");
    for dir in &report.dirs {
        info!(
            "  {:>10}  {:>7} files  {}",
            shared::show::bytes(dir.bytes),
            dir.files,
            dir.dir
        );
    }
    info!("largest files:");
    for (name, size) in &report.largest {
        info!("  {:>10}  {name}", shared::show::bytes(*size));
    }
    for warning in &report.warnings {
        warn!("{warning}");
    }
}

fn object(doc: &Document, name: &str) -> Map<String, Value> {
    match doc.get(name) {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    }
}

/// The references to tag: the document's `references`, else `registry/repository:tag` for each
/// of its `tags`, then `--tag`, without repeats.
#[must_use]
pub fn references(doc: &Document, extra: &[String]) -> Vec<String> {
    let mut refs: Vec<String> = doc
        .strings("references")
        .into_iter()
        .map(str::to_owned)
        .collect();
    if refs.is_empty()
        && let Some(repository) = doc.str("repository")
    {
        let base = match doc.str("registry") {
            Some(registry) if !registry.is_empty() => format!("{registry}/{repository}"),
            _ => repository.to_owned(),
        };
        refs.extend(
            doc.strings("tags")
                .iter()
                .map(|tag| format!("{base}:{tag}")),
        );
    }
    refs.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    refs.retain(|r| seen.insert(r.clone()));
    refs
}

/// Splits `host:port/repo/name:tag` into repository and tag (`latest` when none).
pub fn split_reference(reference: &str) -> Result<(String, String)> {
    if reference.contains('@') {
        return Err(Error::data(format!(
            "cannot tag {reference}: a digest reference names an image, it is not a tag"
        ))
        .with_hint("give references as registry/repository:tag"));
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(colon) => {
            let at = slash + colon;
            Ok((reference[..at].to_owned(), reference[at + 1..].to_owned()))
        }
        None => Ok((reference.to_owned(), "latest".to_owned())),
    }
}

/// Build arguments: `KEY=VALUE` as given, `KEY` from the environment (left out when unset, so
/// the Dockerfile's default applies, as with the docker CLI).
pub fn build_args(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for arg in args {
        match arg.split_once('=') {
            Some(("", _)) => {
                return Err(
                    Error::data(format!("--build-arg {arg:?}: the name is empty"))
                        .with_hint("write --build-arg KEY=VALUE or --build-arg KEY"),
                );
            }
            Some((key, value)) => {
                out.insert(key.to_owned(), value.to_owned());
            }
            None => {
                if let Some(value) = env(arg) {
                    out.insert(arg.clone(), value);
                } else {
                    verbose!("build argument {arg} is not set in the environment: not passed");
                }
            }
        }
    }
    Ok(out)
}

fn labels(cli: &Cli, doc: &Document) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let Some(Value::Object(map)) = doc.get("labels") {
        for (key, value) in map {
            if let Some(value) = value.as_str() {
                out.insert(key.clone(), value.to_owned());
            }
        }
    }
    for (key, value) in &cli.labels {
        out.insert(key.clone(), value.clone());
    }
    out
}

/// The registry host a repository reference names (`host[:port]/...`, as the docker CLI reads
/// it: a first part with a dot or a port, or `localhost`), or `None` for Docker Hub.
fn registry_of(repository: &str) -> Option<&str> {
    let (first, _) = repository.split_once('/')?;
    shared::names::looks_like_host(first).then_some(first)
}

/// Checks the registry host of each reference that names one, before anything is looked up or
/// sent: credentials are found by that name.
fn check_registries<'a>(references: impl IntoIterator<Item = &'a String>) -> Result<()> {
    for reference in references {
        if let Some(host) = registry_of(reference) {
            shared::names::check_host(host)
                .map_err(|e| e.context(format!("image {}", shared::names::quote(reference))))?;
        }
    }
    Ok(())
}

/// Pulls each cache image that is not local, with the credentials stored for its registry
/// (the same lookup img-push uses); a missing one is a warning, as in the seed's
/// `docker pull ... || true`.
async fn prepare_cache(engine: &Engine, aws: &AwsArgs, refs: &[String]) -> Vec<String> {
    let mut usable = Vec::new();
    for reference in refs {
        if engine.client.inspect_image(reference).await.is_ok() {
            usable.push(reference.clone());
            continue;
        }
        let Ok((repo, tag)) = split_reference(reference) else {
            warn!("cache image {reference}: not a tag reference; building without it");
            continue;
        };
        info!("pulling cache image {reference}");
        let options = CreateImageOptionsBuilder::new()
            .from_image(&repo)
            .tag(&tag)
            .build();
        let credentials = match registry_of(&repo) {
            Some(registry) => match registry::credentials::lookup(registry, aws).await {
                Ok(found) => {
                    verbose!("credentials for {registry}: {}", found.source);
                    found.credentials
                }
                Err(e) => {
                    warn!(
                        "cache image {reference}: no credentials for {registry} ({}); pulling without",
                        e.message()
                    );
                    None
                }
            },
            None => None,
        };
        let header = docker::registry_auth_header(
            credentials.as_ref(),
            registry_of(&repo).unwrap_or_default(),
        );
        // bollard sends the header only with credentials; the modifier then puts in the
        // base64url value the daemon decodes (see Engine::with_registry_auth).
        let mut stream = engine.with_registry_auth(&header).create_image(
            Some(options),
            None,
            Some(bollard::auth::DockerCredentials::default()),
        );
        let mut failed = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        failed = Some(detail);
                    }
                }
                Err(e) => failed = Some(chain(&e)),
            }
        }
        match failed {
            None => usable.push(reference.clone()),
            Some(why) => warn!(
                "cache image {reference} is not available ({}); building without it",
                shared::cli::one_line(&why)
            ),
        }
    }
    usable
}

/// Where the tar bytes go: chunks into the request body's channel.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<std::result::Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the daemon stopped reading"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// What the build output said, step by step.
#[derive(Debug, Default)]
pub struct Progress {
    partial: String,
    /// The current step's header (`Step 3/5 : RUN make`).
    pub step: Option<String>,
    /// The last output lines of the current step.
    pub last: std::collections::VecDeque<String>,
    /// Steps started.
    pub steps: u64,
    /// Steps answered from the cache.
    pub cached: u64,
}

impl Progress {
    /// Takes a piece of the `stream` output; returns the complete lines, cleaned for a log.
    pub fn feed(&mut self, text: &str) -> Vec<String> {
        self.partial.push_str(text);
        let mut lines = Vec::new();
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            let line = plain(line.trim_end_matches(['\n', '\r']));
            self.line(&line);
            lines.push(line);
        }
        lines
    }

    /// The rest of a last line that ended without a newline.
    pub fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let line = plain(&std::mem::take(&mut self.partial));
        self.line(&line);
        Some(line)
    }

    fn line(&mut self, line: &str) {
        if line.starts_with("Step ") && line.contains(" : ") {
            self.step = Some(line.to_owned());
            self.steps += 1;
            self.last.clear();
            return;
        }
        if line.trim() == "---> Using cache" {
            self.cached += 1;
        }
        if self.last.len() == LAST_LINES {
            self.last.pop_front();
        }
        self.last.push_back(line.to_owned());
    }
}

/// A line without terminal control sequences: carriage-return rewrites keep their last state,
/// escape sequences and other control characters go.
#[must_use]
pub fn plain(line: &str) -> String {
    let line = line
        .rsplit('\r')
        .find(|part| !part.is_empty())
        .unwrap_or("");
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for next in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&next) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

/// A session id for a BuildKit build: unique per process and build.
fn session_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("img-build-{}-{nanos:x}", std::process::id())
}

/// The build argument that makes BuildKit write its cache metadata into the image, so the image
/// can serve as `--cache-from` for later builds.
pub const INLINE_CACHE_ARG: &str = "BUILDKIT_INLINE_CACHE";

/// What one build request is made of.
struct BuildRequest<'a> {
    cli: &'a Cli,
    builder: Builder,
    dockerfile: &'a str,
    args: &'a HashMap<String, String>,
    labels: &'a HashMap<String, String>,
    // bollard takes the cache images as a `&Vec`.
    #[allow(clippy::ptr_arg)]
    cache: &'a Vec<String>,
    first: Option<&'a str>,
    session: &'a str,
}

impl BuildRequest<'_> {
    /// The `/build` query: BuildKit (version 2, with the session) or the classic builder.
    fn options(&self) -> bollard::query_parameters::BuildImageOptions {
        let mut options = BuildImageOptionsBuilder::new()
            .dockerfile(self.dockerfile)
            .rm(true)
            .nocache(self.cli.no_cache)
            .buildargs(self.args)
            .labels(self.labels);
        options = if self.builder == Builder::Buildkit {
            options
                .version(BuilderVersion::BuilderBuildKit)
                .session(self.session)
        } else {
            options.version(BuilderVersion::BuilderV1)
        };
        if let Some(first) = self.first {
            options = options.t(first);
        }
        if !self.cache.is_empty() {
            options = options.cachefrom(self.cache);
        }
        if self.cli.pull {
            options = options.pull("1");
        }
        if let Some(target) = &self.cli.target {
            options = options.target(target);
        }
        if let Some(platform) = &self.cli.platform {
            options = options.platform(platform);
        }
        if let Some(network) = &self.cli.network {
            options = options.networkmode(network);
        }
        options.build()
    }
}

async fn build(
    cli: &Cli,
    daemon: &OnceCell<(Engine, Builder)>,
    mut doc: Document,
) -> Result<Document> {
    let started = Instant::now();
    check_registries(references(&doc, &cli.tags).iter().chain(&cli.cache_from))?;
    let ctx = open_context(cli)?;
    if cli.skip_if_present {
        let summary = ctx.hash()?;
        if let Some(found) = find_present(cli, &doc, &summary.hash).await? {
            return Ok(skipped(&ctx, doc, &summary, &found, started));
        }
    }
    let (engine, builder) = daemon.get_or_try_init(|| connect(cli)).await?;
    let (engine, builder) = (engine, *builder);
    let refs = references(&doc, &cli.tags);
    let split: Vec<(String, String)> = refs
        .iter()
        .map(|r| split_reference(r))
        .collect::<Result<_>>()?;
    let mut args = build_args(&cli.build_args, |key| std::env::var(key).ok())?;
    if builder == Builder::Buildkit {
        args.entry(INLINE_CACHE_ARG.to_owned())
            .or_insert_with(|| "1".to_owned());
    }
    let labels = labels(cli, &doc);
    let cache = prepare_cache(engine, &cli.aws, &cli.cache_from).await;

    let session = session_id();
    let options = BuildRequest {
        cli,
        builder,
        dockerfile: ctx.dockerfile_name(),
        args: &args,
        labels: &labels,
        cache: &cache,
        first: refs.first().map(String::as_str),
        session: &session,
    }
    .options();

    info!(
        "building {} (context {}, Dockerfile {}) with {}",
        refs.first().map_or("an untagged image", String::as_str),
        ctx.root().display(),
        ctx.dockerfile_name(),
        if builder == Builder::Buildkit {
            "BuildKit"
        } else {
            "the classic builder"
        }
    );
    let (image_id, progress, summary) = stream_build(engine, &ctx, options).await?;

    for (reference, (repo, tag)) in refs.iter().zip(&split).skip(1) {
        let options = TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
        engine
            .client
            .tag_image(&image_id, Some(options))
            .await
            .map_err(|e| {
                Error::data(format!("tagging {image_id} as {reference}: {}", chain(&e)))
                    .with_hint("references must be registry/repository:tag")
            })?;
    }
    let seconds = started.elapsed().as_secs_f64();
    info!(
        "built {image_id} in {seconds:.1} s ({} of {} steps from cache); tagged {}",
        progress.cached,
        progress.steps,
        if refs.is_empty() {
            "nothing".to_owned()
        } else {
            refs.join(", ")
        }
    );

    let mut build = object(&doc, "build");
    build.insert("builder".to_owned(), json!(builder.name()));
    build.insert("references".to_owned(), json!(refs));
    build.insert("steps".to_owned(), json!(progress.steps));
    build.insert("cached_steps".to_owned(), json!(progress.cached));
    insert_timing_and_context(&mut build, seconds, &ctx, &summary);
    if let Some(target) = &cli.target {
        build.insert("target".to_owned(), json!(target));
    }
    if cli.skip_if_present {
        build.insert("skipped".to_owned(), json!(false));
    }
    doc.set("image_id", image_id);
    doc.set("build", Value::Object(build));
    Ok(doc)
}

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
struct Present {
    name: String,
    tag: String,
    digest: String,
}

/// Looks for the content tag of `hash` in the document's repository. `None` means build: the
/// tag is not there, the document names another content tag, or the registry could not be
/// asked (a warning: building is always correct, only slower). A registry name that is not
/// valid is an error: nothing is asked of it.
async fn find_present(cli: &Cli, doc: &Document, hash: &str) -> Result<Option<Present>> {
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
        client.manifest_digest(&repository, &tag).await
    };
    Ok(match lookup.await {
        Ok(Some(digest)) => Some(Present { name, tag, digest }),
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

/// The `build` fields a build and a skipped build share: how long it took and what the context
/// was.
fn insert_timing_and_context(
    build: &mut Map<String, Value>,
    seconds: f64,
    ctx: &Context,
    summary: &Summary,
) {
    build.insert(
        "duration_seconds".to_owned(),
        json!((seconds * 1000.0).round() / 1000.0),
    );
    build.insert(
        "context".to_owned(),
        json!({
            "dir": ctx.root().display().to_string(),
            "dockerfile": ctx.dockerfile_name(),
            "entries": summary.entries,
            "files": summary.files,
            "bytes": summary.bytes,
            "hash": summary.hash,
        }),
    );
}

/// The document for a skipped build: the digest found, and why nothing was built.
fn skipped(
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
    doc.set("digest", found.digest.as_str());
    doc.set("build", Value::Object(build));
    doc
}

/// Sends the context and follows the build's output; returns the image id, what the output
/// said, and what was sent.
async fn stream_build(
    engine: &Engine,
    ctx: &Context,
    options: bollard::query_parameters::BuildImageOptions,
) -> Result<(String, Progress, Summary)> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let writer_ctx = ctx.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        writer_ctx.write_tar(&mut out)
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });

    let mut stream = engine
        .client
        .build_image(options, None, Some(bollard::body_try_stream(body)));
    let mut progress = Progress::default();
    let mut trace = buildkit::Trace::default();
    let mut image_id: Option<String> = None;
    let mut failure: Option<Error> = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = &info.stream {
                    for line in progress.feed(text) {
                        info!("{line}");
                    }
                }
                match &info.aux {
                    Some(BuildInfoAux::Default(ImageId { id: Some(id) })) => {
                        image_id = Some(id.clone());
                    }
                    Some(BuildInfoAux::BuildKit(status)) => {
                        for line in trace.feed(status) {
                            info!("{line}");
                        }
                    }
                    _ => {}
                }
                let message = info.error_detail.as_ref().and_then(|d| d.message.clone());
                if let Some(message) = message {
                    failure = Some(step_failed(&mut progress, &trace, &message));
                    break;
                }
            }
            // The daemon's report of a failed step arrives as a stream error.
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                failure = Some(step_failed(&mut progress, &trace, &error));
                break;
            }
            Err(e) => {
                failure = Some(request_failed(engine, &e));
                break;
            }
        }
    }
    if let Some(line) = progress.finish() {
        info!("{line}");
    }
    drop(stream);
    let sent = match writer.await {
        Ok(result) => result,
        Err(e) => Err(Error::internal(format!(
            "the build context writer stopped: {e}"
        ))),
    };
    // A context that could not be read is the cause of whatever the daemon said after it.
    let summary = match (sent, failure) {
        (Err(e), _) if !e.is_broken_pipe() => return Err(e),
        (_, Some(failure)) => return Err(failure),
        (Err(_), None) => {
            return Err(Error::unavailable(format!(
                "the Docker daemon at {} stopped reading the build context",
                engine.host
            ))
            .with_hint("see the daemon's log; retry the build"));
        }
        (Ok(summary), None) => summary,
    };
    let Some(image_id) = image_id else {
        return Err(Error::internal(
            "the build ended without an image id from the daemon",
        ));
    };

    if trace.steps > 0 {
        progress.steps = trace.steps;
        progress.cached = trace.cached;
    }
    Ok((image_id, progress, summary))
}

fn step_failed(progress: &mut Progress, trace: &buildkit::Trace, message: &str) -> Error {
    let message = shared::cli::one_line(message);
    if let Some(failed) = trace.failure() {
        if !failed.last.is_empty() {
            warn!("last output of {}:", failed.step);
            for line in &failed.last {
                warn!("  | {line}");
            }
        }
        return Error::data(format!("{} failed: {message}", failed.step))
            .with_hint("fix the step or the sources it uses; its last output lines are above");
    }
    let Some(step) = progress.step.clone() else {
        return Error::data(format!("the build failed before its first step: {message}"))
            .with_hint("check the Dockerfile and the build arguments");
    };
    if !progress.last.is_empty() {
        warn!("last output of {step}:");
        for line in &progress.last {
            warn!("  | {line}");
        }
    }
    Error::data(format!("{step} failed: {message}"))
        .with_hint("fix the step or the sources it uses; its last output lines are above")
}

fn request_failed(engine: &Engine, err: &bollard::errors::Error) -> Error {
    use bollard::errors::Error as E;
    match err {
        E::DockerResponseServerError {
            status_code,
            message,
        } if *status_code < 500
            || message.contains("Dockerfile")
            || message.contains("dockerfile") =>
        {
            Error::data(format!(
                "the daemon refused the build: {}",
                shared::cli::one_line(message)
            ))
            .with_hint("check the Dockerfile, --target and the build arguments")
        }
        E::DockerResponseServerError { message, .. } => Error::data(format!(
            "the build failed: {}",
            shared::cli::one_line(message)
        ))
        .with_hint("check the Dockerfile and the daemon's log"),
        other => Error::unavailable(format!(
            "the build request to {} failed: {}",
            engine.host,
            chain(other)
        ))
        .with_hint("check that the Docker daemon is running and reachable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_images_name_their_registry_as_the_docker_cli_reads_it() {
        assert_eq!(registry_of("127.0.0.1:5001/app"), Some("127.0.0.1:5001"));
        assert_eq!(
            registry_of("1234.dkr.ecr.us-east-1.amazonaws.com/team/app"),
            Some("1234.dkr.ecr.us-east-1.amazonaws.com")
        );
        assert_eq!(registry_of("localhost/app"), Some("localhost"));
        assert_eq!(registry_of("team/app"), None);
        assert_eq!(registry_of("app"), None);
    }

    #[test]
    fn the_content_tag_and_where_to_look_for_it() {
        let doc = |v: Value| Document::from_value(v, "test").expect("document");
        let cases = [
            (
                json!({"registry": "r.example", "repository": "a/b", "references": ["x.example/c:1"]}),
                Some(("r.example", "a/b")),
            ),
            (
                json!({"references": ["127.0.0.1:5000/team/app:1"]}),
                Some(("127.0.0.1:5000", "team/app")),
            ),
            (json!({"references": ["team/app:1"]}), None),
            (json!({"repository": "app"}), None),
        ];
        for (value, want) in cases {
            let got = registry_repository(&doc(value.clone())).expect("valid names");
            assert_eq!(
                got.as_ref().map(|(r, p)| (r.as_str(), p.as_str())),
                want,
                "{value}"
            );
        }
        for hostile in [
            json!({"registry": "123456789012.dkr.ecr.us-east-1.amazonaws.com:443@other.host", "repository": "app"}),
            json!({"references": ["123456789012.dkr.ecr.us-east-1.amazonaws.com:443@other.host/app:1"]}),
            json!({"registry": "r.example", "repository": "../other"}),
        ] {
            let err = registry_repository(&doc(hostile.clone())).unwrap_err();
            assert_eq!(err.code(), shared::exit::DATA, "{hostile}");
        }
    }

    #[test]
    fn references_come_from_the_document_then_flags() {
        let doc = |v: Value| Document::from_value(v, "test").expect("document");
        let cases: Vec<(Value, Vec<&str>, Vec<&str>)> = vec![
            (
                json!({"references": ["r/app:1", "r/app:latest"], "tags": ["x"], "repository": "y"}),
                vec!["extra:1", "r/app:1"],
                vec!["r/app:1", "r/app:latest", "extra:1"],
            ),
            (
                json!({"registry": "127.0.0.1:5000", "repository": "team/app", "tags": ["1.2", "latest"]}),
                vec![],
                vec![
                    "127.0.0.1:5000/team/app:1.2",
                    "127.0.0.1:5000/team/app:latest",
                ],
            ),
            (
                json!({"repository": "app", "tags": ["dev"]}),
                vec![],
                vec!["app:dev"],
            ),
            (json!({}), vec!["only:flag"], vec!["only:flag"]),
            (json!({"repository": "app"}), vec![], vec![]),
        ];
        for (input, extra, want) in cases {
            let extra: Vec<String> = extra.into_iter().map(str::to_owned).collect();
            assert_eq!(references(&doc(input.clone()), &extra), want, "{input}");
        }
    }

    #[test]
    fn references_split_into_repository_and_tag() {
        let cases = [
            ("app", ("app", "latest")),
            ("app:1", ("app", "1")),
            (
                "127.0.0.1:5000/team/app",
                ("127.0.0.1:5000/team/app", "latest"),
            ),
            (
                "127.0.0.1:5000/team/app:v1",
                ("127.0.0.1:5000/team/app", "v1"),
            ),
        ];
        for (input, (repo, tag)) in cases {
            assert_eq!(
                split_reference(input).expect("valid"),
                (repo.to_owned(), tag.to_owned()),
                "{input}"
            );
        }
        assert!(split_reference("app@sha256:abc").is_err());
    }

    #[test]
    fn build_args_take_values_or_the_environment() {
        let env = |key: &str| (key == "FROM_ENV").then(|| "env value".to_owned());
        let args: Vec<String> = ["A=1", "B=", "C=x=y", "FROM_ENV", "UNSET"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let got = build_args(&args, env).expect("valid");
        let mut got: Vec<(String, String)> = got.into_iter().collect();
        got.sort();
        let want = [
            ("A", "1"),
            ("B", ""),
            ("C", "x=y"),
            ("FROM_ENV", "env value"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(got, want);
        assert!(build_args(&["=x".to_owned()], env).is_err());
    }

    #[test]
    fn progress_tracks_steps_cache_and_last_lines() {
        let mut p = Progress::default();
        let mut lines = p.feed("Step 1/3 : FROM local/busybox:1\n ---> 3d2e\nStep 2/3 : RUN ec");
        lines.extend(p.feed("ho hi\n ---> Using cache\n ---> abc\nStep 3/3 : RUN false\n"));
        lines.extend(p.feed("\u{1b}[31mboom\u{1b}[0m\nprogress 10%\rprogress 100%\n"));
        assert_eq!(p.steps, 3);
        assert_eq!(p.cached, 1);
        assert_eq!(p.step.as_deref(), Some("Step 3/3 : RUN false"));
        assert_eq!(Vec::from(p.last.clone()), ["boom", "progress 100%"]);
        assert_eq!(
            lines[2], "Step 2/3 : RUN echo hi",
            "a step split across chunks is one line"
        );
        assert_eq!(p.finish(), None);
    }

    #[test]
    fn plain_drops_control_sequences() {
        let cases = [
            ("plain", "plain"),
            ("\u{1b}[1;32mgreen\u{1b}[0m", "green"),
            ("a\rb", "b"),
            ("50%\r100%\r", "100%"),
            ("tab\tkept\u{7}", "tab\tkept"),
        ];
        for (input, want) in cases {
            assert_eq!(plain(input), want, "{input:?}");
        }
    }

    #[test]
    fn api_versions_parse() {
        assert_eq!(api_version("1.41"), Some((1, 41)));
        assert_eq!(api_version(" 1.39 "), Some((1, 39)));
        assert_eq!(api_version("2"), None);
        assert_eq!(api_version("x.1"), None);
        assert!(api_version("1.41").expect("valid") >= BUILDKIT_MIN_API);
        assert!(api_version("1.38").expect("valid") < BUILDKIT_MIN_API);
    }

    #[test]
    fn the_builder_follows_the_flag_the_environment_and_the_daemon() {
        use Builder::{Auto, Buildkit, Classic};
        // The flag, DOCKER_BUILDKIT, whether the daemon offers BuildKit; the builder and
        // whether a note is shown, or an error.
        type Case = (
            Builder,
            Option<&'static str>,
            bool,
            std::result::Result<(Builder, bool), ()>,
        );
        let yes = || Ok(());
        let no = || Err("no BuildKit here".to_owned());
        let cases: Vec<Case> = vec![
            (Auto, None, true, Ok((Buildkit, false))),
            (Auto, None, false, Ok((Classic, true))),
            (Auto, Some("0"), true, Ok((Classic, false))),
            (Auto, Some("false"), true, Ok((Classic, false))),
            (Auto, Some("1"), true, Ok((Buildkit, false))),
            (Auto, Some("1"), false, Err(())),
            (Auto, Some(""), false, Ok((Classic, true))),
            (Buildkit, None, true, Ok((Buildkit, false))),
            (Buildkit, Some("0"), true, Ok((Buildkit, false))),
            (Buildkit, None, false, Err(())),
            (Classic, Some("1"), true, Ok((Classic, false))),
            (Classic, None, false, Ok((Classic, false))),
        ];
        for (flag, env, daemon, want) in cases {
            let got = choose(flag, env, if daemon { yes() } else { no() })
                .map(|(builder, note)| (builder, note.is_some()))
                .map_err(|_| ());
            assert_eq!(got, want, "{flag:?} {env:?} {daemon}");
        }
    }
}
