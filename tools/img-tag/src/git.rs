//! Facts from the local git repository, read with libgit2: HEAD, its branch and tags, describe,
//! dirty state, commit time, the remote's default branch and URL. Shallow clones and detached
//! HEADs are ordinary here: CI checkouts are often both.

use std::path::Path;

use chrono::{DateTime, Utc};
use git2::{DescribeFormatOptions, DescribeOptions, Repository, StatusOptions};
use shared::{Error, Result};

use crate::facts::{GitFacts, without_credentials};

/// Reads the repository that contains `dir`; `None` when there is none (a CodePipeline source
/// artifact, an extracted tarball).
pub fn read(dir: &Path) -> Result<Option<GitFacts>> {
    let repo = match Repository::discover(dir) {
        Ok(repo) => repo,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::data(format!(
                "cannot read the git repository at {}: {}",
                dir.display(),
                e.message()
            ))
            .with_hint(
                "fix the repository, or pass the facts with --commit, --branch and --git-tag",
            ));
        }
    };
    let head = match repo.head() {
        Ok(head) => head,
        // A repository with no commits yet says nothing about a build.
        Err(e)
            if matches!(
                e.code(),
                git2::ErrorCode::UnbornBranch | git2::ErrorCode::NotFound
            ) =>
        {
            return Ok(None);
        }
        Err(e) => {
            return Err(Error::data(format!(
                "cannot read git HEAD in {}: {}",
                dir.display(),
                e.message()
            )));
        }
    };
    let commit = head.peel_to_commit().map_err(|e| {
        Error::data(format!(
            "git HEAD does not point at a commit: {}",
            e.message()
        ))
    })?;
    let id = commit.id();

    let branch = if head.is_branch() {
        head.shorthand().ok().map(str::to_owned)
    } else {
        None
    };

    let mut tags = Vec::new();
    if let Ok(names) = repo.tag_names(None) {
        for name in names.iter().filter_map(|n| n.ok().flatten()) {
            let points_here = repo
                .revparse_single(&format!("refs/tags/{name}"))
                .and_then(|object| object.peel_to_commit())
                .is_ok_and(|c| c.id() == id);
            if points_here {
                tags.push(name.to_owned());
            }
        }
    }

    let mut status = StatusOptions::new();
    status.include_untracked(false).include_ignored(false);
    let dirty = repo
        .statuses(Some(&mut status))
        .is_ok_and(|s| !s.is_empty());

    let describe = repo
        .describe(
            DescribeOptions::new()
                .describe_tags()
                .show_commit_oid_as_fallback(true),
        )
        .and_then(|d| d.format(Some(DescribeFormatOptions::new().dirty_suffix("-dirty"))))
        .ok();

    let commit_time = DateTime::<Utc>::from_timestamp(commit.time().seconds(), 0);

    let default_branch = repo
        .find_reference("refs/remotes/origin/HEAD")
        .ok()
        .and_then(|r| r.symbolic_target().ok().flatten().map(str::to_owned))
        .and_then(|target| {
            target
                .strip_prefix("refs/remotes/origin/")
                .map(str::to_owned)
        });

    let remote_url = repo
        .find_remote("origin")
        .ok()
        .and_then(|remote| remote.url().ok().map(without_credentials));

    Ok(Some(GitFacts {
        commit: id.to_string(),
        branch,
        tags,
        describe,
        dirty,
        commit_time,
        default_branch,
        remote_url,
        shallow: repo.is_shallow(),
    }))
}
