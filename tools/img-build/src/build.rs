//! One build, told in order: the request, the body, the stream, the record.

use std::time::Instant;

use bollard::query_parameters::TagImageOptionsBuilder;
use context::{Context, Summary};
use docker::Engine;
use serde_json::{Map, Value, json};
use shared::error::chain;
use shared::{Document, Error, Result, info};
use tokio::sync::OnceCell;

use crate::Cli;
use crate::builder::Builder;
use crate::builder::connect;
use crate::cache::prepare_cache;
use crate::explain::open_context;
use crate::request::BuildRequest;
use crate::request::INLINE_CACHE_ARG;
use crate::request::build_args;
use crate::request::check_registries;
use crate::request::labels;
use crate::request::object;
use crate::request::references;
use crate::request::split_reference;
use crate::session::secrets::Secrets;
use crate::session::ssh::Agents;
use crate::skip::find_present;
use crate::skip::skipped;
use crate::stream::{Transferred, session_build, stream_build};

pub(crate) async fn build(
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
    // Secrets and agents are found before anything is built: a missing one is a usage error.
    let env = |key: &str| std::env::var(key).ok();
    let secrets = Secrets::load(&cli.secrets, env)?;
    let agents = Agents::load(&cli.ssh, env)?;
    let (engine, builder) = daemon.get_or_try_init(|| connect(cli)).await?;
    let (engine, builder) = (engine, *builder);
    refuse_session_flags(cli, builder)?;
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

    let options = BuildRequest {
        cli,
        builder,
        dockerfile: ctx.dockerfile_name(),
        args: &args,
        labels: &labels,
        cache: &cache,
        first: refs.first().map(String::as_str),
    }
    .options();

    info!(
        "building {} (context {}, Dockerfile {}) with {}",
        refs.first().map_or("an untagged image", String::as_str),
        ctx.root().display(),
        ctx.dockerfile_shown(),
        if builder == Builder::Buildkit {
            "BuildKit"
        } else {
            "the classic builder"
        }
    );
    let (image_id, progress, summary, sent) = if builder == Builder::Buildkit {
        let ssh = (!cli.ssh.is_empty()).then_some(agents);
        session_build(engine, &ctx, options, secrets, ssh, &cli.aws).await?
    } else {
        let (image_id, progress, summary) = stream_build(engine, &ctx, options).await?;
        (image_id, progress, summary, None)
    };

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
    if let Some(sent) = sent {
        insert_sent(&mut build, &sent, &summary);
    }
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

/// `--secret` and `--ssh` travel in BuildKit's session, which the classic builder lacks.
fn refuse_session_flags(cli: &Cli, builder: Builder) -> Result<()> {
    if builder == Builder::Classic && !(cli.secrets.is_empty() && cli.ssh.is_empty()) {
        return Err(Error::new(
            shared::exit::USAGE,
            "--secret and --ssh need BuildKit, and this build uses the classic builder",
        )
        .with_hint("drop --builder classic and DOCKER_BUILDKIT=0, or build without them"));
    }
    Ok(())
}

/// `build.context.sent`: through the session, the daemon asks only for the files it lacks.
fn insert_sent(build: &mut Map<String, Value>, sent: &Transferred, summary: &Summary) {
    if let Some(Value::Object(context)) = build.get_mut("context") {
        context.insert(
            "sent".to_owned(),
            json!({
                "files": sent.files,
                "bytes": sent.bytes,
                "seconds": (sent.seconds * 1000.0).round() / 1000.0,
            }),
        );
    }
    info!(
        "the daemon asked for {} of {} files ({} of {}) in {:.2} s",
        sent.files,
        summary.files,
        shared::show::bytes(sent.bytes),
        shared::show::bytes(summary.bytes),
        sent.seconds
    );
}

/// The `build` fields a build and a skipped build share: how long it took and what the context
/// was.
pub(crate) fn insert_timing_and_context(
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
