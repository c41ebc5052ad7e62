//! One build, told in order: the request, the body, the stream, the record.

use std::collections::HashMap;
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
use crate::platforms::{Plan, plan};
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
use crate::stream::{Progress, Transferred, session_build, stream_build};

pub(crate) async fn build(
    cli: &Cli,
    daemon: &OnceCell<(Engine, Builder)>,
    mut doc: Document,
) -> Result<Document> {
    let started = Instant::now();
    check_registries(references(&doc, &cli.tags).iter().chain(&cli.cache_from))?;
    let ctx = open_context(cli)?;
    let platforms = cli.platforms();
    if cli.skip_if_present {
        let summary = ctx.hash()?;
        if let Some(found) = find_present(cli, &doc, &summary.hash, &platforms).await? {
            return Ok(skipped(&ctx, doc, &summary, &found, started));
        }
    }
    // Secrets and agents are found before anything is built: a missing one is a usage error.
    let env = |key: &str| std::env::var(key).ok();
    Secrets::load(&cli.secrets, env)?;
    Agents::load(&cli.ssh, env)?;
    let (engine, builder) = daemon.get_or_try_init(|| connect(cli)).await?;
    let (engine, builder) = (engine, *builder);
    refuse_session_flags(cli, builder)?;
    // Every platform is checked before the first is built.
    let plans = plan(engine, &platforms).await?;
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
    let once = Once {
        cli,
        engine,
        builder,
        ctx: &ctx,
        args: &args,
        labels: &labels,
        cache: &cache,
    };

    let mut record = object(&doc, "build");
    for stale in ["skipped", "skip_reason", "content_tag", "platforms"] {
        record.remove(stale);
    }
    let (steps, cached, summary, sent) = if plans.len() > 1 {
        build_platforms(&once, &plans, &split, &mut doc, &mut record, started).await?
    } else {
        build_one(&once, plans.first(), &refs, &split, &mut doc, started).await?
    };
    let seconds = started.elapsed().as_secs_f64();

    record.insert("builder".to_owned(), json!(builder.name()));
    record.insert("references".to_owned(), json!(refs));
    record.insert("steps".to_owned(), json!(steps));
    record.insert("cached_steps".to_owned(), json!(cached));
    insert_timing_and_context(&mut record, seconds, &ctx, &summary);
    if let Some(sent) = sent {
        insert_sent(&mut record, &sent, &summary);
    }
    if let Some(target) = &cli.target {
        record.insert("target".to_owned(), json!(target));
    }
    if cli.skip_if_present {
        record.insert("skipped".to_owned(), json!(false));
    }
    doc.set("build", Value::Object(record));
    Ok(doc)
}

/// Steps, cached steps, the context's summary and what was sent.
type Totals = (u64, u64, Summary, Option<Transferred>);

/// Several platforms: one image each, tagged locally as the first reference plus the
/// platform's suffix, and listed in the document's `platforms`.
async fn build_platforms(
    once: &Once<'_>,
    plans: &[Plan],
    split: &[(String, String)],
    doc: &mut Document,
    record: &mut Map<String, Value>,
    started: Instant,
) -> Result<Totals> {
    // One image per platform, each under the first reference plus its platform's suffix.
    let mut children = Vec::new();
    let mut records = Vec::new();
    let (mut steps, mut cached, mut first) = (0, 0, None);
    // Every local reference is made before the first build: a tag too long fails first.
    let locals: Vec<Option<String>> = plans
        .iter()
        .map(|plan| match split.first() {
            Some((repo, tag)) => Ok(Some(format!("{repo}:{}", plan.platform.child_tag(tag)?))),
            None => Ok(None),
        })
        .collect::<Result<_>>()?;
    for (plan, local) in plans.iter().zip(locals) {
        let child_started = Instant::now();
        let image = once.run(Some(plan), local.as_deref()).await?;
        steps += image.progress.steps;
        cached += image.progress.cached;
        let mut child = json!({
            "platform": plan.platform.name(),
            "os": plan.platform.os,
            "architecture": plan.platform.architecture,
            "image_id": image.image_id,
        });
        if let Some(variant) = &plan.platform.variant {
            child["variant"] = json!(variant);
        }
        if let Some(local) = &local {
            child["reference"] = json!(local);
        }
        children.push(child);
        records.push(json!({
            "platform": plan.platform.name(),
            "emulated": plan.emulated,
            "steps": image.progress.steps,
            "cached_steps": image.progress.cached,
            "duration_seconds": round3(child_started.elapsed().as_secs_f64()),
        }));
        first.get_or_insert((image.summary, image.sent));
    }
    let (summary, sent) = first.ok_or_else(|| Error::internal("no platform was built"))?;
    info!(
        "built {} platform images in {:.1} s: {}",
        plans.len(),
        started.elapsed().as_secs_f64(),
        children
            .iter()
            .map(|c| format!(
                "{} {}",
                c["platform"].as_str().unwrap_or_default(),
                shared::show::digest(c["image_id"].as_str().unwrap_or_default())
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // The document describes the set now: no one image is the image, and nothing is pushed.
    forget_images(doc);
    doc.set("platforms", children);
    record.insert("platforms".to_owned(), json!(records));
    Ok((steps, cached, summary, sent))
}

/// One image, for the daemon's platform or the one asked for, tagged with every reference.
async fn build_one(
    once: &Once<'_>,
    plan: Option<&Plan>,
    refs: &[String],
    split: &[(String, String)],
    doc: &mut Document,
    started: Instant,
) -> Result<Totals> {
    let image = once.run(plan, refs.first().map(String::as_str)).await?;
    for (reference, (repo, tag)) in refs.iter().zip(split).skip(1) {
        let options = TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
        once.engine
            .client
            .tag_image(&image.image_id, Some(options))
            .await
            .map_err(|e| {
                Error::data(format!(
                    "tagging {} as {reference}: {}",
                    image.image_id,
                    chain(&e)
                ))
                .with_hint("references must be registry/repository:tag")
            })?;
    }
    info!(
        "built {} in {:.1} s ({} of {} steps from cache); tagged {}",
        image.image_id,
        started.elapsed().as_secs_f64(),
        image.progress.cached,
        image.progress.steps,
        if refs.is_empty() {
            "nothing".to_owned()
        } else {
            refs.join(", ")
        }
    );
    // What an input document said of an earlier image describes it no longer.
    forget_images(doc);
    doc.set("image_id", image.image_id.as_str());
    if let Some(plan) = plan {
        doc.set("platform", plan.platform.name());
    }
    Ok((
        image.progress.steps,
        image.progress.cached,
        image.summary,
        image.sent,
    ))
}

/// Removes what a document says of images built or pushed before (a previous run's document
/// fed back in): img-push would otherwise push or retag those instead of this build's.
pub(crate) fn forget_images(doc: &mut Document) {
    for field in ["image_id", "digest", "digest_uri", "platform", "platforms"] {
        doc.remove(field);
    }
}

fn round3(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// What every platform's build shares.
struct Once<'a> {
    cli: &'a Cli,
    engine: &'a Engine,
    builder: Builder,
    ctx: &'a Context,
    args: &'a HashMap<String, String>,
    labels: &'a HashMap<String, String>,
    cache: &'a Vec<String>,
}

/// What one build gave.
struct Built {
    image_id: String,
    progress: Progress,
    summary: Summary,
    sent: Option<Transferred>,
}

impl Once<'_> {
    /// One build, for `plan`'s platform (the daemon's default when `None`), tagged `first`.
    async fn run(&self, plan: Option<&Plan>, first: Option<&str>) -> Result<Built> {
        let options = BuildRequest {
            cli: self.cli,
            builder: self.builder,
            dockerfile: self.ctx.dockerfile_name(),
            args: self.args,
            labels: self.labels,
            cache: self.cache,
            first,
            platform: plan.map(|p| &p.platform),
        }
        .options();
        let platform = match plan {
            Some(p) if p.emulated => format!(" for {} (emulated)", p.platform),
            Some(p) => format!(" for {}", p.platform),
            None => String::new(),
        };
        info!(
            "building {}{platform} (context {}, Dockerfile {}) with {}",
            first.unwrap_or("an untagged image"),
            self.ctx.root().display(),
            self.ctx.dockerfile_shown(),
            if self.builder == Builder::Buildkit {
                "BuildKit"
            } else {
                "the classic builder"
            }
        );
        let (image_id, progress, summary, sent) = if self.builder == Builder::Buildkit {
            // Loaded for each build: the session takes them.
            let env = |key: &str| std::env::var(key).ok();
            let secrets = Secrets::load(&self.cli.secrets, env)?;
            let agents = Agents::load(&self.cli.ssh, env)?;
            let ssh = (!self.cli.ssh.is_empty()).then_some(agents);
            session_build(self.engine, self.ctx, options, secrets, ssh, &self.cli.aws).await?
        } else {
            let (image_id, progress, summary) =
                stream_build(self.engine, self.ctx, options).await?;
            (image_id, progress, summary, None)
        };
        Ok(Built {
            image_id,
            progress,
            summary,
            sent,
        })
    }
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
