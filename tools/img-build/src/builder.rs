//! Which builder: BuildKit when the daemon has it (as the docker CLI chooses), else the classic one.

use clap::ValueEnum;
use docker::Engine;
use shared::error::chain;
use shared::{Error, Result, info};

use crate::Cli;

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
pub(crate) const BUILDKIT_MIN_API: (u32, u32) = (1, 39);

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
pub(crate) async fn daemon_buildkit(engine: &Engine) -> std::result::Result<(), String> {
    let version = engine.client.version().await.map_err(|e| {
        format!(
            "the Docker daemon at {} did not say its version ({})",
            engine.host,
            chain(&e)
        )
    })?;
    if !crate::session::http::session_capable(&engine.host) {
        return Err(format!(
            "the Docker daemon at {} is reached over TLS, and img-build's BuildKit session needs a unix socket or plain tcp",
            engine.host
        ));
    }
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

/// Connects to the Docker Engine and chooses the builder (the daemon's BuildKit, unless the
/// classic builder is asked for or BuildKit is not there).
pub(crate) async fn connect(cli: &Cli) -> Result<(Engine, Builder)> {
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
