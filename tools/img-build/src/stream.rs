//! The Engine's build output: steps and progress for people, errors in words.

use bollard::models::{BuildInfoAux, ImageId};
use context::{Context, Summary};
use docker::Engine;
use docker::live::Live;
use futures_util::StreamExt;
use shared::error::chain;
use shared::{Error, Result, info, warn};

use crate::CHUNK;
use crate::LAST_LINES;
use crate::body::ChunkWriter;
use crate::buildkit::{self, LineKind};
use crate::session;

/// What the build output said, step by step.
#[derive(Debug, Default)]
pub struct Progress {
    pub(crate) partial: String,
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

    pub(crate) fn line(&mut self, line: &str) {
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

/// What the build's output said.
struct Followed {
    image_id: Option<String>,
    progress: Progress,
    trace: buildkit::Trace,
    failure: Option<Error>,
}

/// Follows the build's output: lines (or the live display) for people, the image id, and the
/// first failure.
async fn follow(
    engine: &Engine,
    mut stream: impl futures_util::Stream<
        Item = std::result::Result<bollard::models::BuildInfo, bollard::errors::Error>,
    > + Unpin,
) -> Followed {
    let mut progress = Progress::default();
    let mut trace = buildkit::Trace::default();
    let mut live = Live::start("building");
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
                        let lines = trace.feed_lines(status);
                        match &mut live {
                            Some(live) => show_live(live, &trace, &lines),
                            None => {
                                for line in lines {
                                    info!("{line}");
                                }
                            }
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
    drop(live);
    Followed {
        image_id,
        progress,
        trace,
        failure,
    }
}

impl Followed {
    /// The image id and the steps, once the output said the build succeeded.
    fn image(mut self) -> Result<(String, Progress)> {
        let Some(image_id) = self.image_id else {
            return Err(Error::internal(
                "the build ended without an image id from the daemon",
            ));
        };
        if self.trace.steps > 0 {
            self.progress.steps = self.trace.steps;
            self.progress.cached = self.trace.cached;
        }
        Ok((image_id, self.progress))
    }
}

/// Sends the context as the request's tar body (the classic builder) and follows the build's
/// output; returns the image id, what the output said, and what was sent.
pub(crate) async fn stream_build(
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

    let stream = engine
        .client
        .build_image(options, None, Some(bollard::body_try_stream(body)));
    let followed = follow(engine, stream).await;
    let sent = match writer.await {
        Ok(result) => result,
        Err(e) => Err(Error::internal(format!(
            "the build context writer stopped: {e}"
        ))),
    };
    // A context that could not be read is the cause of whatever the daemon said after it.
    let summary = match (sent, followed.failure) {
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
    let (image_id, progress) = Followed {
        failure: None,
        ..followed
    }
    .image()?;
    Ok((image_id, progress, summary))
}

/// What a session build sent of the context.
#[derive(Debug, Default)]
pub(crate) struct Transferred {
    /// Files whose content went to the daemon.
    pub(crate) files: u64,
    /// Their bytes.
    pub(crate) bytes: u64,
    /// How long the context's transfer took, in seconds.
    pub(crate) seconds: f64,
}

/// Builds with BuildKit through a session of our own (see [`crate::session`]): the context,
/// the Dockerfile, secrets and SSH agents are served to the daemon, which asks for what it
/// needs. Returns the image id, what the output said, the context's summary (hashed as the
/// build sees it, alongside the build) and what was sent.
pub(crate) async fn session_build(
    engine: &Engine,
    ctx: &Context,
    mut options: bollard::query_parameters::BuildImageOptions,
    secrets: session::secrets::Secrets,
    ssh: Option<session::ssh::Agents>,
    aws: &aws::AwsArgs,
) -> Result<(String, Progress, Summary, Option<Transferred>)> {
    // One walk: the hash records the entries, and a request for the whole context replays them.
    let listing = context::Listing::new(ctx.root());
    let hashing = {
        let (ctx, listing) = (ctx.clone(), listing.clone());
        tokio::task::spawn_blocking(move || ctx.hash_into(&listing))
    };
    let files = session::filesync::FileSync::new(ctx.clone(), listing)?;
    let providers = session::Providers {
        files: files.clone(),
        auth: session::auth::Auth { aws: aws.clone() },
        secrets,
        ssh,
    };
    let key = session::shared_key(ctx.root());
    let opened = session::Session::open(engine, &key, providers).await?;
    options.session = Some(opened.id.clone());
    options.remote = Some("client-session".to_owned());
    options.dockerfile = ctx.dockerfile_base_name();
    let query = serde_urlencoded::to_string(&options)
        .map_err(|e| Error::internal(format!("encoding the build request: {e}")))?;
    // As long as any other Engine request may take (bollard's timeout for the tar path).
    let result = tokio::time::timeout(docker::REQUEST_TIMEOUT, async {
        match session::http::build(engine, &query).await {
            Ok(stream) => Ok(follow(engine, Box::pin(stream)).await),
            Err(e) => Err(e),
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err(Error::timeout(format!(
            "the build at {} did not finish within {} hours",
            engine.host,
            docker::REQUEST_TIMEOUT.as_secs() / 3600
        )))
    });
    opened.close().await;
    let followed = result?;
    // A file this side could not send is the cause of whatever the daemon said after it.
    if let Some(own) = files.take_failure() {
        return Err(own);
    }
    if let Some(failure) = followed.failure {
        return Err(failure);
    }
    let summary = match hashing.await {
        Ok(result) => result?,
        Err(e) => {
            return Err(Error::internal(format!(
                "hashing the build context stopped: {e}"
            )));
        }
    };
    let (image_id, progress) = followed.image()?;
    let sent = Transferred {
        files: files.sent.files.load(std::sync::atomic::Ordering::Relaxed),
        bytes: files.sent.bytes.load(std::sync::atomic::Ordering::Relaxed),
        #[allow(clippy::cast_precision_loss)]
        seconds: files.sent.micros.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6,
    };
    Ok((image_id, progress, summary, Some(sent)))
}

/// BuildKit's lines on the live display: a row per vertex with its name, then its last output
/// line, then how it ended; the header counts the steps.
fn show_live(live: &mut Live, trace: &buildkit::Trace, lines: &[buildkit::Line]) {
    for line in lines {
        let key = format!("{:06}", line.vertex);
        let name = trace.name_of(line.vertex).unwrap_or_default();
        match line.kind {
            LineKind::Start => live.text(&key, &format!("#{} {}", line.vertex, line.text)),
            LineKind::Output => live.text(&key, &format!("#{} {name}: {}", line.vertex, line.text)),
            LineKind::End => {
                live.done(&key, &format!("#{} {name} {}", line.vertex, line.text));
                live.title(&format!(
                    "building: {} steps done, {} from the cache",
                    trace.steps, trace.cached
                ));
            }
        }
    }
}

pub(crate) fn step_failed(
    progress: &mut Progress,
    trace: &buildkit::Trace,
    message: &str,
) -> Error {
    let message = shared::cli::one_line(message);
    let hint = if message.contains("exec format error") {
        "the step ran a program for another platform and nothing emulates it: register QEMU with binfmt_misc (apt-get install qemu-user-static), or build that platform on a native host (examples/buildspecs/multiarch.yml)"
    } else {
        "fix the step or the sources it uses; its last output lines are above"
    };
    if let Some(failed) = trace.failure() {
        if !failed.last.is_empty() {
            warn!("last output of {}:", failed.step);
            for line in &failed.last {
                warn!("  | {line}");
            }
        }
        return Error::data(format!("{} failed: {message}", failed.step)).with_hint(hint);
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
    Error::data(format!("{step} failed: {message}")).with_hint(hint)
}

pub(crate) fn request_failed(engine: &Engine, err: &bollard::errors::Error) -> Error {
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
