//! Building a policy from command-line flags.
//!
//! Rules get priorities 1, 2, … in this order: `--keep` rules (the documented way to protect
//! tags is a rule of higher priority that identifies them and keeps more images than a
//! repository can hold: lower rules can then never expire them), `--expire-untagged-after`,
//! `--keep-last`, then each `--rule` in the order given.
//!
//! A `--rule` is words separated by spaces:
//!
//! - what it selects: `untagged`, `any`, `prefix=A[,B…]` or `pattern=P[,Q…]` (tagged images);
//! - how it counts: `count>N` (keep the newest N), `pushed>Nd`, `pulled>Nd`, `archived>Nd`
//!   (older than N days since push, last pull, or archiving; `archived` selects archived images);
//! - optionally what it does: `expire` (the default) or `archive` (move to archive storage).

use crate::policy::{Policy, Rule};

/// `countNumber` of a `--keep` rule: more images than a repository may hold (ECR's quota of
/// images per repository is 20,000), so the rule identifies its images and expires none.
pub const KEEP_COUNT: i64 = 20_000;

/// The rule-building flags.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    /// `--keep PATTERN`.
    pub keep: Vec<String>,
    /// `--expire-untagged-after DAYS`.
    pub expire_untagged_after: Option<u32>,
    /// `--keep-last N`.
    pub keep_last: Option<u32>,
    /// `--tag-prefix`.
    pub tag_prefixes: Vec<String>,
    /// `--tag-pattern`.
    pub tag_patterns: Vec<String>,
    /// `--rule SPEC`.
    pub rules: Vec<String>,
}

impl Flags {
    /// Whether any rule-building flag was given.
    #[must_use]
    pub fn any(&self) -> bool {
        !self.keep.is_empty()
            || self.expire_untagged_after.is_some()
            || self.keep_last.is_some()
            || !self.rules.is_empty()
    }
}

fn rule(priority: i64, description: String, tag_status: &str, count_type: &str, n: i64) -> Rule {
    Rule {
        priority,
        description: Some(description),
        tag_status: tag_status.into(),
        tag_prefixes: None,
        tag_patterns: None,
        storage_class: None,
        count_type: count_type.into(),
        count_unit: (count_type != "imageCountMoreThan").then(|| "days".into()),
        count_number: n,
        action: "expire".into(),
        target_storage_class: None,
    }
}

/// Builds the policy the flags describe. Errors name the flag and what is wrong.
pub fn build(flags: &Flags) -> Result<Policy, String> {
    let mut rules = Vec::new();
    for pattern in &flags.keep {
        let mut r = rule(
            i64::try_from(rules.len()).unwrap_or(i64::MAX) + 1,
            format!("Keep images tagged {pattern}"),
            "tagged",
            "imageCountMoreThan",
            KEEP_COUNT,
        );
        r.tag_patterns = Some(vec![pattern.clone()]);
        rules.push(r);
    }
    if let Some(days) = flags.expire_untagged_after {
        rules.push(rule(
            i64::try_from(rules.len()).unwrap_or(i64::MAX) + 1,
            format!("Expire untagged images after {days} days"),
            "untagged",
            "sinceImagePushed",
            i64::from(days),
        ));
    }
    if let Some(n) = flags.keep_last {
        if flags.tag_prefixes.is_empty() && flags.tag_patterns.is_empty() {
            return Err(
                "--keep-last needs --tag-prefix or --tag-pattern (which tagged images to count)"
                    .into(),
            );
        }
        if !flags.tag_prefixes.is_empty() && !flags.tag_patterns.is_empty() {
            return Err("--keep-last takes --tag-prefix or --tag-pattern, not both".into());
        }
        let (what, list) = if flags.tag_prefixes.is_empty() {
            ("matching", &flags.tag_patterns)
        } else {
            ("with prefix", &flags.tag_prefixes)
        };
        let mut r = rule(
            i64::try_from(rules.len()).unwrap_or(i64::MAX) + 1,
            format!("Keep the last {n} images tagged {what} {}", list.join(", ")),
            "tagged",
            "imageCountMoreThan",
            i64::from(n),
        );
        if flags.tag_prefixes.is_empty() {
            r.tag_patterns = Some(flags.tag_patterns.clone());
        } else {
            r.tag_prefixes = Some(flags.tag_prefixes.clone());
        }
        rules.push(r);
    } else if !flags.tag_prefixes.is_empty() || !flags.tag_patterns.is_empty() {
        return Err("--tag-prefix and --tag-pattern go with --keep-last".into());
    }
    for spec in &flags.rules {
        let priority = i64::try_from(rules.len()).unwrap_or(i64::MAX) + 1;
        rules.push(parse_spec(spec, priority).map_err(|e| format!("--rule '{spec}': {e}"))?);
    }
    Ok(Policy { rules })
}

fn days(text: &str) -> Result<i64, String> {
    let number = text
        .strip_suffix('d')
        .ok_or_else(|| format!("'{text}' needs a unit: write days as {text}d"))?;
    number
        .parse::<i64>()
        .map_err(|_| format!("'{text}' is not a number of days"))
}

/// A rule's selection: tag status, prefix list, pattern list.
type Selection<'a> = (&'a str, Option<Vec<String>>, Option<Vec<String>>);

/// Parses one `--rule` spec into a rule with the given priority.
pub fn parse_spec(spec: &str, priority: i64) -> Result<Rule, String> {
    let mut selection: Option<Selection> = None;
    let mut count: Option<(&str, i64, bool)> = None;
    let mut action: Option<&str> = None;
    for word in spec.split_whitespace() {
        let set_selection = |s: &mut Option<_>, value| {
            if s.is_some() {
                return Err(format!(
                    "'{word}': one selection per rule (untagged, any, prefix=, pattern=)"
                ));
            }
            *s = Some(value);
            Ok(())
        };
        let list = |text: &str| -> Vec<String> {
            text.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        if word == "untagged" || word == "any" {
            set_selection(&mut selection, (word, None, None))?;
        } else if let Some(prefixes) = word.strip_prefix("prefix=") {
            set_selection(&mut selection, ("tagged", Some(list(prefixes)), None))?;
        } else if let Some(patterns) = word.strip_prefix("pattern=") {
            set_selection(&mut selection, ("tagged", None, Some(list(patterns))))?;
        } else if word == "expire" || word == "archive" {
            if action.replace(word).is_some() {
                return Err(format!("'{word}': one action per rule (expire or archive)"));
            }
        } else if let Some((kind, value)) = word.split_once('>') {
            let parsed = match kind {
                "count" => (
                    "imageCountMoreThan",
                    value
                        .parse::<i64>()
                        .map_err(|_| format!("'{word}': count>N needs a whole number"))?,
                    false,
                ),
                "pushed" => ("sinceImagePushed", days(value)?, false),
                "pulled" => ("sinceImagePulled", days(value)?, false),
                "archived" => ("sinceImageTransitioned", days(value)?, true),
                _ => {
                    return Err(format!(
                        "'{word}': counts are count>N, pushed>Nd, pulled>Nd, archived>Nd"
                    ));
                }
            };
            if count.replace(parsed).is_some() {
                return Err(format!("'{word}': one count per rule"));
            }
        } else {
            return Err(format!(
                "'{word}' is not understood (expected untagged, any, prefix=…, pattern=…, count>N, pushed>Nd, pulled>Nd, archived>Nd, expire, archive)"
            ));
        }
    }
    let (status, prefixes, patterns) =
        selection.ok_or("needs a selection: untagged, any, prefix=… or pattern=…")?;
    let (count_type, n, archived) =
        count.ok_or("needs a count: count>N, pushed>Nd, pulled>Nd or archived>Nd")?;
    let transition = action == Some("archive");
    let what = match (&prefixes, &patterns) {
        (Some(p), _) => format!("images tagged with prefix {}", p.join(", ")),
        (_, Some(p)) => format!("images tagged {}", p.join(", ")),
        _ => format!("{status} images"),
    };
    let when = match count_type {
        "imageCountMoreThan" => format!("beyond the newest {n}"),
        "sinceImagePushed" => format!("pushed more than {n} days ago"),
        "sinceImagePulled" => format!("not pulled for {n} days"),
        _ => format!("archived more than {n} days ago"),
    };
    let verb = if transition { "Archive" } else { "Expire" };
    Ok(Rule {
        priority,
        description: Some(format!("{verb} {what} {when}")),
        tag_status: status.to_owned(),
        tag_prefixes: prefixes,
        tag_patterns: patterns,
        storage_class: archived.then(|| "archive".to_owned()),
        count_type: count_type.to_owned(),
        count_unit: (count_type != "imageCountMoreThan").then(|| "days".to_owned()),
        count_number: n,
        action: if transition { "transition" } else { "expire" }.to_owned(),
        target_storage_class: transition.then(|| "archive".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn seed_flags_build_the_seed_policy() {
        let policy = build(&Flags {
            expire_untagged_after: Some(14),
            keep_last: Some(20),
            tag_prefixes: vec!["v".into(), "release".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(policy.validate().is_empty(), "{:?}", policy.validate());
        assert_eq!(
            policy.text(),
            r#"{"rules":[{"rulePriority":1,"description":"Expire untagged images after 14 days","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}},{"rulePriority":2,"description":"Keep the last 20 images tagged with prefix v, release","selection":{"tagStatus":"tagged","tagPrefixList":["v","release"],"countType":"imageCountMoreThan","countNumber":20},"action":{"type":"expire"}}]}"#
        );
    }

    /// What a spec should parse to: tag status, count type, unit, number, action.
    type Expected = Result<
        (
            &'static str,
            &'static str,
            Option<&'static str>,
            i64,
            &'static str,
        ),
        &'static str,
    >;

    #[test]
    fn rule_specs() {
        let cases: &[(&str, Expected)] = &[
            (
                "untagged pushed>14d",
                Ok(("untagged", "sinceImagePushed", Some("days"), 14, "expire")),
            ),
            (
                "pattern=pr-*,*-x count>50",
                Ok(("tagged", "imageCountMoreThan", None, 50, "expire")),
            ),
            (
                "any pulled>90d archive",
                Ok(("any", "sinceImagePulled", Some("days"), 90, "transition")),
            ),
            (
                "any archived>365d",
                Ok(("any", "sinceImageTransitioned", Some("days"), 365, "expire")),
            ),
            ("untagged", Err("needs a count")),
            ("count>3", Err("needs a selection")),
            ("untagged any count>3", Err("one selection per rule")),
            ("untagged pushed>14", Err("needs a unit")),
            ("untagged count>x", Err("whole number")),
            ("untagged count>1 delete", Err("'delete' is not understood")),
        ];
        for (spec, expected) in cases {
            let got = parse_spec(spec, 1);
            match (expected, got) {
                (Ok((status, count, unit, n, action)), Ok(rule)) => {
                    assert_eq!(rule.tag_status, *status, "{spec}");
                    assert_eq!(rule.count_type, *count, "{spec}");
                    assert_eq!(rule.count_unit.as_deref(), *unit, "{spec}");
                    assert_eq!(rule.count_number, *n, "{spec}");
                    assert_eq!(rule.action, *action, "{spec}");
                }
                (Err(words), Err(message)) => assert!(message.contains(words), "{spec}: {message}"),
                (expected, got) => panic!("{spec}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn keep_rules_come_first() {
        let policy = build(&Flags {
            keep: vec!["latest".into(), "prod-*".into()],
            rules: vec!["any count>10".into()],
            ..Default::default()
        })
        .unwrap();
        let priorities: Vec<(i64, &str)> = policy
            .rules
            .iter()
            .map(|r| (r.priority, r.tag_status.as_str()))
            .collect();
        assert_eq!(priorities, [(1, "tagged"), (2, "tagged"), (3, "any")]);
        assert_eq!(
            policy.rules[1].tag_patterns.as_deref(),
            Some(&["prod-*".to_owned()][..])
        );
        assert!(policy.validate().is_empty());
        assert!(
            build(&Flags {
                keep_last: Some(3),
                ..Default::default()
            })
            .unwrap_err()
            .contains("--tag-prefix")
        );
    }
}
