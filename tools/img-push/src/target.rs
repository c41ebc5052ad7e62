//! Where to push: the registry, repository and tags, from flags, references and the document.

use shared::{Document, Error, Result};

use crate::Cli;

/// Where to push: a registry, a repository and the tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The registry host (`127.0.0.1:5000`).
    pub registry: String,
    /// The repository (`team/my-app`).
    pub repository: String,
    /// The tags, in order, without repeats.
    pub tags: Vec<String>,
}

impl Target {
    /// `registry/repository`.
    #[must_use]
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// Splits `host[:port]/repo/name:tag` into registry, repository and tag (`latest` when none),
/// as [`shared::names::Reference`] reads it; a digest reference is refused.
pub fn parse_reference(reference: &str) -> Result<(String, String, String)> {
    let parsed = shared::names::Reference::parse(reference)?;
    if parsed.digest.is_some() {
        return Err(Error::data(format!(
            "reference '{reference}' cannot be pushed: a digest reference names an image, not a tag"
        ))
        .with_hint("give references as registry/repository:tag, e.g. 127.0.0.1:5000/my-app:1.0"));
    }
    let tag = parsed.tag.unwrap_or_else(|| "latest".to_owned());
    Ok((parsed.registry, parsed.repository, tag))
}

/// What to push, from the flags and the document: flags win; then the document's `references`;
/// then its `registry`, `repository` and `tags`.
pub fn target(cli: &Cli, doc: &Document) -> Result<Target> {
    let references = doc.strings("references");
    let mut registry = cli.registry.clone();
    let mut repository = cli.repository.clone();
    let mut tags: Vec<String> = cli.tags.clone();
    if tags.is_empty() && !references.is_empty() {
        let mut first: Option<(String, String)> = None;
        for reference in references {
            let (host, repo, tag) = parse_reference(reference)?;
            match &first {
                None => first = Some((host.clone(), repo.clone())),
                Some((first_host, first_repo))
                    if (first_host != &host || first_repo != &repo)
                        && cli.registry.is_none()
                        && cli.repository.is_none() =>
                {
                    return Err(Error::data(format!(
                        "the document's references name more than one repository ({reference} and {first_host}/{first_repo})"
                    ))
                    .with_hint(
                        "img-push pushes one repository per document: split the references",
                    ));
                }
                Some(_) => {}
            }
            registry.get_or_insert(host);
            repository.get_or_insert(repo);
            tags.push(tag);
        }
    }
    if tags.is_empty() {
        tags = doc.strings("tags").into_iter().map(str::to_owned).collect();
    }
    let registry = registry
        .or_else(|| doc.str("registry").map(str::to_owned))
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            Error::data("no registry to push to").with_hint(
                "pipe in a document from ecr-login/img-tag, or pass --registry and --repository",
            )
        })?;
    let repository = repository
        .or_else(|| doc.str("repository").map(str::to_owned))
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            Error::data("no repository to push to").with_hint(
                "set the document's repository (img-tag --repository), or pass --repository",
            )
        })?;
    shared::names::check_host(&registry)?;
    shared::names::check_repository(&repository)?;
    let mut seen = std::collections::HashSet::new();
    tags.retain(|t| seen.insert(t.clone()));
    if tags.is_empty() {
        return Err(
            Error::data(format!("no tags to push to {registry}/{repository}"))
                .with_hint("tag the image first (img-tag), or pass --tag"),
        );
    }
    for tag in &tags {
        shared::names::check_tag(tag)?;
    }
    Ok(Target {
        registry,
        repository,
        tags,
    })
}
