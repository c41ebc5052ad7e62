//! `img-tag` over real git repositories made here (branches, annotated and lightweight tags,
//! long and non-ASCII names, detached HEAD, shallow clones, no `.git`) crossed with the CI
//! environments it reads (CodeBuild webhooks, CodePipeline, GitHub Actions, GitLab CI, none).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{Outcome, tool};

/// A git repository in a temporary directory, driven with the git CLI.
struct Repo {
    dir: tempfile::TempDir,
}

/// The fixed time of every commit: 2026-02-12T10:00:00Z.
const COMMIT_TIME: &str = "2026-02-12T10:00:00Z";

impl Repo {
    fn new() -> Self {
        let repo = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.write("Dockerfile", "FROM scratch\nCOPY app /app\n");
        repo.write("app", "v1\n");
        repo.commit("first");
        repo
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self, args: &[&str]) -> String {
        git_in(self.path(), args)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path().join(name), text).unwrap();
    }

    fn commit(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
    }

    fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_AUTHOR_DATE", COMMIT_TIME)
        .env("GIT_COMMITTER_DATE", COMMIT_TIME)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn img_tag(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Outcome {
    let mut run = tool("img-tag")
        .args(["--repository", "my-app", "--context"])
        .args([dir]);
    for (name, value) in env {
        run = run.env(name, value);
    }
    run.args(args).run()
}

fn tags(doc: &Value) -> Vec<String> {
    doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

fn short(commit: &str) -> String {
    commit[..7].to_owned()
}

#[test]
fn a_local_main_branch_gets_the_short_commit_and_latest() {
    let repo = Repo::new();
    let head = repo.head();
    let doc = img_tag(repo.path(), &[], &[]).success().document();
    assert_eq!(tags(&doc), [short(&head), "latest".into()]);
    assert_eq!(
        doc["references"],
        json!([format!("my-app:{}", short(&head)), "my-app:latest"])
    );
    let labels = &doc["labels"];
    assert_eq!(labels["org.opencontainers.image.revision"], head.as_str());
    assert_eq!(labels["org.opencontainers.image.created"], COMMIT_TIME);
    assert_eq!(labels["org.opencontainers.image.title"], "my-app");
    assert_eq!(
        labels["org.opencontainers.image.version"],
        short(&head).as_str()
    );
    let source = &doc["source"];
    assert_eq!(source["provenance"]["commit"], "git HEAD");
    assert_eq!(source["provenance"]["branch"], "git HEAD's branch");
    assert_eq!(source["provenance"]["created"], "the commit time");
    assert_eq!(source["is_default_branch"], true);
    assert_eq!(source["dirty"], false);
    assert_eq!(source["ci"], Value::Null);
}

#[test]
fn branch_names_become_valid_distinct_tags() {
    let repo = Repo::new();
    let head = repo.head();
    repo.git(&["checkout", "-q", "-b", "feature/Login-über"]);
    let doc = img_tag(
        repo.path(),
        &[],
        &["--tag", "sha", "--tag", "branch", "--tag", "latest"],
    )
    .success()
    .document();
    assert_eq!(
        tags(&doc),
        [short(&head), "feature-Login-ber".into()],
        "no latest off main"
    );

    let long_a = format!("feature/{}-a", "x".repeat(150));
    let long_b = format!("feature/{}-b", "x".repeat(150));
    let mut made = Vec::new();
    for branch in [&long_a, &long_b] {
        repo.git(&["checkout", "-q", "-b", branch]);
        let doc = img_tag(repo.path(), &[], &["--tag", "branch"])
            .success()
            .document();
        let tag = tags(&doc).remove(0);
        assert_eq!(tag.len(), 128, "{tag}");
        made.push(tag);
    }
    assert_ne!(made[0], made[1], "two long branch names must stay distinct");
}

#[test]
fn an_annotated_version_tag_on_a_detached_head() {
    let repo = Repo::new();
    let head = repo.head();
    repo.git(&["tag", "-a", "v1.2.3", "-m", "release"]);
    repo.git(&["checkout", "-q", "--detach", "v1.2.3"]);
    let doc = img_tag(repo.path(), &[], &[]).success().document();
    assert_eq!(
        tags(&doc),
        [short(&head), "1.2.3".into(), "1.2".into(), "1".into()]
    );
    assert_eq!(doc["source"]["version"], "1.2.3");
    assert_eq!(doc["source"]["provenance"]["tag"], "a git tag at HEAD");
    assert_eq!(doc["labels"]["org.opencontainers.image.version"], "1.2.3");
    assert!(
        doc["source"].get("branch").is_none(),
        "a detached HEAD has no branch"
    );

    let doc = img_tag(repo.path(), &[], &["--latest", "release"])
        .success()
        .document();
    assert!(tags(&doc).contains(&"latest".to_owned()));
}

#[test]
fn a_prerelease_gets_only_its_full_version() {
    let repo = Repo::new();
    let head = repo.head();
    repo.git(&["tag", "v2.0.0-rc.1"]);
    let doc = img_tag(repo.path(), &[], &["--latest", "release"])
        .success()
        .document();
    // On main, but latest follows the release policy: a prerelease never moves it.
    assert_eq!(tags(&doc), [short(&head), "2.0.0-rc.1".into()]);
    assert_eq!(doc["source"]["is_prerelease"], true);
}

#[test]
fn a_shallow_clone_and_a_dirty_tree() {
    let origin = Repo::new();
    origin.write("app", "v2\n");
    origin.commit("second");
    let clones = tempfile::tempdir().unwrap();
    let url = format!("file://{}", origin.path().display());
    git_in(
        clones.path(),
        &["clone", "-q", "--depth", "1", &url, "clone"],
    );
    let clone: PathBuf = clones.path().join("clone");
    let doc = img_tag(&clone, &[], &[]).success().document();
    assert_eq!(tags(&doc), [short(&origin.head()), "latest".into()]);
    assert_eq!(doc["source"]["shallow"], true);
    assert_eq!(doc["source"]["default_branch"], "main");
    assert_eq!(doc["source"]["url"], url.as_str());

    std::fs::write(clone.join("app"), "changed\n").unwrap();
    let doc = img_tag(&clone, &[], &[]).success().document();
    assert_eq!(doc["source"]["dirty"], true);
}

#[test]
fn no_git_and_no_ci_is_an_error_not_latest() {
    let dir = tempfile::tempdir().unwrap();
    img_tag(dir.path(), &[], &[]).fails(78, &["no commit is known", "--commit"]);
    let doc = img_tag(
        dir.path(),
        &[],
        &[
            "--commit",
            "0123456789abcdef0123456789abcdef01234567",
            "--branch",
            "main",
        ],
    )
    .success()
    .document();
    assert_eq!(tags(&doc), ["0123456", "latest"]);
    assert_eq!(doc["source"]["provenance"]["commit"], "--commit");
}

#[test]
fn codepipeline_without_git_says_which_variable_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        (
            "CODEBUILD_BUILD_ID",
            "my-project:8f0b6f8e-1111-2222-3333-444455556666",
        ),
        ("CODEBUILD_INITIATOR", "codepipeline/my-pipeline"),
        (
            "CODEBUILD_SOURCE_VERSION",
            "arn:aws:s3:::codepipeline-us-east-1-123/my-pipeline/Source/abc.zip",
        ),
        (
            "CODEBUILD_RESOLVED_SOURCE_VERSION",
            "arn:aws:s3:::codepipeline-us-east-1-123/my-pipeline/Source/abc.zip",
        ),
        ("CODEBUILD_BUILD_NUMBER", "12"),
    ];
    img_tag(dir.path(), &env, &[]).fails(78, &["CodePipeline", "SourceVariables.CommitId"]);
    let doc = img_tag(
        dir.path(),
        &env,
        &["--commit", "abcdef1234567890abcdef1234567890abcdef12"],
    )
    .success()
    .document();
    assert_eq!(tags(&doc), ["abcdef1"], "no branch is known: no latest");
    assert_eq!(
        doc["source"]["build_id"],
        "8f0b6f8e-1111-2222-3333-444455556666"
    );
    assert_eq!(doc["source"]["ci"], "codebuild");
}

/// CodeBuild's variables for a webhook build of `head_ref` at `commit`.
fn codebuild<'a>(commit: &'a str, head_ref: &'a str, trigger: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (
            "CODEBUILD_BUILD_ID",
            "my-project:0b1c2d3e-aaaa-bbbb-cccc-ddddeeeeffff",
        ),
        ("CODEBUILD_RESOLVED_SOURCE_VERSION", commit),
        ("CODEBUILD_SOURCE_VERSION", commit),
        ("CODEBUILD_WEBHOOK_HEAD_REF", head_ref),
        ("CODEBUILD_WEBHOOK_TRIGGER", trigger),
        ("CODEBUILD_BUILD_NUMBER", "42"),
        // 2026-02-12T09:30:00Z in milliseconds.
        ("CODEBUILD_START_TIME", "1770888600000"),
        (
            "CODEBUILD_SOURCE_REPO_URL",
            "https://git-codecommit.us-east-1.amazonaws.com/v1/repos/my-app",
        ),
    ]
}

#[test]
fn codebuild_push_webhook_gives_the_seed_format() {
    let repo = Repo::new();
    let head = repo.head();
    // CodeBuild checks out a detached HEAD: the branch comes from the webhook variables.
    repo.git(&["checkout", "-q", "--detach"]);
    let env = codebuild(&head, "refs/heads/main", "branch/main");
    let doc = img_tag(
        repo.path(),
        &env,
        &[
            "--tag",
            "sha",
            "--tag",
            "{branch}-{date}-{build}-{sha}",
            "--tag",
            "latest",
        ],
    )
    .success()
    .document();
    assert_eq!(
        tags(&doc),
        [
            short(&head),
            format!("main-20260212-42-{}", short(&head)),
            "latest".into()
        ]
    );
    let provenance = &doc["source"]["provenance"];
    assert_eq!(provenance["commit"], "CODEBUILD_RESOLVED_SOURCE_VERSION");
    assert_eq!(provenance["branch"], "CODEBUILD_WEBHOOK_HEAD_REF");
    assert_eq!(provenance["build_number"], "CODEBUILD_BUILD_NUMBER");
    assert_eq!(provenance["build_time"], "CODEBUILD_START_TIME");
    assert_eq!(
        doc["labels"]["org.opencontainers.image.source"],
        "https://git-codecommit.us-east-1.amazonaws.com/v1/repos/my-app"
    );
}

#[test]
fn codebuild_pull_request_webhook_gets_pr_n_and_no_latest() {
    let repo = Repo::new();
    let head = repo.head();
    let env = codebuild(&head, "refs/heads/feature/x", "pr/17");
    let doc = img_tag(repo.path(), &env, &[]).success().document();
    assert_eq!(tags(&doc), [short(&head), "pr-17".into()]);
    assert_eq!(
        doc["source"]["provenance"]["pr"],
        "CODEBUILD_WEBHOOK_TRIGGER"
    );
    assert_eq!(doc["source"]["branch"], "feature/x");
}

#[test]
fn codebuild_tag_push_gets_versions_and_refuses_branch_templates() {
    let repo = Repo::new();
    let head = repo.head();
    let env = codebuild(&head, "refs/tags/v3.1.0", "tag/v3.1.0");
    let doc = img_tag(repo.path(), &env, &[]).success().document();
    assert_eq!(
        tags(&doc),
        [short(&head), "3.1.0".into(), "3.1".into(), "3".into()]
    );
    img_tag(repo.path(), &env, &["--tag", "{branch}-{sha}"]).fails(
        65,
        &[
            "tag rule '{branch}-{sha}' cannot be applied",
            "tag builds have none",
        ],
    );
}

#[test]
fn github_actions_pull_request() {
    let repo = Repo::new();
    let head = repo.head();
    let env = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_SHA", head.as_str()),
        ("GITHUB_REF", "refs/pull/5/merge"),
        ("GITHUB_HEAD_REF", "feature/y"),
        ("GITHUB_RUN_NUMBER", "7"),
        ("GITHUB_RUN_ID", "99887766"),
        ("GITHUB_SERVER_URL", "https://github.com"),
        ("GITHUB_REPOSITORY", "org/my-app"),
    ];
    let doc = img_tag(
        repo.path(),
        &env,
        &["--tag", "sha", "--tag", "pr", "--tag", "{branch}-{build}"],
    )
    .success()
    .document();
    assert_eq!(
        tags(&doc),
        [short(&head), "pr-5".into(), "feature-y-7".into()]
    );
    assert_eq!(
        doc["labels"]["org.opencontainers.image.source"],
        "https://github.com/org/my-app"
    );
    assert_eq!(doc["source"]["ci"], "github-actions");
}

#[test]
fn gitlab_ci_with_its_own_default_branch() {
    let repo = Repo::new();
    let head = repo.head();
    let env = [
        ("GITLAB_CI", "true"),
        ("CI_COMMIT_SHA", head.as_str()),
        ("CI_COMMIT_BRANCH", "trunk"),
        ("CI_DEFAULT_BRANCH", "trunk"),
        ("CI_PIPELINE_IID", "9"),
        ("CI_PROJECT_URL", "https://gitlab.example.com/org/my-app"),
    ];
    let doc = img_tag(repo.path(), &env, &[]).success().document();
    assert_eq!(tags(&doc), [short(&head), "latest".into()]);
    assert_eq!(
        doc["source"]["provenance"]["default_branch"],
        "CI_DEFAULT_BRANCH"
    );
    assert_eq!(doc["source"]["build_number"], "9");
}

#[test]
fn batch_builds_prefixes_and_source_date_epoch() {
    let repo = Repo::new();
    let head = repo.head();
    let mut env = codebuild(&head, "refs/heads/main", "branch/main");
    env.push(("CODEBUILD_BATCH_BUILD_IDENTIFIER", "build_arm64"));
    env.push(("SOURCE_DATE_EPOCH", "1700000000"));
    let doc = img_tag(
        repo.path(),
        &env,
        &[
            "--tag",
            "{sha}-{batch}",
            "--tag",
            "latest",
            "--prefix",
            "sha-",
        ],
    )
    .success()
    .document();
    assert_eq!(
        tags(&doc),
        [format!("sha-{}-build_arm64", short(&head)), "latest".into()]
    );
    assert_eq!(
        doc["labels"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(doc["source"]["provenance"]["created"], "SOURCE_DATE_EPOCH");
}

#[test]
fn the_content_tag_follows_the_context_as_img_build_sends_it() {
    let repo = Repo::new();
    repo.write(".dockerignore", "notes.txt\n");
    repo.write("notes.txt", "one\n");
    repo.commit("ignore notes");
    let content = |repo: &Repo| {
        let doc = img_tag(repo.path(), &[], &["--tag", "content"])
            .success()
            .document();
        tags(&doc).remove(0)
    };
    let first = content(&repo);
    assert!(first.starts_with("ctx-") && first.len() == 16, "{first}");
    assert_eq!(content(&repo), first, "same tree, same tag");
    repo.write("notes.txt", "two\n");
    assert_eq!(content(&repo), first, "an ignored file does not count");
    repo.write("app", "v2\n");
    assert_ne!(content(&repo), first, "a sent file does");
}

#[test]
fn input_fields_pass_through_and_explain_tells_why() {
    let repo = Repo::new();
    let head = repo.head();
    let out = tool("img-tag")
        .args(["--context"])
        .args([repo.path()])
        .args(["--explain"])
        .stdin(r#"{"registry":"127.0.0.1:5000","repository":"team/api","labels":{"team":"a"},"keep":[1]}"#)
        .run();
    let doc = out.success().document();
    assert_eq!(
        doc["references"][0],
        format!("127.0.0.1:5000/team/api:{}", short(&head)).as_str()
    );
    assert_eq!(doc["repository_uri"], "127.0.0.1:5000/team/api");
    assert_eq!(doc["labels"]["team"], "a");
    assert_eq!(doc["labels"]["org.opencontainers.image.title"], "api");
    assert_eq!(doc["keep"], json!([1]));
    assert!(
        out.stderr
            .contains("rule pr: skipped (not a pull-request build)"),
        "{out:?}"
    );
    assert!(out.stderr.contains("fact commit = "), "{out:?}");

    tool("img-tag")
        .args(["--context"])
        .args([repo.path()])
        .args(["--repository", "Bad_Name"])
        .run()
        .fails(65, &["repository name 'Bad_Name' is not valid"]);
    tool("img-tag")
        .args(["--repository", "x1", "--tag", "{nope}"])
        .run()
        .code(2);
}

/// A GitHub Actions environment for `event` on `reference`, with the event payload written to
/// a file as the runner does (`GITHUB_EVENT_PATH`).
struct GitHub {
    payload: tempfile::NamedTempFile,
    vars: Vec<(String, String)>,
}

impl GitHub {
    fn new(event: &str, reference: &str, sha: &str, payload: &Value) -> Self {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), payload.to_string()).unwrap();
        let mut vars = vec![
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_EVENT_NAME", event),
            ("GITHUB_REF", reference),
            ("GITHUB_SHA", sha),
            ("GITHUB_RUN_NUMBER", "7"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "org/my-app"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect::<Vec<_>>();
        vars.push((
            "GITHUB_EVENT_PATH".into(),
            file.path().to_string_lossy().into_owned(),
        ));
        Self {
            payload: file,
            vars,
        }
    }

    fn with(mut self, name: &str, value: &str) -> Self {
        self.vars.retain(|(k, _)| k != name);
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

#[test]
fn a_pull_request_gets_pr_n_and_never_its_head_branch_or_latest() {
    let repo = Repo::new();
    let head = repo.head();
    // The head branch of a fork is called main, as the default branch is.
    let gh = GitHub::new(
        "pull_request",
        "refs/pull/12/merge",
        &head,
        &json!({"number": 12, "pull_request": {"number": 12, "head": {"ref": "main"}}}),
    )
    .with("GITHUB_HEAD_REF", "main")
    .with("GITHUB_BASE_REF", "main");
    let rules = [
        "--tag", "sha", "--tag", "branch", "--tag", "pr", "--tag", "latest",
    ];
    let out = img_tag(
        repo.path(),
        &gh.env(),
        &[&rules[..], &["--explain"]].concat(),
    );
    let doc = out.success().document();
    assert_eq!(tags(&doc), [short(&head), "pr-12".into()], "{out:?}");
    assert_eq!(doc["source"]["kind"], "pull request");
    assert_eq!(doc["source"]["is_default_branch"], false);
    for line in [
        "kind of build: pull request (event pull_request from GITHUB_EVENT_NAME)",
        "rule branch: skipped (a pull-request build: its tag is pr-12",
        "rule latest: skipped (a pull-request build never moves latest)",
    ] {
        assert!(out.stderr.contains(line), "missing {line:?}{out:?}");
    }
    // The default rules on the same build.
    let doc = img_tag(repo.path(), &gh.env(), &[]).success().document();
    assert_eq!(tags(&doc), [short(&head), "pr-12".into()]);
    // A branch push of the same commit still gets its branch and latest.
    let push = GitHub::new(
        "push",
        "refs/heads/main",
        &head,
        &json!({"ref": "refs/heads/main"}),
    );
    let doc = img_tag(repo.path(), &push.env(), &rules)
        .success()
        .document();
    assert_eq!(tags(&doc), [short(&head), "main".into(), "latest".into()]);
    assert_eq!(doc["source"]["kind"], "branch");
}

#[test]
fn pull_request_target_takes_its_number_from_the_event_payload() {
    let repo = Repo::new();
    let head = repo.head();
    // pull_request_target runs in the base branch: GITHUB_REF is main and GITHUB_SHA its last
    // commit, while the workflow checked out the pull request's head.
    let base = "b".repeat(40);
    let gh = GitHub::new(
        "pull_request_target",
        "refs/heads/main",
        &base,
        &json!({"number": 34, "pull_request": {"number": 34, "head": {"ref": "feature/z"}}}),
    )
    .with("GITHUB_HEAD_REF", "feature/z")
    .with("GITHUB_BASE_REF", "main");
    let out = img_tag(
        repo.path(),
        &gh.env(),
        &[
            "--tag", "sha", "--tag", "branch", "--tag", "pr", "--tag", "latest",
        ],
    );
    let doc = out.success().document();
    assert_eq!(tags(&doc), [short(&head), "pr-34".into()], "{out:?}");
    assert_eq!(doc["source"]["provenance"]["pr"], "GITHUB_EVENT_PATH");
    assert_eq!(
        doc["source"]["commit"],
        head.as_str(),
        "the checkout is what is built"
    );
    assert_eq!(doc["source"]["provenance"]["commit"], "git HEAD");

    // A payload whose number is not a number gives no PR, and so no tags at all.
    std::fs::write(
        gh.payload.path(),
        json!({"number": "34; echo pwned", "pull_request": {"number": "34"}}).to_string(),
    )
    .unwrap();
    img_tag(repo.path(), &gh.env(), &[]).fails(
        65,
        &[
            "pull_request_target",
            "gives its pull-request number",
            "--pr N",
        ],
    );
    // A payload path that is a FIFO is refused, not waited on.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("event.json");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let env = gh.with("GITHUB_EVENT_PATH", &fifo.to_string_lossy());
    let mut run = tool("img-tag")
        .args(["--repository", "my-app", "--context"])
        .args([repo.path()])
        .kill_after(std::time::Duration::from_secs(20));
    for (name, value) in env.env() {
        run = run.env(name, value);
    }
    run.run()
        .fails(66, &["GitHub event payload", "not a regular file"]);
}

#[test]
fn a_prerelease_template_of_version_parts_gives_the_full_version() {
    let repo = Repo::new();
    let head = repo.head();
    let rules = [
        "--tag",
        "{major}.{minor}",
        "--tag",
        "v{major}",
        "--tag",
        "semver",
        "--tag",
        "latest",
        "--latest",
        "release",
    ];
    let beta = GitHub::new(
        "push",
        "refs/tags/v2.0.8-beta.67",
        &head,
        &json!({"ref": "refs/tags/v2.0.8-beta.67"}),
    );
    let out = img_tag(
        repo.path(),
        &beta.env(),
        &[&rules[..], &["--explain"]].concat(),
    );
    let doc = out.success().document();
    assert_eq!(
        tags(&doc),
        ["2.0.8-beta.67", "v2.0.8-beta.67"],
        "a beta never moves 2.0, v2 or latest{out:?}"
    );
    assert!(
        out.stderr
            .contains("rule {major}.{minor}: 2.0.8-beta.67 (2.0.8-beta.67 is a prerelease"),
        "{out:?}"
    );
    let release = GitHub::new(
        "push",
        "refs/tags/v2.0.8",
        &head,
        &json!({"ref": "refs/tags/v2.0.8"}),
    );
    let doc = img_tag(repo.path(), &release.env(), &rules)
        .success()
        .document();
    assert_eq!(tags(&doc), ["2.0", "v2", "2.0.8", "2", "latest"]);
    // A template with another part names one build, so it keeps its parts.
    let doc = img_tag(repo.path(), &beta.env(), &["--tag", "{major}-{sha}"])
        .success()
        .document();
    assert_eq!(tags(&doc), [format!("2-{}", short(&head))]);
}

#[test]
fn a_suffix_or_prefix_may_start_with_a_dash() {
    let repo = Repo::new();
    let head = repo.head();
    let push = GitHub::new(
        "push",
        "refs/heads/main",
        &head,
        &json!({"ref": "refs/heads/main"}),
    );
    for args in [&["--suffix", "-bal"][..], &["--suffix=-bal"][..]] {
        let doc = img_tag(repo.path(), &push.env(), args).success().document();
        assert_eq!(
            tags(&doc),
            [format!("{}-bal", short(&head)), "latest".into()],
            "{args:?}"
        );
    }
    let doc = img_tag(
        repo.path(),
        &push.env(),
        &["--tag", "branch", "--prefix", "-x-"],
    )
    .success()
    .document();
    assert_eq!(tags(&doc), ["x-main"], "a tag cannot start with '-'");
}
