//! `--cache-from`: the cache images, pulled with the registry's credentials before the build.

use aws::AwsArgs;
use bollard::query_parameters::CreateImageOptionsBuilder;
use docker::Engine;
use futures_util::StreamExt;
use shared::error::chain;
use shared::{info, verbose, warn};

use crate::request::registry_of;
use crate::request::split_reference;

/// Pulls each cache image that is not local, with the credentials stored for its registry
/// (the same lookup img-push uses); a missing one is a warning, as in the seed's
/// `docker pull ... || true`.
pub(crate) async fn prepare_cache(engine: &Engine, aws: &AwsArgs, refs: &[String]) -> Vec<String> {
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
