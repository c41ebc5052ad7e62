//! What a policy would do to a repository's images, evaluated locally with ECR's documented
//! semantics ("Lifecycle policy evaluation rules" in the Amazon ECR user guide):
//!
//! - all rules identify their images at once; then they act in priority order, lowest first;
//! - an image is acted on by exactly one or zero rules;
//! - an image that a rule identifies (matches its tag and storage conditions) cannot be acted
//!   on by a rule of lower priority, even when the higher rule keeps it;
//! - `imageCountMoreThan` sorts the identified images by push time, newest first, and acts on
//!   those past the count; `since*` rules act on images older than the count in days (since push,
//!   last pull — or push if never pulled — or archiving);
//! - images referenced by a manifest list (a multi-platform image) that stays are kept.
//!
//! ECR has its own preview API (StartLifecyclePolicyPreview); the local ECR API server has none,
//! so this evaluation is what `--preview` reports, with a fixed clock (`--now`) for tests.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::policy::{ActionType, CountType, Policy, Rule, StorageClass, tags_match};

/// Seconds in a day.
const DAY: i64 = 86_400;

/// One image of the repository, as far as lifecycle rules care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Manifest digest.
    pub digest: String,
    /// Tags (empty for an untagged image).
    pub tags: Vec<String>,
    /// When it was pushed.
    pub pushed_at: DateTime<Utc>,
    /// When it was last pulled, if ever recorded.
    pub last_pulled: Option<DateTime<Utc>>,
    /// Where it is stored.
    pub storage: StorageClass,
    /// When it was archived (archive storage only).
    pub archived_at: Option<DateTime<Utc>>,
    /// Digests of the images this one references, when it is a manifest list / image index.
    pub manifests: Vec<String>,
}

/// What happens to an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing.
    Keep,
    /// Deleted.
    Expire,
    /// Moved to archive storage.
    Archive,
}

impl Outcome {
    /// The word used in output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Keep => "keep",
            Outcome::Expire => "expire",
            Outcome::Archive => "archive",
        }
    }
}

/// The verdict on one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The image's digest.
    pub digest: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// What happens to it.
    pub outcome: Outcome,
    /// The rule that decided (acted, or protected it), if any.
    pub rule: Option<i64>,
    /// Why, in words.
    pub reason: String,
}

/// The result of a preview.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preview {
    /// One decision per image, newest push first.
    pub decisions: Vec<Decision>,
    /// Things a person should look at: rules that select nothing, shadowed rules, rules that
    /// would expire `latest` or release tags.
    pub warnings: Vec<String>,
}

/// One image ECR's own preview (GetLifecyclePolicyPreview) says a rule acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcrAction {
    /// The image's digest.
    pub digest: String,
    /// Expire or Archive (ECR's EXPIRE and TRANSITION).
    pub outcome: Outcome,
    /// ECR's `appliedRulePriority`.
    pub rule: Option<i64>,
}

/// An image on which ECR's preview and the local evaluation disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The image's digest.
    pub digest: String,
    /// What ECR says happens to it, and by which rule.
    pub ecr: (Outcome, Option<i64>),
    /// What the local evaluation says, and by which rule.
    pub local: (Outcome, Option<i64>),
}

/// Compares ECR's preview with the local evaluation. ECR lists only the images a rule acts
/// on, so an image missing from its results is kept; a kept image's rule is not compared.
#[must_use]
pub fn differences(local: &Preview, ecr: &[EcrAction]) -> Vec<Difference> {
    let acted: HashMap<&str, &EcrAction> = ecr.iter().map(|a| (a.digest.as_str(), a)).collect();
    let mut out = Vec::new();
    for decision in &local.decisions {
        let theirs = acted
            .get(decision.digest.as_str())
            .map_or((Outcome::Keep, None), |a| (a.outcome, a.rule));
        let ours = (decision.outcome, decision.rule);
        let same = theirs.0 == ours.0 && (ours.0 == Outcome::Keep || theirs.1 == ours.1);
        if !same {
            out.push(Difference {
                digest: decision.digest.clone(),
                ecr: theirs,
                local: ours,
            });
        }
    }
    let known: HashSet<&str> = local.decisions.iter().map(|d| d.digest.as_str()).collect();
    for action in ecr {
        if !known.contains(action.digest.as_str()) {
            out.push(Difference {
                digest: action.digest.clone(),
                ecr: (action.outcome, action.rule),
                local: (Outcome::Keep, None),
            });
        }
    }
    out
}

/// The `ecr` part of the preview output: ECR's counts and the images where it differs.
#[must_use]
pub fn ecr_value(ecr: &[EcrAction], differences: &[Difference]) -> Value {
    let count = |o: Outcome| ecr.iter().filter(|a| a.outcome == o).count();
    let side = |(outcome, rule): (Outcome, Option<i64>)| json!({"decision": outcome.as_str(), "rule": rule});
    json!({
        "expire": count(Outcome::Expire),
        "archive": count(Outcome::Archive),
        "agrees": differences.is_empty(),
        "differences": differences.iter().map(|d| json!({
            "digest": d.digest,
            "ecr": side(d.ecr),
            "local": side(d.local),
        })).collect::<Vec<_>>(),
    })
}

fn age_days(now: DateTime<Utc>, then: DateTime<Utc>) -> i64 {
    (now - then).num_seconds().div_euclid(DAY)
}

/// Whether a tag looks like a release (`v1.2.3`, `1.2`, `release-…`) or is `latest`.
#[must_use]
pub fn is_protected_tag(tag: &str) -> bool {
    if tag == "latest" || tag.starts_with("release") {
        return true;
    }
    let version = tag.strip_prefix('v').unwrap_or(tag);
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The images (positions in `identified`' source order) a rule would act on before priorities,
/// with the reason for each.
fn marked(rule: &Rule, identified: &[(usize, &Image)], now: DateTime<Utc>) -> Vec<(usize, String)> {
    let n = rule.count();
    match rule.count_type() {
        CountType::ImageCountMoreThan => identified
            .iter()
            .enumerate()
            .skip(usize::try_from(n).unwrap_or(usize::MAX))
            .map(|(i, (at, _))| {
                (
                    *at,
                    format!(
                        "number {} by push time among {} images it selects; it keeps {n}",
                        i + 1,
                        identified.len()
                    ),
                )
            })
            .collect(),
        kind => {
            let limit = i64::try_from(n).unwrap_or(i64::MAX);
            identified
                .iter()
                .filter_map(|(at, image)| {
                    let (when, what) = match kind {
                        CountType::SinceImagePulled => match image.last_pulled {
                            Some(at) => (at, "last pulled"),
                            None => (image.pushed_at, "never pulled; pushed"),
                        },
                        CountType::SinceImageTransitioned => {
                            (image.archived_at.unwrap_or(image.pushed_at), "archived")
                        }
                        _ => (image.pushed_at, "pushed"),
                    };
                    let age = age_days(now, when);
                    (age > limit)
                        .then(|| (*at, format!("{what} {age} days ago, more than {n} days")))
                })
                .collect()
        }
    }
}

/// Evaluates `policy` (valid) against `images` as of `now`. Images are told apart by their
/// position, not their digest (the local ECR API server gives every image the same digest).
#[must_use]
#[allow(
    clippy::too_many_lines,
    reason = "the documented steps read best in one place"
)]
pub fn evaluate(policy: &Policy, images: &[Image], now: DateTime<Utc>) -> Preview {
    let mut ordered: Vec<&Image> = images.iter().collect();
    ordered.sort_by(|a, b| {
        b.pushed_at
            .cmp(&a.pushed_at)
            .then_with(|| a.digest.cmp(&b.digest))
    });
    let mut decided: HashMap<usize, Decision> = HashMap::new();
    // Images identified by a rule of higher priority, and which rule that was.
    let mut seen: HashMap<usize, i64> = HashMap::new();
    let mut warnings = Vec::new();
    for rule in policy.sorted() {
        let identified: Vec<(usize, &Image)> = ordered
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, image)| {
                image.storage == rule.storage_class() && tags_match(rule, &image.tags)
            })
            .collect();
        if identified.is_empty() {
            warnings.push(format!("{} selects no image", rule.summary()));
        } else if identified.iter().all(|(at, _)| seen.contains_key(at)) {
            let mut by: Vec<i64> = identified.iter().map(|(at, _)| seen[at]).collect();
            by.sort_unstable();
            by.dedup();
            warnings.push(format!(
                "{} is shadowed: every image it selects is already identified by rule {}",
                rule.summary(),
                join(&by)
            ));
        }
        let outcome = match rule.action() {
            ActionType::Expire => Outcome::Expire,
            ActionType::Transition => Outcome::Archive,
        };
        for (at, why) in marked(rule, &identified, now) {
            if decided.contains_key(&at) {
                continue;
            }
            let (outcome, acting, reason) = match seen.get(&at) {
                Some(higher) => (
                    Outcome::Keep,
                    *higher,
                    format!(
                        "rule {} would {} it ({why}), but rule {higher} has higher priority and identified it",
                        rule.priority,
                        rule.action().as_str()
                    ),
                ),
                None => (
                    outcome,
                    rule.priority,
                    format!("rule {}: {why}", rule.priority),
                ),
            };
            decided.insert(
                at,
                Decision {
                    digest: ordered[at].digest.clone(),
                    tags: Vec::new(),
                    outcome,
                    rule: Some(acting),
                    reason,
                },
            );
        }
        for (at, _) in &identified {
            seen.entry(*at).or_insert(rule.priority);
        }
    }
    // Images that a manifest list references stay while the list stays.
    let mut referenced: HashMap<&str, &Image> = HashMap::new();
    for (at, image) in ordered.iter().enumerate() {
        let list_goes = decided
            .get(&at)
            .is_some_and(|d| d.outcome == Outcome::Expire);
        if !list_goes {
            for child in &image.manifests {
                referenced.insert(child.as_str(), image);
            }
        }
    }
    let mut decisions = Vec::with_capacity(ordered.len());
    for (at, image) in ordered.iter().enumerate() {
        let mut decision = decided.remove(&at).unwrap_or_else(|| {
            let reason = match seen.get(&at) {
                Some(rule) => format!("rule {rule} selects it and keeps it"),
                None => "no rule selects it".to_owned(),
            };
            Decision {
                digest: image.digest.clone(),
                tags: Vec::new(),
                outcome: Outcome::Keep,
                rule: seen.get(&at).copied(),
                reason,
            }
        });
        decision.tags.clone_from(&image.tags);
        if decision.outcome != Outcome::Keep
            && let Some(list) = referenced.get(image.digest.as_str())
        {
            decision.reason = format!(
                "{}; kept because manifest list {} references it",
                decision.reason,
                shared::show::digest(&list.digest)
            );
            decision.outcome = Outcome::Keep;
        }
        if decision.outcome == Outcome::Expire {
            let risky: Vec<&str> = image
                .tags
                .iter()
                .filter(|t| is_protected_tag(t))
                .map(String::as_str)
                .collect();
            if !risky.is_empty() {
                warnings.push(format!(
                    "rule {} would expire {} tagged {}",
                    decision.rule.unwrap_or_default(),
                    shared::show::digest(&image.digest),
                    risky.join(", ")
                ));
            }
        }
        decisions.push(decision);
    }
    Preview {
        decisions,
        warnings,
    }
}

fn join(numbers: &[i64]) -> String {
    numbers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Warnings that need no images: rules that can never act because a higher rule with a
/// shorter prefix list selects everything they select.
#[must_use]
pub fn static_warnings(policy: &Policy) -> Vec<String> {
    let rules = policy.sorted();
    let mut warnings = Vec::new();
    for (i, lower) in rules.iter().enumerate() {
        let Some(lower_prefixes) = &lower.tag_prefixes else {
            continue;
        };
        for higher in &rules[..i] {
            let Some(higher_prefixes) = &higher.tag_prefixes else {
                continue;
            };
            let covered = higher.storage_class() == lower.storage_class()
                && higher_prefixes
                    .iter()
                    .all(|h| lower_prefixes.iter().any(|l| l.starts_with(h.as_str())));
            if covered {
                warnings.push(format!(
                    "{} is shadowed: rule {} identifies every image it could select",
                    lower.summary(),
                    higher.priority
                ));
                break;
            }
        }
    }
    warnings
}

/// The preview as JSON for the `lifecycle.preview` field.
#[must_use]
pub fn to_value(preview: &Preview, source: &str, now: DateTime<Utc>) -> Value {
    let count = |o: Outcome| preview.decisions.iter().filter(|d| d.outcome == o).count();
    json!({
        "source": source,
        "now": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "expire": count(Outcome::Expire),
        "archive": count(Outcome::Archive),
        "keep": count(Outcome::Keep),
        "images": preview.decisions.iter().map(|d| json!({
            "digest": d.digest,
            "tags": d.tags,
            "decision": d.outcome.as_str(),
            "rule": d.rule,
            "reason": d.reason,
        })).collect::<Vec<_>>(),
    })
}

/// Parses a timestamp as aws-cli prints it: RFC 3339 text (v2) or epoch seconds (v1).
#[must_use]
pub fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(text) => DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
            .or_else(|| text.parse::<f64>().ok().and_then(epoch)),
        Value::Number(n) => n.as_f64().and_then(epoch),
        _ => None,
    }
}

fn epoch(seconds: f64) -> Option<DateTime<Utc>> {
    if !seconds.is_finite() {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)]
    let whole = seconds.floor() as i64;
    DateTime::from_timestamp(whole, 0)
}

/// Reads images from an images file: aws-cli's `describe-images` output
/// (`{"imageDetails": [...]}`), an array of image details, or one detail per line. Besides
/// ECR's fields (imageDigest, imageTags, imagePushedAt, lastRecordedPullTime, imageStatus,
/// lastArchivedAt), an image may list the digests it references in `manifests`.
pub fn parse_images(text: &str) -> Result<Vec<Image>, String> {
    let mut values = Vec::new();
    for (i, item) in serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .enumerate()
    {
        let value = item.map_err(|e| format!("record {} is not valid JSON: {e}", i + 1))?;
        match value {
            Value::Object(ref map) if map.contains_key("imageDetails") => {
                match &map["imageDetails"] {
                    Value::Array(items) => values.extend(items.iter().cloned()),
                    _ => return Err("imageDetails: expected an array".into()),
                }
            }
            Value::Array(items) => values.extend(items),
            other => values.push(other),
        }
    }
    let mut images = Vec::with_capacity(values.len());
    let mut digests = HashSet::new();
    for (i, value) in values.iter().enumerate() {
        let at = format!("image {}", i + 1);
        let digest = value
            .get("imageDigest")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{at}: imageDigest: expected a string"))?
            .to_owned();
        if !digests.insert(digest.clone()) {
            return Err(format!("{at}: imageDigest {digest} appears twice"));
        }
        let list = |key: &str| -> Result<Vec<String>, String> {
            match value.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|t| {
                        t.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| format!("{at}: {key}: expected strings"))
                    })
                    .collect(),
                Some(_) => Err(format!("{at}: {key}: expected an array of strings")),
            }
        };
        let time = |key: &str| -> Result<Option<DateTime<Utc>>, String> {
            match value.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => parse_time(v).map(Some).ok_or_else(|| {
                    format!("{at}: {key}: expected RFC 3339 time or epoch seconds, found {v}")
                }),
            }
        };
        let pushed_at =
            time("imagePushedAt")?.ok_or_else(|| format!("{at}: imagePushedAt is required"))?;
        let storage = match value.get("imageStatus").and_then(Value::as_str) {
            Some("ARCHIVED") => StorageClass::Archive,
            _ => StorageClass::Standard,
        };
        images.push(Image {
            digest,
            tags: list("imageTags")?,
            pushed_at,
            last_pulled: time("lastRecordedPullTime")?,
            storage,
            archived_at: time("lastArchivedAt")?,
            manifests: list("manifests")?,
        });
    }
    Ok(images)
}

#[cfg(test)]
mod tests;
