//! The push through the Docker Engine: its stream, its errors in words, and the progress shown.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::PushImageOptionsBuilder;
use docker::Engine;
use docker::live::Live;
use futures_util::StreamExt;
use shared::error::chain;
use shared::exit::{self};
use shared::{Error, Result, info, verbose, warn};

use crate::target::Target;

/// The digest in a push stream's final status (`1.0: digest: sha256:... size: 527`).
#[must_use]
pub fn digest_in_status(status: &str) -> Option<String> {
    let (_, after) = status.split_once("digest: ")?;
    let digest = after.split_whitespace().next()?;
    let (algorithm, hex) = digest.split_once(':')?;
    let ok = !algorithm.is_empty()
        && hex.len() >= 32
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    ok.then(|| digest.to_owned())
}

/// Turns the daemon's error text for a failed push into an error with the right exit code:
/// denials fail fast, a missing repository says so, everything else is a transient fault.
#[must_use]
pub fn classify_push_error(text: &str, target: &Target, tag: &str) -> Error {
    let text = shared::cli::one_line(text);
    let lower = text.to_lowercase();
    let name = format!("{}:{tag}", target.name());
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    if has(&[
        "no basic auth credentials",
        "unauthorized",
        "authentication required",
    ]) {
        Error::no_perm(format!(
            "registry {} refused the push of {name}: {text}",
            target.registry
        ))
        .with_hint(format!(
            "the credentials are missing, wrong or expired: run ecr-login --registry {}",
            target.registry
        ))
    } else if has(&["denied", "forbidden"]) {
        Error::no_perm(format!(
            "registry {} denied the push of {name}: {text}",
            target.registry
        ))
        .with_hint("grant the build's role push access to the repository")
    } else if has(&["tag invalid", "immutable"]) {
        Error::new(
            exit::CONFLICT,
            format!(
                "registry {} refused to move tag {tag}: {text}",
                target.registry
            ),
        )
        .with_hint("the repository's tags are immutable: push under a new tag")
    } else if has(&[
        "name unknown",
        "name_unknown",
        "repository does not exist",
        "repositorynotfound",
    ]) {
        missing_repository(target, &text)
    } else if has(&[
        "does not exist locally",
        "no such image",
        "an image does not exist",
    ]) {
        Error::data(format!("the Docker Engine has no image {name}: {text}"))
            .with_hint("build and tag it first (img-build)")
    } else {
        Error::unavailable(format!(
            "registry {} did not take {name}: {text}",
            target.registry
        ))
        .with_hint("check that the registry is running and reachable, then run img-push again")
    }
}

pub(crate) fn missing_repository(target: &Target, said: &str) -> Error {
    let mut message = format!(
        "repository {} does not exist in registry {}",
        target.repository, target.registry
    );
    if !said.is_empty() {
        message = format!("{message}: the registry said {said}");
    }
    Error::data(message).with_hint("create it with ecr-repo")
}

/// What the push stream said, counted.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    pub(crate) digest: Option<String>,
    pub(crate) pushed: u64,
    pub(crate) existing: u64,
}

/// Per-layer progress on stderr: a live display of the layers' bars when stderr is a terminal
/// ([`Live`]), else a line every few seconds (a CI log should not hold a line per megabyte).
pub(crate) struct Progress {
    pub(crate) live: Option<Live>,
    /// Layers (by size) whose row is finished on the live display.
    pub(crate) shown_done: std::collections::BTreeSet<i64>,
    pub(crate) name: String,
    pub(crate) every: Duration,
    pub(crate) last: Option<Instant>,
    /// Bytes sent and total of each layer in flight, keyed by its size (the Engine API's push
    /// messages carry no layer id through bollard).
    pub(crate) layers: BTreeMap<i64, i64>,
    pub(crate) done: u64,
    pub(crate) existing: u64,
    pub(crate) last_retry: Option<i64>,
}

impl Progress {
    pub(crate) fn new(name: String) -> Self {
        let every = if shared::log::stderr_is_terminal() {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        Self {
            live: Live::start(&format!("pushing {name}")),
            shown_done: std::collections::BTreeSet::new(),
            name,
            every,
            last: None,
            layers: BTreeMap::new(),
            done: 0,
            existing: 0,
            last_retry: None,
        }
    }

    pub(crate) fn update(&mut self, status: &str, current: Option<i64>, total: Option<i64>) {
        match status {
            "Pushing" => {
                if let (Some(current), Some(total)) = (current, total) {
                    self.layers.insert(total, current.min(total));
                    if let Some(live) = &mut self.live {
                        let size = u64::try_from(total).unwrap_or_default();
                        live.bytes(
                            &total.to_string(),
                            &format!("layer of {}", shared::show::bytes(size)),
                            u64::try_from(current).unwrap_or_default(),
                            size,
                        );
                    }
                }
                if self.live.is_none() {
                    self.maybe_print();
                }
            }
            "Pushed" => {
                self.done += 1;
                verbose!("{}: layer {} pushed", self.name, self.done + self.existing);
                self.show_counts();
            }
            "Layer already exists" => {
                self.existing += 1;
                self.show_counts();
            }
            s if s.starts_with("Mounted from") => {
                self.existing += 1;
                self.show_counts();
            }
            s if s.starts_with("Retrying in ") && self.retry_announced(s) => {
                warn!(
                    "{}: a layer upload failed; the Docker daemon retries it in {} s",
                    self.name,
                    self.last_retry.unwrap_or_default()
                );
            }
            _ => {}
        }
    }

    /// On the live display: the counts in the header, and a finished row for each layer that
    /// has sent all its bytes.
    fn show_counts(&mut self) {
        let Some(live) = &mut self.live else {
            return;
        };
        live.title(&format!(
            "pushing {}: layers pushed {}, already there {}",
            self.name, self.done, self.existing
        ));
        for (total, sent) in &self.layers {
            if sent == total && self.shown_done.insert(*total) {
                let size = u64::try_from(*total).unwrap_or_default();
                live.done(
                    &total.to_string(),
                    &format!("layer of {}: pushed", shared::show::bytes(size)),
                );
            }
        }
    }

    /// Whether a `Retrying in N seconds` status starts a new countdown (the daemon counts down
    /// each second, and repeats the first number).
    pub(crate) fn retry_announced(&mut self, status: &str) -> bool {
        let seconds: Option<i64> = status
            .trim_start_matches("Retrying in ")
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok());
        let new = match (self.last_retry, seconds) {
            (Some(last), Some(n)) => n > last,
            _ => true,
        };
        self.last_retry = seconds;
        new
    }

    pub(crate) fn maybe_print(&mut self) {
        if self.last.is_some_and(|t| t.elapsed() < self.every) {
            return;
        }
        self.last = Some(Instant::now());
        let layers: Vec<String> = self
            .layers
            .iter()
            .filter(|(total, sent)| *sent < *total)
            .map(|(total, sent)| {
                format!(
                    "{} of {}",
                    shared::show::bytes(u64::try_from(*sent).unwrap_or_default()),
                    shared::show::bytes(u64::try_from(*total).unwrap_or_default())
                )
            })
            .collect();
        if !layers.is_empty() {
            info!(
                "{}: uploading {} ({} layers pushed, {} already there)",
                self.name,
                layers.join(", "),
                self.done,
                self.existing
            );
        }
    }
}

/// One push of one tag through the Engine, to the end of its stream.
pub(crate) async fn push_tag(
    docker: &Docker,
    target: &Target,
    tag: &str,
    deadline: Instant,
    progress: &mut Progress,
) -> Result<Stream> {
    let name = target.name();
    let options = PushImageOptionsBuilder::new().tag(tag).build();
    // The credentials go in the header `docker` carries (see Engine::with_registry_auth).
    let mut stream = docker.push_image(&name, Some(options), None);
    let mut out = Stream::default();
    let consume = async {
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    let status = info.status.unwrap_or_default();
                    let detail = info.progress_detail.unwrap_or_default();
                    progress.update(&status, detail.current, detail.total);
                    match status.as_str() {
                        "Pushed" => out.pushed += 1,
                        "Layer already exists" => out.existing += 1,
                        s if s.starts_with("Mounted from") => out.existing += 1,
                        s => {
                            if let Some(digest) = digest_in_status(s) {
                                out.digest = Some(digest);
                            }
                        }
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(classify_push_error(&error, target, tag));
                }
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code,
                    message,
                }) => {
                    return Err(if status_code == 404 {
                        Error::data(format!(
                            "the Docker Engine has no image {name}:{tag}: {}",
                            shared::cli::one_line(&message)
                        ))
                        .with_hint("build and tag it first (img-build)")
                    } else {
                        classify_push_error(&message, target, tag)
                    });
                }
                Err(e) => {
                    return Err(Error::unavailable(format!(
                        "the Docker Engine stopped answering during the push of {name}:{tag} ({})",
                        chain(&e)
                    )));
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout_at(deadline.into(), consume).await {
        Ok(Ok(())) => Ok(out),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::timeout(format!(
            "the push of {name}:{tag} did not finish before the deadline"
        ))
        .with_hint("raise --deadline, or check the network to the registry")),
    }
}

/// The digest of `name` from the image's repo digests, when the push stream did not say it.
pub(crate) async fn inspect_digest(engine: &Engine, name: &str, image_id: &str) -> Result<String> {
    let inspect = engine.client.inspect_image(image_id).await.map_err(|e| {
        Error::unavailable(format!(
            "the Docker Engine did not describe image {} after the push ({})",
            shared::show::digest(image_id),
            chain(&e)
        ))
    })?;
    inspect
        .repo_digests
        .unwrap_or_default()
        .iter()
        .find_map(|d| d.strip_prefix(&format!("{name}@")).map(str::to_owned))
        .ok_or_else(|| {
            Error::unavailable(format!(
                "the push of {name} reported no digest, and the image has none for it"
            ))
        })
}
