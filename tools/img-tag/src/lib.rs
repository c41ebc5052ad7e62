//! `img-tag`: correct, traceable image tags and OCI labels from git and the CI environment.
//!
//! Facts (commit, branch, git tag, pull request, build number, dates) come from flags, then the
//! CI's variables (CodeBuild, GitHub Actions, GitLab CI), then the local git repository; each
//! records where it came from. Tag rules turn them into tags that satisfy Docker's grammar; a
//! rule that cannot be applied is an error, never a silent `latest` or a tag like `-a1b2c3d`.

pub mod facts;
pub mod git;
pub mod rules;

use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Parser;
use serde_json::{Map, Value, json};
use shared::cli::Common;
use shared::exit::Code;
use shared::{Document, Error, Result, info};

use crate::facts::{Facts, Given};
use crate::rules::{Context, LatestPolicy, Rule, Semver};

/// Compute image tags and OCI labels from git and the CI environment.
#[derive(Parser, Debug)]
#[command(
    name = "img-tag",
    version,
    after_long_help = "EXAMPLES:
  # Short commit, version tags on releases, pr-N on pull requests, latest on the default branch
  img-tag --repository my-app

  # The seed's format, main-20260212-42-a1b2c3d, plus the short commit
  img-tag --repository my-app --tag sha --tag '{branch}-{date}-{build}-{sha}'

  # What each rule produced or why it was skipped, and where every fact came from
  img-tag --repository my-app --explain

TAG RULES (--tag, repeatable; default: sha, semver, pr, latest):
  sha       the commit's first 7 characters
  latest    latest, as --latest allows
  branch    the branch name
  semver    1.2.3, 1.2 and 1 from a version tag v1.2.3 (a prerelease gets only 1.2.3-rc.1)
  pr        pr-N on pull-request builds (GitHub: GITHUB_REF or the event payload)
  batch     the CodeBuild batch build identifier (matrix builds)
  content   ctx-<hash> of the build context as img-build sends it
  raw:TEXT  TEXT itself
  TEMPLATE  any text with placeholders: {sha} {sha_full} {branch} {tag} {version} {major}
            {minor} {patch} {pr} {build} {build_id} {batch} {date} {content}. On a
            prerelease, a template of version parts alone ({major}.{minor}, v{major}) gives
            the full version (v2.0.8-beta.67), so that a beta never moves 2.0.

ON EACH KIND OF BUILD (--explain names the kind and why a rule was skipped):
            branch push      tag push          pull request      other
  sha       a1b2c3d          a1b2c3d           a1b2c3d           a1b2c3d
  branch    the branch       skipped           skipped           skipped
  semver    skipped          1.2.3, 1.2, 1     skipped           skipped
  pr        skipped          skipped           pr-N              skipped
  latest    on the default   with --latest     never             skipped
            branch           release
  A pull request is any build with a PR number: GitHub's pull_request and
  pull_request_target (the number from GITHUB_EVENT_PATH), GitLab's merge request
  pipelines (CI_MERGE_REQUEST_IID), CodeBuild's PULL_REQUEST_* webhooks (pr/N)."
)]
pub struct Cli {
    /// Repository name (default: the input document's `repository`).
    #[arg(long, value_name = "NAME")]
    pub repository: Option<String>,

    /// Registry host for the full references (default: the input document's `registry`).
    #[arg(long, value_name = "HOST")]
    pub registry: Option<String>,

    /// A tag rule (repeatable); see TAG RULES.
    #[arg(long = "tag", value_name = "RULE", value_parser = Rule::parse)]
    pub rules: Vec<Rule>,

    /// Put this before every tag but `latest`.
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub prefix: String,

    /// Put this after every tag but `latest` (`--suffix -alpine` works as `--suffix=-alpine`).
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub suffix: String,

    /// When `latest` is applied.
    #[arg(
        long,
        value_enum,
        value_name = "POLICY",
        default_value = "default-branch"
    )]
    pub latest: LatestPolicy,

    /// The commit built (default: from CI variables, then git HEAD).
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,

    /// The branch built.
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,

    /// The git tag built (v1.2.3).
    #[arg(long, value_name = "TAG")]
    pub git_tag: Option<String>,

    /// The pull-request number.
    #[arg(long, value_name = "N")]
    pub pr: Option<String>,

    /// The build number.
    #[arg(long, value_name = "N")]
    pub build_number: Option<String>,

    /// The default branch (default: GitLab's CI_DEFAULT_BRANCH, git's origin/HEAD, else main).
    #[arg(long, value_name = "NAME")]
    pub default_branch: Option<String>,

    /// The build context: where the git repository is looked for, and what `content` hashes.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub context: PathBuf,

    /// The Dockerfile, for the `content` rule (default: Dockerfile in the context).
    #[arg(long = "file", short = 'f', value_name = "PATH")]
    pub dockerfile: Option<PathBuf>,

    /// An extra label KEY=VALUE (repeatable); it overrides the OCI labels.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = shared::cli::key_value)]
    pub labels: Vec<(String, String)>,

    /// Print on stderr where each fact came from and what each rule produced or why it was skipped.
    #[arg(long)]
    pub explain: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

impl shared::cli::Cli for Cli {
    fn common(&self) -> &Common {
        &self.common
    }
}

/// The rules used when no `--tag` is given.
#[must_use]
pub fn default_rules() -> Vec<Rule> {
    vec![Rule::Sha, Rule::Semver, Rule::Pr, Rule::Latest]
}

/// Runs `img-tag`.
pub fn run(cli: &Cli) -> Result<Code> {
    let git = git::read(&cli.context)?;
    let given = Given {
        commit: cli.commit.clone(),
        branch: cli.branch.clone(),
        tag: cli.git_tag.clone(),
        pr: cli.pr.clone(),
        build_number: cli.build_number.clone(),
        default_branch: cli.default_branch.clone(),
    };
    let env = |name: &str| std::env::var(name).ok();
    let payload = github_event_payload(&env)?;
    let facts = facts::resolve(&given, &env, payload.as_ref(), git.as_ref(), Utc::now());
    // A pull-request event without its number would be tagged as a branch build: the head
    // branch's tag would move to code nobody merged.
    if facts.ci == Some("github-actions")
        && facts.pr.is_none()
        && let Some(event) = facts
            .event
            .as_ref()
            .filter(|e| facts::is_github_pr_event(&e.value))
    {
        return Err(Error::data(format!(
            "a GitHub {} build, but neither GITHUB_REF nor the event payload (GITHUB_EVENT_PATH) gives its pull-request number",
            event.value
        ))
        .with_hint("pass the number with --pr N"));
    }
    let source_date_epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0));
    let rules = if cli.rules.is_empty() {
        default_rules()
    } else {
        cli.rules.clone()
    };
    let content = if rules.iter().any(|r| matches!(r, Rule::Content))
        || rules
            .iter()
            .any(|r| matches!(r, Rule::Template(t) if t.contains("{content}")))
    {
        let context = context::Context::open(
            &cli.context,
            cli.dockerfile.as_deref(),
            context::Options::default(),
        )?;
        Some(context.hash()?.hash)
    } else {
        None
    };
    if cli.explain {
        explain_facts(&facts, git.is_some());
    }
    let tagging = Tagging {
        cli,
        facts: &facts,
        rules: &rules,
        content: content.as_deref().map(|h| h.trim_start_matches("sha256:")),
        created: source_date_epoch
            .map(|t| (t, "SOURCE_DATE_EPOCH"))
            .or_else(|| {
                facts
                    .commit_time
                    .as_ref()
                    .map(|t| (t.value, "the commit time"))
            })
            .unwrap_or((facts.build_time.value, "the build start")),
    };
    shared::cli::runtime()?.block_on(shared::cli::pipeline(&cli.common, async |doc| {
        tagging.document(doc)
    }))
}

/// The GitHub Actions event payload, read when the build is a pull-request event whose number
/// GITHUB_REF does not carry (pull_request_target, pull_request_review, ...). The file is
/// outside input: only a regular file of at most 4 MiB is read.
fn github_event_payload(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Value>> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if set("GITHUB_ACTIONS").as_deref() != Some("true")
        || !set("GITHUB_EVENT_NAME").is_some_and(|e| facts::is_github_pr_event(&e))
        || set("GITHUB_REF").is_some_and(|r| r.starts_with("refs/pull/"))
    {
        return Ok(None);
    }
    let Some(path) = set("GITHUB_EVENT_PATH") else {
        return Ok(None);
    };
    let what = "the GitHub event payload (GITHUB_EVENT_PATH)";
    let text =
        shared::files::read_text(std::path::Path::new(&path), shared::files::TEXT_LIMIT, what)?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::data(format!("{what} is not valid JSON: {e}"))
            .with_hint("pass the pull-request number with --pr N")
    })
}

struct Tagging<'a> {
    cli: &'a Cli,
    facts: &'a Facts,
    rules: &'a [Rule],
    content: Option<&'a str>,
    created: (DateTime<Utc>, &'static str),
}

impl Tagging<'_> {
    fn document(&self, mut doc: Document) -> Result<Document> {
        let cli = self.cli;
        let repository = cli
            .repository
            .as_deref()
            .or_else(|| doc.str("repository"))
            .ok_or_else(|| {
                Error::data("no repository named")
                    .with_hint("pass --repository NAME, or give a document with a repository field (ecr-repo writes one)")
            })?
            .to_owned();
        shared::names::check_repository(&repository)?;
        let registry = cli
            .registry
            .as_deref()
            .or_else(|| doc.str("registry"))
            .filter(|r| !r.is_empty())
            .map(str::to_owned);
        if let Some(registry) = &registry {
            shared::names::check_host(registry)?;
        }

        let commit = self.facts.commit.as_ref().ok_or_else(|| self.no_commit())?;
        let cx = Context {
            facts: self.facts,
            latest: cli.latest,
            content: self.content,
        };
        let mut tags: Vec<String> = Vec::new();
        for rule in self.rules {
            let outcome = rules::apply(rule, &cx).map_err(|impossible| {
                Error::data(format!(
                    "tag rule '{}' cannot be applied: {}",
                    impossible.rule, impossible.why
                ))
                .with_hint("pass the missing fact as a flag (--branch, --git-tag, --pr, --build-number), or drop the rule for this kind of build")
            })?;
            let mut made = Vec::new();
            for value in &outcome.tags {
                let full = if value == "latest" {
                    value.clone()
                } else {
                    format!("{}{value}{}", cli.prefix, cli.suffix)
                };
                let tag = rules::sanitize(&full).ok_or_else(|| {
                    Error::data(format!(
                        "tag rule '{}' produced '{full}', which has nothing a tag may contain",
                        outcome.rule
                    ))
                })?;
                shared::names::check_tag(&tag)?;
                if !tags.contains(&tag) {
                    tags.push(tag.clone());
                }
                made.push(tag);
            }
            if cli.explain {
                match (&outcome.skipped, &outcome.note) {
                    (Some(why), _) => info!("rule {}: skipped ({why})", outcome.rule),
                    (None, Some(note)) => {
                        info!("rule {}: {} ({note})", outcome.rule, made.join(", "));
                    }
                    (None, None) => info!("rule {}: {}", outcome.rule, made.join(", ")),
                }
            }
        }
        if tags.is_empty() {
            return Err(
                Error::data("no tag rule produced a tag for this build").with_hint(
                    "add a rule that always applies, such as --tag sha, or run with --explain",
                ),
            );
        }

        let references: Vec<String> = tags
            .iter()
            .map(|tag| match &registry {
                Some(registry) => format!("{registry}/{repository}:{tag}"),
                None => format!("{repository}:{tag}"),
            })
            .collect();
        info!("tags: {}", tags.join(", "));

        let version = self
            .facts
            .tag
            .as_ref()
            .and_then(|t| Semver::parse(&t.value))
            .map(|v| v.full());
        let labels = self.labels(&doc, &repository, &commit.value, version.as_deref(), &tags);

        doc.set("repository", repository.as_str());
        if let Some(registry) = &registry {
            doc.set("registry", registry.as_str());
            doc.set("repository_uri", format!("{registry}/{repository}"));
        }
        doc.set("tags", tags);
        doc.set("references", references);
        doc.set("labels", Value::Object(labels));
        doc.set("source", self.source(&cx, version.as_deref()));
        Ok(doc)
    }

    fn no_commit(&self) -> Error {
        let facts = self.facts;
        if facts.codepipeline {
            Error::config(
                "no commit is known: this CodePipeline build has no .git directory and CodeBuild was given no commit id",
            )
            .with_hint("pass --commit with the source action's CommitId (#{SourceVariables.CommitId}) as an environment variable of the CodeBuild action, or enable full clone in the source action")
        } else if facts.ci == Some("codebuild") {
            Error::config("no commit is known: CODEBUILD_RESOLVED_SOURCE_VERSION is not a commit id and there is no .git directory")
                .with_hint("pass --commit SHA, or use a source that keeps .git (git-clone-depth, full clone)")
        } else {
            Error::config(
                "no commit is known: not in a git repository and no CI variables name one",
            )
            .with_hint("run in the repository, pass --context DIR, or pass --commit SHA")
        }
    }

    fn labels(
        &self,
        doc: &Document,
        repository: &str,
        commit: &str,
        version: Option<&str>,
        tags: &[String],
    ) -> Map<String, Value> {
        let mut labels = match doc.get("labels") {
            Some(Value::Object(existing)) => existing.clone(),
            _ => Map::new(),
        };
        let mut set = |key: &str, value: String| {
            labels.insert(
                format!("org.opencontainers.image.{key}"),
                Value::String(value),
            );
        };
        set("revision", commit.to_owned());
        if let Some(url) = &self.facts.source_url {
            set("source", url.value.clone());
        }
        set(
            "created",
            self.created.0.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        let first = tags.iter().find(|t| *t != "latest").unwrap_or(&tags[0]);
        set(
            "version",
            version.map_or_else(|| first.clone(), str::to_owned),
        );
        set(
            "title",
            repository
                .rsplit('/')
                .next()
                .unwrap_or(repository)
                .to_owned(),
        );
        set("ref.name", first.clone());
        for (key, value) in &self.cli.labels {
            labels.insert(key.clone(), Value::String(value.clone()));
        }
        labels
    }

    fn source(&self, cx: &Context<'_>, version: Option<&str>) -> Value {
        let f = self.facts;
        let mut provenance = Map::new();
        let mut values = Map::new();
        let mut add = |name: &str, value: Value, source: &str| {
            values.insert(name.to_owned(), value);
            provenance.insert(name.to_owned(), Value::String(source.to_owned()));
        };
        if let Some(c) = &f.commit {
            add("commit", json!(c.value), &c.source);
            add(
                "short_commit",
                json!(c.value.chars().take(7).collect::<String>()),
                &c.source,
            );
        }
        for (name, fact) in [
            ("branch", &f.branch),
            ("tag", &f.tag),
            ("pr", &f.pr),
            ("event", &f.event),
            ("build_number", &f.build_number),
            ("build_id", &f.build_id),
            ("batch", &f.batch),
            ("describe", &f.describe),
            ("url", &f.source_url),
        ] {
            if let Some(fact) = fact {
                add(name, json!(fact.value), &fact.source);
            }
        }
        if let Some(dirty) = &f.dirty {
            add("dirty", json!(dirty.value), &dirty.source);
        }
        add(
            "build_time",
            json!(
                f.build_time
                    .value
                    .to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            &f.build_time.source,
        );
        if let Some(t) = &f.commit_time {
            add(
                "commit_time",
                json!(t.value.to_rfc3339_opts(SecondsFormat::Secs, true)),
                &t.source,
            );
        }
        add(
            "default_branch",
            json!(f.default_branch.value),
            &f.default_branch.source,
        );
        add(
            "created",
            json!(self.created.0.to_rfc3339_opts(SecondsFormat::Secs, true)),
            self.created.1,
        );
        if let Some(content) = self.content {
            add(
                "content_hash",
                json!(format!("sha256:{content}")),
                "the build context",
            );
        }
        values.insert("version".into(), json!(version));
        values.insert("is_default_branch".into(), json!(cx.is_default_branch()));
        values.insert(
            "is_prerelease".into(),
            json!(
                f.tag
                    .as_ref()
                    .and_then(|t| Semver::parse(&t.value))
                    .is_some_and(|v| v.is_prerelease())
            ),
        );
        values.insert("ci".into(), json!(f.ci));
        values.insert("kind".into(), json!(f.kind().name()));
        values.insert("shallow".into(), json!(f.shallow));
        values.insert("provenance".into(), Value::Object(provenance));
        Value::Object(values)
    }
}

fn explain_facts(facts: &Facts, has_git: bool) {
    let show = |name: &str, fact: Option<(String, &str)>| match fact {
        Some((value, source)) => info!("fact {name} = {value} (from {source})"),
        None => info!("fact {name}: unknown"),
    };
    info!(
        "ci: {}{}; git repository: {}",
        facts.ci.unwrap_or("none detected"),
        if facts.codepipeline {
            " (started by CodePipeline)"
        } else {
            ""
        },
        if has_git { "found" } else { "none" }
    );
    match &facts.event {
        Some(event) => info!(
            "kind of build: {} (event {} from {})",
            facts.kind().name(),
            event.value,
            event.source
        ),
        None => info!("kind of build: {}", facts.kind().name()),
    }
    show(
        "commit",
        facts
            .commit
            .as_ref()
            .map(|f| (f.value.clone(), f.source.as_str())),
    );
    show(
        "branch",
        facts
            .branch
            .as_ref()
            .map(|f| (f.value.clone(), f.source.as_str())),
    );
    show(
        "tag",
        facts
            .tag
            .as_ref()
            .map(|f| (f.value.clone(), f.source.as_str())),
    );
    show(
        "pr",
        facts
            .pr
            .as_ref()
            .map(|f| (f.value.clone(), f.source.as_str())),
    );
    show(
        "build_number",
        facts
            .build_number
            .as_ref()
            .map(|f| (f.value.clone(), f.source.as_str())),
    );
    show(
        "default_branch",
        Some((
            facts.default_branch.value.clone(),
            facts.default_branch.source.as_str(),
        )),
    );
}
