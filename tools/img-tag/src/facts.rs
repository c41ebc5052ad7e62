//! The facts a tag is made of (commit, branch, git tag, pull request, build number, dates) and
//! where each came from: a flag, the CI's variables (CodeBuild, GitHub Actions, GitLab CI), or
//! the local git repository, in that order.
//!
//! CI variables are outside input: a pull-request number is taken only as digits, and a
//! GitHub event payload only for the number it holds.

use chrono::{DateTime, Utc};

/// A value and where it came from (`--commit`, `CODEBUILD_RESOLVED_SOURCE_VERSION`, `git HEAD`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fact<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub source: String,
}

fn fact<T>(value: T, source: &str) -> Fact<T> {
    Fact {
        value,
        source: source.to_owned(),
    }
}

/// Values given on the command line.
#[derive(Clone, Debug, Default)]
pub struct Given {
    /// `--commit`.
    pub commit: Option<String>,
    /// `--branch`.
    pub branch: Option<String>,
    /// `--git-tag`.
    pub tag: Option<String>,
    /// `--pr`.
    pub pr: Option<String>,
    /// `--build-number`.
    pub build_number: Option<String>,
    /// `--default-branch`.
    pub default_branch: Option<String>,
}

/// What the local git repository says.
#[derive(Clone, Debug, Default)]
pub struct GitFacts {
    /// HEAD's commit.
    pub commit: String,
    /// The branch HEAD is on, unless detached.
    pub branch: Option<String>,
    /// Tags that point at HEAD.
    pub tags: Vec<String>,
    /// `git describe --tags --dirty`-like text.
    pub describe: Option<String>,
    /// Whether tracked files differ from HEAD.
    pub dirty: bool,
    /// HEAD's committer time.
    pub commit_time: Option<DateTime<Utc>>,
    /// The remote's default branch (`origin/HEAD`).
    pub default_branch: Option<String>,
    /// The `origin` remote's URL, without credentials.
    pub remote_url: Option<String>,
    /// Whether the clone is shallow.
    pub shallow: bool,
}

/// Every resolved fact.
#[derive(Clone, Debug)]
pub struct Facts {
    /// The CI system the build runs in (`codebuild`, `github-actions`, `gitlab-ci`), if any.
    pub ci: Option<&'static str>,
    /// What started the build, as the CI names it (`pull_request_target`,
    /// `merge_request_event`, `PULL_REQUEST_UPDATED`), if it says.
    pub event: Option<Fact<String>>,
    /// Whether CodePipeline started the build (CodeBuild's `CODEBUILD_INITIATOR`).
    pub codepipeline: bool,
    /// The full commit id.
    pub commit: Option<Fact<String>>,
    /// The branch.
    pub branch: Option<Fact<String>>,
    /// The git tag being built.
    pub tag: Option<Fact<String>>,
    /// The pull-request number.
    pub pr: Option<Fact<String>>,
    /// The build number.
    pub build_number: Option<Fact<String>>,
    /// The build's unique id.
    pub build_id: Option<Fact<String>>,
    /// The batch build identifier (matrix builds).
    pub batch: Option<Fact<String>>,
    /// When the build started.
    pub build_time: Fact<DateTime<Utc>>,
    /// The commit's time.
    pub commit_time: Option<Fact<DateTime<Utc>>>,
    /// The repository's default branch.
    pub default_branch: Fact<String>,
    /// The source repository's URL.
    pub source_url: Option<Fact<String>>,
    /// `git describe` output.
    pub describe: Option<Fact<String>>,
    /// Whether the working tree has uncommitted changes.
    pub dirty: Option<Fact<bool>>,
    /// Whether the git clone is shallow.
    pub shallow: bool,
}

/// What kind of build this is, which decides what the tag rules do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A pull (or merge) request: its tag is `pr-N`, never a branch's or `latest`.
    PullRequest,
    /// A git tag pushed.
    Tag,
    /// A branch pushed.
    Branch,
    /// Anything else (a manual build of a commit).
    Other,
}

impl Kind {
    /// The kind, as `--explain` and the docs name it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Kind::PullRequest => "pull request",
            Kind::Tag => "tag",
            Kind::Branch => "branch",
            Kind::Other => "other",
        }
    }
}

impl Facts {
    /// The kind of build: a pull request whenever a PR number is known, else a tag, else a
    /// branch.
    #[must_use]
    pub fn kind(&self) -> Kind {
        if self.pr.is_some() {
            Kind::PullRequest
        } else if self.tag.is_some() {
            Kind::Tag
        } else if self.branch.is_some() {
            Kind::Branch
        } else {
            Kind::Other
        }
    }
}

/// Whether `text` is a pull-request number as CI systems give it: 1 to 10 digits.
#[must_use]
pub fn is_pr_number(text: &str) -> bool {
    (1..=10).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a GitHub Actions event is about a pull request, so that its number is in the event
/// payload (`pull_request`, `pull_request_target`, `pull_request_review`, ...).
#[must_use]
pub fn is_github_pr_event(event: &str) -> bool {
    event.starts_with("pull_request")
}

/// The pull-request number in a GitHub event payload: `pull_request.number`, else the
/// top-level `number`. Only a whole number counts.
#[must_use]
pub fn github_pr_number(payload: &serde_json::Value) -> Option<String> {
    payload["pull_request"]["number"]
        .as_u64()
        .or_else(|| payload["number"].as_u64())
        .map(|n| n.to_string())
        .filter(|n| is_pr_number(n))
}

/// Whether `text` looks like a git commit id (7 to 40 hex digits).
#[must_use]
pub fn is_commit_id(text: &str) -> bool {
    (7..=40).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Removes user information from a URL: `https://user:token@host/x` -> `https://host/x`.
#[must_use]
pub fn without_credentials(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        if path.is_empty() {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}/{path}")
        }
    } else {
        url.to_owned()
    }
}

/// One reference name's meaning: `refs/heads/x`, `refs/tags/x`, `refs/pull/N/...`.
enum Ref<'a> {
    Branch(&'a str),
    Tag(&'a str),
    Pull(&'a str),
}

fn parse_ref(reference: &str) -> Option<Ref<'_>> {
    if let Some(branch) = reference.strip_prefix("refs/heads/") {
        Some(Ref::Branch(branch))
    } else if let Some(tag) = reference.strip_prefix("refs/tags/") {
        Some(Ref::Tag(tag))
    } else {
        reference
            .strip_prefix("refs/pull/")
            .and_then(|rest| rest.split('/').next())
            .map(Ref::Pull)
    }
}

/// Resolves every fact from `given` flags, the environment (`env`) and, on GitHub Actions, the
/// event payload (`GITHUB_EVENT_PATH`, read by the caller), then `git`.
pub fn resolve(
    given: &Given,
    env: &dyn Fn(&str) -> Option<String>,
    event_payload: Option<&serde_json::Value>,
    git: Option<&GitFacts>,
    now: DateTime<Utc>,
) -> Facts {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let mut facts = Facts {
        ci: None,
        event: None,
        codepipeline: false,
        commit: None,
        branch: None,
        tag: None,
        pr: None,
        build_number: None,
        build_id: None,
        batch: None,
        build_time: fact(now, "the clock"),
        commit_time: None,
        default_branch: fact("main".to_owned(), "the default (main)"),
        source_url: None,
        describe: None,
        dirty: None,
        shallow: false,
    };

    // Explicit flags first.
    facts.commit = given.commit.clone().map(|v| fact(v, "--commit"));
    facts.branch = given.branch.clone().map(|v| fact(v, "--branch"));
    facts.tag = given.tag.clone().map(|v| fact(v, "--git-tag"));
    facts.pr = given.pr.clone().map(|v| fact(v, "--pr"));
    facts.build_number = given
        .build_number
        .clone()
        .map(|v| fact(v, "--build-number"));
    if let Some(branch) = &given.default_branch {
        facts.default_branch = fact(branch.clone(), "--default-branch");
    }

    if var("CODEBUILD_BUILD_ID").is_some() {
        codebuild(&mut facts, &var);
    } else if var("GITHUB_ACTIONS").as_deref() == Some("true") {
        github(&mut facts, &var, event_payload);
    } else if var("GITLAB_CI").as_deref() == Some("true") {
        gitlab(&mut facts, &var);
    }

    if let Some(git) = git {
        from_git(&mut facts, git);
    }
    // pull_request_target runs in the base branch with GITHUB_SHA its last commit, while the
    // workflow may check out the pull request's head: the checkout says what is built.
    if facts.ci == Some("github-actions") {
        set(&mut facts.commit, var("GITHUB_SHA"), "GITHUB_SHA");
    }
    facts
}

fn set<T>(slot: &mut Option<Fact<T>>, value: Option<T>, source: &str) {
    if slot.is_none()
        && let Some(value) = value
    {
        *slot = Some(fact(value, source));
    }
}

fn codebuild(facts: &mut Facts, var: &dyn Fn(&str) -> Option<String>) {
    facts.ci = Some("codebuild");
    set(
        &mut facts.event,
        var("CODEBUILD_WEBHOOK_EVENT"),
        "CODEBUILD_WEBHOOK_EVENT",
    );
    facts.codepipeline = var("CODEBUILD_INITIATOR").is_some_and(|i| i.starts_with("codepipeline/"));
    set(
        &mut facts.commit,
        var("CODEBUILD_RESOLVED_SOURCE_VERSION").filter(|v| is_commit_id(v)),
        "CODEBUILD_RESOLVED_SOURCE_VERSION",
    );
    if let Some(head) = var("CODEBUILD_WEBHOOK_HEAD_REF") {
        match parse_ref(&head) {
            Some(Ref::Branch(b)) => set(
                &mut facts.branch,
                Some(b.to_owned()),
                "CODEBUILD_WEBHOOK_HEAD_REF",
            ),
            Some(Ref::Tag(t)) => set(
                &mut facts.tag,
                Some(t.to_owned()),
                "CODEBUILD_WEBHOOK_HEAD_REF",
            ),
            _ => {}
        }
    }
    if let Some(trigger) = var("CODEBUILD_WEBHOOK_TRIGGER") {
        if let Some(b) = trigger.strip_prefix("branch/") {
            set(
                &mut facts.branch,
                Some(b.to_owned()),
                "CODEBUILD_WEBHOOK_TRIGGER",
            );
        } else if let Some(t) = trigger.strip_prefix("tag/") {
            set(
                &mut facts.tag,
                Some(t.to_owned()),
                "CODEBUILD_WEBHOOK_TRIGGER",
            );
        } else if let Some(n) = trigger.strip_prefix("pr/") {
            set(
                &mut facts.pr,
                Some(n.to_owned()).filter(|n| is_pr_number(n)),
                "CODEBUILD_WEBHOOK_TRIGGER",
            );
        }
    }
    // CODEBUILD_SOURCE_VERSION is a commit, a ref, a branch name or pr/N, or, for CodePipeline
    // and S3 sources, an S3 ARN that says nothing about the commit.
    if let Some(version) = var("CODEBUILD_SOURCE_VERSION").filter(|v| !v.starts_with("arn:")) {
        const SOURCE: &str = "CODEBUILD_SOURCE_VERSION";
        if let Some(n) = version.strip_prefix("pr/") {
            set(
                &mut facts.pr,
                Some(n.to_owned()).filter(|n| is_pr_number(n)),
                SOURCE,
            );
        } else if is_commit_id(&version) {
            set(&mut facts.commit, Some(version), SOURCE);
        } else {
            match parse_ref(&version) {
                Some(Ref::Branch(b)) => set(&mut facts.branch, Some(b.to_owned()), SOURCE),
                Some(Ref::Tag(t)) => set(&mut facts.tag, Some(t.to_owned()), SOURCE),
                Some(Ref::Pull(n)) => set(
                    &mut facts.pr,
                    Some(n.to_owned()).filter(|n| is_pr_number(n)),
                    SOURCE,
                ),
                None => set(&mut facts.branch, Some(version.clone()), SOURCE),
            }
        }
    }
    set(
        &mut facts.build_number,
        var("CODEBUILD_BUILD_NUMBER"),
        "CODEBUILD_BUILD_NUMBER",
    );
    set(
        &mut facts.build_id,
        var("CODEBUILD_BUILD_ID").map(|id| id.rsplit(':').next().unwrap_or(&id).to_owned()),
        "CODEBUILD_BUILD_ID",
    );
    set(
        &mut facts.batch,
        var("CODEBUILD_BATCH_BUILD_IDENTIFIER"),
        "CODEBUILD_BATCH_BUILD_IDENTIFIER",
    );
    if let Some(time) = var("CODEBUILD_START_TIME")
        .and_then(|ms| ms.trim().parse::<i64>().ok())
        .and_then(DateTime::<Utc>::from_timestamp_millis)
    {
        facts.build_time = fact(time, "CODEBUILD_START_TIME");
    }
    set(
        &mut facts.source_url,
        var("CODEBUILD_SOURCE_REPO_URL").map(|u| without_credentials(&u)),
        "CODEBUILD_SOURCE_REPO_URL",
    );
}

fn github(
    facts: &mut Facts,
    var: &dyn Fn(&str) -> Option<String>,
    payload: Option<&serde_json::Value>,
) {
    facts.ci = Some("github-actions");
    set(
        &mut facts.event,
        var("GITHUB_EVENT_NAME"),
        "GITHUB_EVENT_NAME",
    );
    let target = var("GITHUB_EVENT_NAME").as_deref() == Some("pull_request_target");
    if !target {
        set(&mut facts.commit, var("GITHUB_SHA"), "GITHUB_SHA");
    }
    set(&mut facts.branch, var("GITHUB_HEAD_REF"), "GITHUB_HEAD_REF");
    if let Some(reference) = var("GITHUB_REF") {
        match parse_ref(&reference) {
            // On pull_request_target GITHUB_REF is the base branch, not what is built.
            Some(Ref::Branch(b)) if !target => {
                set(&mut facts.branch, Some(b.to_owned()), "GITHUB_REF");
            }
            Some(Ref::Tag(t)) => set(&mut facts.tag, Some(t.to_owned()), "GITHUB_REF"),
            Some(Ref::Pull(n)) => set(
                &mut facts.pr,
                Some(n.to_owned()).filter(|n| is_pr_number(n)),
                "GITHUB_REF",
            ),
            _ => {}
        }
    }
    if var("GITHUB_EVENT_NAME").is_some_and(|e| is_github_pr_event(&e)) {
        set(
            &mut facts.pr,
            payload.and_then(github_pr_number),
            "GITHUB_EVENT_PATH",
        );
    }
    set(
        &mut facts.build_number,
        var("GITHUB_RUN_NUMBER"),
        "GITHUB_RUN_NUMBER",
    );
    set(&mut facts.build_id, var("GITHUB_RUN_ID"), "GITHUB_RUN_ID");
    if let (Some(server), Some(repository)) = (var("GITHUB_SERVER_URL"), var("GITHUB_REPOSITORY")) {
        set(
            &mut facts.source_url,
            Some(format!("{}/{repository}", server.trim_end_matches('/'))),
            "GITHUB_SERVER_URL/GITHUB_REPOSITORY",
        );
    }
}

fn gitlab(facts: &mut Facts, var: &dyn Fn(&str) -> Option<String>) {
    facts.ci = Some("gitlab-ci");
    set(
        &mut facts.event,
        var("CI_PIPELINE_SOURCE"),
        "CI_PIPELINE_SOURCE",
    );
    set(&mut facts.commit, var("CI_COMMIT_SHA"), "CI_COMMIT_SHA");
    set(
        &mut facts.branch,
        var("CI_COMMIT_BRANCH"),
        "CI_COMMIT_BRANCH",
    );
    set(
        &mut facts.branch,
        var("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"),
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",
    );
    set(&mut facts.tag, var("CI_COMMIT_TAG"), "CI_COMMIT_TAG");
    set(
        &mut facts.pr,
        var("CI_MERGE_REQUEST_IID").filter(|n| is_pr_number(n)),
        "CI_MERGE_REQUEST_IID",
    );
    set(
        &mut facts.build_number,
        var("CI_PIPELINE_IID"),
        "CI_PIPELINE_IID",
    );
    set(&mut facts.build_id, var("CI_PIPELINE_ID"), "CI_PIPELINE_ID");
    set(
        &mut facts.source_url,
        var("CI_PROJECT_URL"),
        "CI_PROJECT_URL",
    );
    if facts.default_branch.source.starts_with("the default")
        && let Some(branch) = var("CI_DEFAULT_BRANCH")
    {
        facts.default_branch = fact(branch, "CI_DEFAULT_BRANCH");
    }
    if let Some(time) =
        var("CI_COMMIT_TIMESTAMP").and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
    {
        facts.commit_time = Some(fact(time.with_timezone(&Utc), "CI_COMMIT_TIMESTAMP"));
    }
}

fn from_git(facts: &mut Facts, git: &GitFacts) {
    facts.shallow = git.shallow;
    // The repository's branch and tags describe the build only if it is at the commit built.
    let same_commit = facts
        .commit
        .as_ref()
        .is_none_or(|c| git.commit.starts_with(&c.value) || c.value.starts_with(&git.commit));
    // A ref named by a flag or the CI (a tag build, a pull request) is what is built: the
    // checkout's branch and tags do not add to it.
    let ref_known = facts.branch.is_some() || facts.tag.is_some() || facts.pr.is_some();
    set(&mut facts.commit, Some(git.commit.clone()), "git HEAD");
    if !same_commit {
        return;
    }
    set(
        &mut facts.commit_time,
        git.commit_time,
        "git HEAD's commit time",
    );
    set(&mut facts.describe, git.describe.clone(), "git describe");
    set(&mut facts.dirty, Some(git.dirty), "git status");
    set(
        &mut facts.source_url,
        git.remote_url.clone(),
        "git remote origin",
    );
    if facts.default_branch.source.starts_with("the default")
        && let Some(branch) = &git.default_branch
    {
        facts.default_branch = fact(branch.clone(), "git origin/HEAD");
    }
    if ref_known {
        return;
    }
    set(&mut facts.branch, git.branch.clone(), "git HEAD's branch");
    let best_tag = git
        .tags
        .iter()
        .filter_map(|t| crate::rules::Semver::parse(t).map(|v| (v, t)))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, t)| t.clone())
        .or_else(|| git.tags.first().cloned());
    set(&mut facts.tag, best_tag, "a git tag at HEAD");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_removed_from_urls() {
        assert_eq!(
            without_credentials("https://user:tok@github.com/org/repo.git"),
            "https://github.com/org/repo.git"
        );
        assert_eq!(
            without_credentials("https://github.com/org/repo"),
            "https://github.com/org/repo"
        );
        assert_eq!(
            without_credentials("git@github.com:org/repo.git"),
            "git@github.com:org/repo.git"
        );
    }

    #[test]
    fn commit_ids() {
        assert!(is_commit_id("a1b2c3d"));
        assert!(is_commit_id(&"f".repeat(40)));
        assert!(!is_commit_id("a1b2c3"));
        assert!(!is_commit_id("main"));
        assert!(!is_commit_id("arn:aws:s3:::bucket/key"));
    }
}
