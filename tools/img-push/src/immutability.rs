//! Which tags may move: ECR's tag mutability (with its exclusions) or `--immutable`, and each tag's current state.

use aws::Aws;
use registry::Registry;
use shared::Result;

use crate::Cli;
use crate::engine::missing_repository;
use crate::target::Target;

/// Where a tag stands before the push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagState {
    /// The registry has no such tag.
    New,
    /// The tag already names this image, at this manifest digest.
    Present(String),
    /// The tag names another image, at this manifest digest.
    Elsewhere(String),
}

/// The tags that name another image where tags are immutable, as `tag names <digest>`: each
/// one a conflict that stops a push or a retag before anything is stored.
pub(crate) fn conflicts(
    tags: &[String],
    states: &[TagState],
    immutable: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    tags.iter()
        .zip(states)
        .filter_map(|(tag, state)| match state {
            TagState::Elsewhere(digest) if immutable(tag) => Some(format!("{tag} names {digest}")),
            _ => None,
        })
        .collect()
}

/// Whether a tag is immutable in an ECR repository whose mutability is `mutability`
/// (`MUTABLE`, `IMMUTABLE`, `IMMUTABLE_WITH_EXCLUSION`, ...) with `exclusions` (wildcard filters
/// of tags that stay mutable).
#[must_use]
pub fn ecr_tag_immutable(mutability: &str, exclusions: &[String], tag: &str) -> bool {
    match mutability {
        "IMMUTABLE" => true,
        "IMMUTABLE_WITH_EXCLUSION" => !exclusions.iter().any(|f| shared::ecr::tag_matches(f, tag)),
        "MUTABLE_WITH_EXCLUSION" => exclusions.iter().any(|f| shared::ecr::tag_matches(f, tag)),
        _ => false,
    }
}

/// Whether each tag is immutable: all of them with --immutable; in ECR, as the repository's
/// setting says; elsewhere none.
pub(crate) async fn immutability(
    cli: &Cli,
    target: &Target,
) -> Result<impl Fn(&str) -> bool + use<>> {
    let forced = cli.immutable;
    let ecr = ecr_repository(cli, target).await?;
    Ok(move |tag: &str| {
        forced
            || ecr
                .as_ref()
                .is_some_and(|(m, exclusions)| ecr_tag_immutable(m, exclusions, tag))
    })
}

/// ECR's answer for the repository: whether tags are immutable, and its exclusion filters.
pub(crate) async fn ecr_repository(
    cli: &Cli,
    target: &Target,
) -> Result<Option<(String, Vec<String>)>> {
    let Some(host) = shared::ecr::parse_host(&target.registry) else {
        return Ok(None);
    };
    let mut args = cli.aws.clone();
    if args.region.is_none() {
        args.region = Some(host.region.clone());
    }
    let aws = Aws::load(&args).await?;
    let answer = aws
        .ecr()
        .describe_repositories()
        .registry_id(&host.account)
        .repository_names(&target.repository)
        .send()
        .await;
    match answer {
        Ok(output) => {
            let Some(repo) = output.repositories().first() else {
                return Err(missing_repository(target, ""));
            };
            let mutability = repo
                .image_tag_mutability()
                .map_or_else(|| "MUTABLE".to_owned(), |m| m.as_str().to_owned());
            let exclusions = repo
                .image_tag_mutability_exclusion_filters()
                .iter()
                .map(|f| f.filter().to_owned())
                .collect();
            Ok(Some((mutability, exclusions)))
        }
        Err(err)
            if err.as_service_error().is_some_and(
                aws_sdk_ecr::operation::describe_repositories::DescribeRepositoriesError::is_repository_not_found_exception,
            ) =>
        {
            Err(missing_repository(target, ""))
        }
        Err(err) => Err(aws.error(
            &format!("looking up repository {}", target.repository),
            &err,
        )),
    }
}

/// The state of each tag before the push.
pub(crate) async fn tag_states(
    registry: &Registry,
    target: &Target,
    image_id: &str,
    repo_digests: &[String],
) -> Result<Vec<TagState>> {
    let manifests = registry.manifests(&target.repository, &target.tags).await?;
    let mut states = Vec::new();
    for manifest in manifests {
        let state = match manifest {
            None => TagState::New,
            Some(manifest) => {
                let same = manifest.config_digest().as_deref() == Some(image_id)
                    || repo_digests.contains(&format!("{}@{}", target.name(), manifest.digest));
                if same {
                    TagState::Present(manifest.digest)
                } else {
                    TagState::Elsewhere(manifest.digest)
                }
            }
        };
        states.push(state);
    }
    Ok(states)
}
