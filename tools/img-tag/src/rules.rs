//! Tag rules: what each produces from the facts, or why it is skipped; and making any value a
//! valid Docker tag.

use sha2::{Digest, Sha256};

use crate::facts::{Facts, Kind};

/// A version from a git tag: `v1.2.3`, `1.2.3-rc.1`, `v1.2.3+build.5`. The semver crate
/// parses and orders it (a release ranks above its prereleases); img-tag only allows the
/// leading `v` git tags usually carry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Semver(pub semver::Version);

impl Semver {
    /// Parses a semantic version, with or without a leading `v`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let text = text
            .strip_prefix('v')
            .or_else(|| text.strip_prefix('V'))
            .unwrap_or(text);
        semver::Version::parse(text).ok().map(Self)
    }

    /// Whether it is a prerelease (`1.2.3-rc.1`).
    #[must_use]
    pub fn is_prerelease(&self) -> bool {
        !self.0.pre.is_empty()
    }

    /// The version without a `v`, with prerelease and build parts.
    #[must_use]
    pub fn full(&self) -> String {
        self.0.to_string()
    }
}

impl std::ops::Deref for Semver {
    type Target = semver::Version;
    fn deref(&self) -> &semver::Version {
        &self.0
    }
}

/// The longest tag Docker accepts.
pub const MAX_TAG: usize = 128;

/// Makes `value` a valid Docker tag: characters outside `[A-Za-z0-9_.-]` become `-` (runs
/// folded into one), leading `.` and `-` are dropped, and a value longer than 128 characters
/// is cut and ends in `-` plus 7 hex digits of its hash, so two long values stay distinct.
/// `None` when nothing is left.
#[must_use]
pub fn sanitize(value: &str) -> Option<String> {
    let mut tag = String::with_capacity(value.len());
    for c in value.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
            c
        } else {
            '-'
        };
        if !(c == '-' && tag.ends_with('-')) {
            tag.push(c);
        }
    }
    let tag = tag.trim_start_matches(['.', '-']);
    if tag.is_empty() {
        return None;
    }
    if tag.len() <= MAX_TAG {
        return Some(tag.to_owned());
    }
    let digest = Sha256::digest(value.as_bytes());
    let hash = hex::encode(&digest[..4]);
    let keep = MAX_TAG - 8;
    Some(format!(
        "{}-{}",
        tag[..keep].trim_end_matches(['.', '-']),
        &hash[..7]
    ))
}

/// When `latest` is applied.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatestPolicy {
    /// On builds of the default branch.
    DefaultBranch,
    /// On builds of a release version tag (not a prerelease).
    Release,
    /// Never.
    Never,
}

/// A tag rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The commit's first 7 characters.
    Sha,
    /// `latest`, by the latest policy.
    Latest,
    /// The branch name.
    Branch,
    /// `1.2.3`, `1.2`, `1` from a version tag (only the full version for a prerelease).
    Semver,
    /// `pr-N` on pull-request builds.
    Pr,
    /// The batch build identifier.
    Batch,
    /// A hash of the build context.
    Content,
    /// A fixed tag.
    Raw(String),
    /// A template of `{placeholders}`.
    Template(String),
}

impl Rule {
    /// Parses a `--tag` value: `sha`, `latest`, `branch`, `semver`, `pr`, `batch`, `content`,
    /// `raw:VALUE`, or a template with `{placeholders}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "sha" => Rule::Sha,
            "latest" => Rule::Latest,
            "branch" => Rule::Branch,
            "semver" => Rule::Semver,
            "pr" => Rule::Pr,
            "batch" => Rule::Batch,
            "content" => Rule::Content,
            _ if text.starts_with("raw:") => Rule::Raw(text[4..].to_owned()),
            _ if text.contains('{') => {
                for placeholder in placeholders(text)? {
                    if !PLACEHOLDERS.contains(&placeholder.as_str()) {
                        return Err(format!(
                            "unknown placeholder {{{placeholder}}} in '{text}' (known: {})",
                            PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")
                        ));
                    }
                }
                Rule::Template(text.to_owned())
            }
            _ => {
                return Err(format!(
                    "'{text}' is not a tag rule: use sha, latest, branch, semver, pr, batch, content, raw:VALUE or a template such as '{{branch}}-{{sha}}'"
                ));
            }
        })
    }

    /// The rule as written.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Rule::Sha => "sha".into(),
            Rule::Latest => "latest".into(),
            Rule::Branch => "branch".into(),
            Rule::Semver => "semver".into(),
            Rule::Pr => "pr".into(),
            Rule::Batch => "batch".into(),
            Rule::Content => "content".into(),
            Rule::Raw(v) => format!("raw:{v}"),
            Rule::Template(t) => t.clone(),
        }
    }
}

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 14] = [
    "sha", "sha_full", "branch", "tag", "version", "major", "minor", "patch", "pr", "build",
    "build_id", "batch", "date", "content",
];

fn placeholders(template: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("'{template}' has a '{{' without its '}}'"))?;
        names.push(after[..end].to_owned());
        rest = &after[end + 1..];
    }
    Ok(names)
}

/// What a rule produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The rule.
    pub rule: String,
    /// The tags it produced (before prefix and suffix).
    pub tags: Vec<String>,
    /// Why it produced nothing, if it did not.
    pub skipped: Option<String>,
    /// Why it produced what it did, where that is not plain (a prerelease's full version).
    pub note: Option<String>,
}

/// The inputs rules read besides the facts.
pub struct Context<'a> {
    /// The resolved facts.
    pub facts: &'a Facts,
    /// The latest policy.
    pub latest: LatestPolicy,
    /// The content hash of the build context, if computed.
    pub content: Option<&'a str>,
}

impl Context<'_> {
    fn version(&self) -> Option<Semver> {
        self.facts
            .tag
            .as_ref()
            .and_then(|t| Semver::parse(&t.value))
    }

    /// Whether the build is of the default branch. A pull request never is, whatever its
    /// head branch is called (a fork's `main` included).
    #[must_use]
    pub fn is_default_branch(&self) -> bool {
        self.facts.kind() != Kind::PullRequest
            && self
                .facts
                .branch
                .as_ref()
                .is_some_and(|b| b.value == self.facts.default_branch.value)
    }

    /// The value of a placeholder, or why there is none.
    fn placeholder(&self, name: &str) -> Result<String, String> {
        let f = self.facts;
        let need = |v: Option<&String>, what: &str| {
            v.cloned()
                .ok_or_else(|| format!("{{{name}}} needs {what}, and none is known"))
        };
        let version = self.version();
        let part = |pick: fn(&Semver) -> u64| {
            version
                .as_ref()
                .map(|v| pick(v).to_string())
                .ok_or_else(|| {
                    format!("{{{name}}} needs a version tag (v1.2.3), and this build has none")
                })
        };
        match name {
            "sha" => need(f.commit.as_ref().map(|c| &c.value), "a commit").map(|c| short(&c)),
            "sha_full" => need(f.commit.as_ref().map(|c| &c.value), "a commit"),
            "branch" => need(
                f.branch.as_ref().map(|b| &b.value),
                "a branch (tag builds have none)",
            ),
            "tag" => need(f.tag.as_ref().map(|t| &t.value), "a git tag"),
            "version" => version.map(|v| v.full()).ok_or_else(|| {
                format!("{{{name}}} needs a version tag (v1.2.3), and this build has none")
            }),
            "major" => part(|v| v.major),
            "minor" => part(|v| v.minor),
            "patch" => part(|v| v.patch),
            "pr" => need(f.pr.as_ref().map(|p| &p.value), "a pull request"),
            "build" => need(f.build_number.as_ref().map(|b| &b.value), "a build number"),
            "build_id" => need(f.build_id.as_ref().map(|b| &b.value), "a build id"),
            "batch" => need(
                f.batch.as_ref().map(|b| &b.value),
                "a batch build identifier",
            ),
            "date" => Ok(f.build_time.value.format("%Y%m%d").to_string()),
            "content" => self
                .content
                .map(|c| shared::names::content_short(c).to_owned())
                .ok_or_else(|| "{content} needs the build context's hash".to_owned()),
            other => Err(format!("unknown placeholder {{{other}}}")),
        }
    }
}

fn short(commit: &str) -> String {
    commit.chars().take(7).collect()
}

/// A rule that cannot produce its tag although it must: a template with a missing part.
#[derive(Debug, PartialEq, Eq)]
pub struct Impossible {
    /// The rule.
    pub rule: String,
    /// Why.
    pub why: String,
}

/// Applies one rule. Built-in rules skip when they do not apply (no pull request, no version
/// tag); a template with a missing part is [`Impossible`], never a tag like `-a1b2c3d`.
pub fn apply(rule: &Rule, cx: &Context<'_>) -> Result<Outcome, Impossible> {
    let facts = cx.facts;
    let produced = |tags: Vec<String>| Outcome {
        rule: rule.name(),
        tags,
        skipped: None,
        note: None,
    };
    let skipped = |why: String| Outcome {
        rule: rule.name(),
        tags: Vec::new(),
        skipped: Some(why),
        note: None,
    };
    let pr_build = facts.pr.as_ref().map(|p| &p.value);
    Ok(match rule {
        Rule::Sha => match &facts.commit {
            Some(c) => produced(vec![short(&c.value)]),
            None => skipped("no commit is known".into()),
        },
        Rule::Branch => match (&facts.branch, pr_build) {
            (_, Some(n)) => skipped(format!(
                "a pull-request build: its tag is pr-{n}; a branch tag would move to the pull request's commit"
            )),
            (Some(b), None) => produced(vec![b.value.clone()]),
            (None, None) => skipped("not a branch build".into()),
        },
        Rule::Pr => match &facts.pr {
            Some(p) => produced(vec![format!("pr-{}", p.value)]),
            None => skipped("not a pull-request build".into()),
        },
        Rule::Batch => match &facts.batch {
            Some(b) => produced(vec![b.value.clone()]),
            None => skipped("not a batch build".into()),
        },
        Rule::Content => match cx.content {
            Some(hash) => produced(vec![shared::names::content_tag(hash)]),
            None => skipped("the build context was not hashed".into()),
        },
        Rule::Raw(value) => produced(vec![value.clone()]),
        Rule::Semver => match (&facts.tag, cx.version()) {
            (None, _) => skipped("not a tag build".into()),
            (Some(t), None) => skipped(format!(
                "the git tag '{}' is not a version (v1.2.3)",
                t.value
            )),
            (Some(_), Some(v)) if v.is_prerelease() => produced(vec![v.full()]),
            (Some(_), Some(v)) => {
                let mut tags = vec![v.full(), format!("{}.{}", v.major, v.minor)];
                // `0` alone would name every 0.x release: metadata-action omits it too.
                if v.major > 0 {
                    tags.push(v.major.to_string());
                }
                produced(tags)
            }
        },
        Rule::Latest => match cx.latest {
            _ if pr_build.is_some() => skipped("a pull-request build never moves latest".into()),
            LatestPolicy::Never => skipped("the latest policy is never".into()),
            LatestPolicy::DefaultBranch if cx.is_default_branch() => {
                produced(vec!["latest".into()])
            }
            LatestPolicy::DefaultBranch => skipped(format!(
                "not a build of the default branch ({})",
                facts.default_branch.value
            )),
            LatestPolicy::Release => match cx.version() {
                Some(v) if !v.is_prerelease() => produced(vec!["latest".into()]),
                Some(_) => skipped("a prerelease never moves latest".into()),
                None => skipped("not a release build".into()),
            },
        },
        Rule::Template(template) => template_outcome(rule, template, cx)?,
    })
}

/// A template's tag: each placeholder filled in, or the full version on a prerelease.
fn template_outcome(rule: &Rule, template: &str, cx: &Context<'_>) -> Result<Outcome, Impossible> {
    let produced = |tags: Vec<String>| Outcome {
        rule: rule.name(),
        tags,
        skipped: None,
        note: None,
    };
    if let Some(v) = cx.version().filter(Semver::is_prerelease)
        && let Some(tag) = prerelease_template(template, &v)
    {
        return Ok(Outcome {
            note: Some(format!(
                "{} is a prerelease: a template of version parts gives its full version, so that it never moves a release's tag",
                v.full()
            )),
            ..produced(vec![tag])
        });
    }
    let mut text = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        text.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('}').unwrap_or(after.len());
        let value = cx.placeholder(&after[..end]).map_err(|why| Impossible {
            rule: rule.name(),
            why,
        })?;
        if value.is_empty() {
            return Err(Impossible {
                rule: rule.name(),
                why: format!("{{{}}} is empty", &after[..end]),
            });
        }
        text.push_str(&value);
        rest = after.get(end + 1..).unwrap_or("");
    }
    text.push_str(rest);
    Ok(produced(vec![text]))
}

/// A template made only of version parts (`{major}.{minor}`, `v{major}`) on a prerelease:
/// the full version in place of the parts, the text around them kept (`v2.0.8-beta.67`), as
/// metadata-action's semver patterns do. Otherwise `2.0` would move to every beta of 2.0.
/// `None` for a template with another placeholder (`{major}-{sha}` names one build anyway)
/// or only `{version}`, which is the full version already.
fn prerelease_template(template: &str, version: &Semver) -> Option<String> {
    let names = placeholders(template).ok()?;
    let parts = ["major", "minor", "patch", "version"];
    if names.iter().any(|n| !parts.contains(&n.as_str())) || names.iter().all(|n| n == "version") {
        return None;
    }
    let first = template.find('{')?;
    let last = template.rfind('}')?;
    Some(format!(
        "{}{}{}",
        &template[..first],
        version.full(),
        &template[last + 1..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_parses_and_orders() {
        let v = Semver::parse("v1.2.3").unwrap();
        assert_eq!(
            (v.major, v.minor, v.patch, v.full()),
            (1, 2, 3, "1.2.3".into())
        );
        assert!(Semver::parse("1.2.3-rc.1").unwrap().is_prerelease());
        assert_eq!(Semver::parse("1.2.3+b.5").unwrap().full(), "1.2.3+b.5");
        for bad in [
            "1.2",
            "v1.2.3.4",
            "01.2.3",
            "1.2.x",
            "release",
            "1.2.3-",
            "1.2.3-a..b",
        ] {
            assert!(Semver::parse(bad).is_none(), "{bad}");
        }
        let mut versions: Vec<Semver> = [
            "1.0.0",
            "1.0.0-rc.1",
            "1.0.0-alpha",
            "0.9.9",
            "1.0.0-rc.10",
            "1.0.0-rc.2",
        ]
        .iter()
        .map(|v| Semver::parse(v).unwrap())
        .collect();
        versions.sort();
        let sorted: Vec<String> = versions.iter().map(Semver::full).collect();
        assert_eq!(
            sorted,
            [
                "0.9.9",
                "1.0.0-alpha",
                "1.0.0-rc.1",
                "1.0.0-rc.2",
                "1.0.0-rc.10",
                "1.0.0"
            ]
        );
    }

    #[test]
    fn sanitize_makes_valid_tags() {
        let cases = [
            ("feature/login", Some("feature/login".replace('/', "-"))),
            ("-.-x", Some("x".into())),
            ("fix//déjà vu", Some("fix-d-j-vu".into())),
            ("UPPER_ok.1", Some("UPPER_ok.1".into())),
            ("///", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(sanitize(input), expected, "{input}");
        }
        let a = sanitize(&format!("{}-a", "x".repeat(200))).unwrap();
        let b = sanitize(&format!("{}-b", "x".repeat(200))).unwrap();
        assert_eq!(a.len(), MAX_TAG);
        assert_ne!(a, b, "long values stay distinct");
        assert!(shared::names::check_tag(&a).is_ok());
    }

    #[test]
    fn rules_parse() {
        assert_eq!(Rule::parse("sha"), Ok(Rule::Sha));
        assert_eq!(Rule::parse("raw:prod"), Ok(Rule::Raw("prod".into())));
        assert_eq!(
            Rule::parse("{branch}-{sha}"),
            Ok(Rule::Template("{branch}-{sha}".into()))
        );
        assert!(
            Rule::parse("{nope}")
                .unwrap_err()
                .contains("unknown placeholder {nope}")
        );
        assert!(Rule::parse("{branch").unwrap_err().contains("without its"));
        assert!(Rule::parse("shaa").is_err());
    }
}
