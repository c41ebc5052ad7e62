//! The build request: references, build arguments, labels, and the query the Engine takes.

use std::collections::HashMap;

use bollard::query_parameters::{BuildImageOptionsBuilder, BuilderVersion};
use serde_json::{Map, Value};
use shared::{Document, Error, Result, verbose};

use crate::Cli;
use crate::builder::Builder;

pub(crate) fn object(doc: &Document, name: &str) -> Map<String, Value> {
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

pub(crate) fn labels(cli: &Cli, doc: &Document) -> HashMap<String, String> {
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
pub(crate) fn registry_of(repository: &str) -> Option<&str> {
    let (first, _) = repository.split_once('/')?;
    shared::names::looks_like_host(first).then_some(first)
}

/// Checks the registry host of each reference that names one, before anything is looked up or
/// sent: credentials are found by that name.
pub(crate) fn check_registries<'a>(references: impl IntoIterator<Item = &'a String>) -> Result<()> {
    for reference in references {
        if let Some(host) = registry_of(reference) {
            shared::names::check_host(host)
                .map_err(|e| e.context(format!("image {}", shared::names::quote(reference))))?;
        }
    }
    Ok(())
}

/// The build argument that makes BuildKit write its cache metadata into the image, so the image
/// can serve as `--cache-from` for later builds.
pub const INLINE_CACHE_ARG: &str = "BUILDKIT_INLINE_CACHE";

/// What one build request is made of.
pub(crate) struct BuildRequest<'a> {
    pub(crate) cli: &'a Cli,
    pub(crate) builder: Builder,
    pub(crate) dockerfile: &'a str,
    pub(crate) args: &'a HashMap<String, String>,
    pub(crate) labels: &'a HashMap<String, String>,
    // bollard takes the cache images as a `&Vec`.
    #[allow(clippy::ptr_arg)]
    pub(crate) cache: &'a Vec<String>,
    pub(crate) first: Option<&'a str>,
    pub(crate) platform: Option<&'a shared::platform::Platform>,
}

impl BuildRequest<'_> {
    /// The `/build` query: BuildKit (version 2; the session is added when it is open) or the
    /// classic builder.
    pub(crate) fn options(&self) -> bollard::query_parameters::BuildImageOptions {
        let mut options = BuildImageOptionsBuilder::new()
            .dockerfile(self.dockerfile)
            .rm(true)
            .nocache(self.cli.no_cache)
            .buildargs(self.args)
            .labels(self.labels);
        options = if self.builder == Builder::Buildkit {
            options.version(BuilderVersion::BuilderBuildKit)
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
        if let Some(platform) = self.platform {
            options = options.platform(&platform.name());
        }
        if let Some(network) = &self.cli.network {
            options = options.networkmode(network);
        }
        options.build()
    }
}
