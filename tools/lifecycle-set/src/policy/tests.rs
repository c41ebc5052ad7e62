//! The policy rules, checked against AWS's documented examples and each constraint broken.

#![allow(clippy::unwrap_used)]
use super::*;

/// A rule as JSON text, from its selection and action.
fn rule(priority: i64, selection: &str, action: &str) -> String {
    format!(
        r#"{{"rulePriority":{priority},"description":"test rule","selection":{selection},"action":{action}}}"#
    )
}

fn policy(rules: &[String]) -> String {
    format!(r#"{{"rules":[{}]}}"#, rules.join(","))
}

const EXPIRE: &str = r#"{"type":"expire"}"#;
const TO_ARCHIVE: &str = r#"{"type":"transition","targetStorageClass":"archive"}"#;

/// Parses and validates; `Ok(())` or the first problem's text.
fn verdict(text: &str) -> Result<(), String> {
    let policy = Policy::parse(text).map_err(|p| p.to_string())?;
    match policy.validate().first() {
        None => Ok(()),
        Some(p) => Err(p.to_string()),
    }
}

/// Policies from AWS's "Examples of lifecycle policies in Amazon ECR" and "Lifecycle policy
/// properties" pages, and variations breaking each documented constraint. Each invalid one
/// lists words its message must contain (the rule and the field).
#[test]
#[allow(clippy::too_many_lines, reason = "a table of cases")]
fn documented_policies_get_the_documented_verdict() {
    let cases: Vec<(&str, String, Option<&[&str]>)> = vec![
        // Valid: the documentation's examples.
        (
            "filtering on image age",
            policy(&[rule(
                1,
                r#"{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":14}"#,
                EXPIRE,
            )]),
            None,
        ),
        (
            "filtering on image count",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#,
                EXPIRE,
            )]),
            None,
        ),
        (
            "multiple rules, example A",
            policy(&[
                rule(
                    1,
                    r#"{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"imageCountMoreThan","countNumber":1}"#,
                    EXPIRE,
                ),
                rule(
                    2,
                    r#"{"tagStatus":"tagged","tagPatternList":["beta*"],"countType":"imageCountMoreThan","countNumber":1}"#,
                    EXPIRE,
                ),
            ]),
            None,
        ),
        (
            "multiple tags in one rule",
            policy(&[rule(
                1,
                r#"{"tagStatus":"tagged","tagPrefixList":["alpha","beta"],"countType":"sinceImagePushed","countNumber":5,"countUnit":"days"}"#,
                EXPIRE,
            )]),
            None,
        ),
        (
            "all images, any last",
            policy(&[
                rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":14}"#,
                    EXPIRE,
                ),
                rule(
                    2,
                    r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":100}"#,
                    EXPIRE,
                ),
            ]),
            None,
        ),
        (
            "four wildcards per string",
            policy(&[rule(
                1,
                r#"{"tagStatus":"tagged","tagPatternList":["*test*1*2*3","test*1*2*3*"],"countType":"imageCountMoreThan","countNumber":1}"#,
                EXPIRE,
            )]),
            None,
        ),
        (
            "priorities need not be sequential",
            policy(&[
                rule(
                    10,
                    r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#,
                    EXPIRE,
                ),
                rule(
                    3,
                    r#"{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":5}"#,
                    EXPIRE,
                ),
            ]),
            None,
        ),
        (
            "archive after 30 days unpulled, expire archived after 365",
            policy(&[
                rule(
                    1,
                    r#"{"tagStatus":"any","storageClass":"standard","countType":"sinceImagePulled","countUnit":"days","countNumber":30}"#,
                    TO_ARCHIVE,
                ),
                rule(
                    2,
                    r#"{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":365}"#,
                    EXPIRE,
                ),
            ]),
            Some(&[
                "rules[0] (rulePriority 1): rulePriority",
                "tagStatus any must have the highest",
            ]),
        ),
        (
            "archive tagged, expire archived",
            policy(&[
                rule(
                    1,
                    r#"{"tagStatus":"tagged","tagPatternList":["pr-*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":30}"#,
                    TO_ARCHIVE,
                ),
                rule(
                    2,
                    r#"{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":90}"#,
                    EXPIRE,
                ),
            ]),
            None,
        ),
        (
            "one untagged rule per storage class",
            policy(&[
                rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7}"#,
                    TO_ARCHIVE,
                ),
                rule(
                    2,
                    r#"{"tagStatus":"untagged","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":90}"#,
                    EXPIRE,
                ),
            ]),
            None,
        ),
        // Invalid.
        (
            "tagged without a list",
            policy(&[rule(
                1,
                r#"{"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":1}"#,
                EXPIRE,
            )]),
            Some(&[
                "rules[0] (rulePriority 1): selection",
                "needs tagPrefixList or tagPatternList",
            ]),
        ),
        (
            "tagged with both lists",
            policy(&[rule(
                1,
                r#"{"tagStatus":"tagged","tagPrefixList":["a"],"tagPatternList":["a*"],"countType":"imageCountMoreThan","countNumber":1}"#,
                EXPIRE,
            )]),
            Some(&["not both"]),
        ),
        (
            "untagged with a prefix list",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","tagPrefixList":["a"],"countType":"imageCountMoreThan","countNumber":1}"#,
                EXPIRE,
            )]),
            Some(&[
                "selection.tagPrefixList",
                "only allowed with tagStatus tagged",
            ]),
        ),
        (
            "any with a pattern list",
            policy(&[rule(
                1,
                r#"{"tagStatus":"any","tagPatternList":["a*"],"countType":"imageCountMoreThan","countNumber":1}"#,
                EXPIRE,
            )]),
            Some(&["selection.tagPatternList"]),
        ),
        (
            "five wildcards",
            policy(&[rule(
                1,
                r#"{"tagStatus":"tagged","tagPatternList":["test*1*2*3*4*5*6"],"countType":"imageCountMoreThan","countNumber":1}"#,
                EXPIRE,
            )]),
            Some(&["selection.tagPatternList[0]", "6 wildcards", "at most 4"]),
        ),
        (
            "duplicate priorities",
            policy(&[
                rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#,
                    EXPIRE,
                ),
                rule(
                    1,
                    r#"{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":1}"#,
                    EXPIRE,
                ),
            ]),
            Some(&["rules[1] (rulePriority 1): rulePriority", "unique"]),
        ),
        (
            "priority zero",
            policy(&[rule(
                0,
                r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#,
                EXPIRE,
            )]),
            Some(&["rulePriority", "1 or more"]),
        ),
        (
            "any not last",
            policy(&[
                rule(
                    1,
                    r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":100}"#,
                    EXPIRE,
                ),
                rule(
                    2,
                    r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#,
                    EXPIRE,
                ),
            ]),
            Some(&["rules[0] (rulePriority 1)", "highest rulePriority"]),
        ),
        (
            "countUnit missing for sinceImagePushed",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countNumber":14}"#,
                EXPIRE,
            )]),
            Some(&["selection.countUnit", "required"]),
        ),
        (
            "countUnit with imageCountMoreThan",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countUnit":"days","countNumber":1}"#,
                EXPIRE,
            )]),
            Some(&["selection.countUnit", "not allowed"]),
        ),
        (
            "countUnit hours",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"hours","countNumber":1}"#,
                EXPIRE,
            )]),
            Some(&["selection.countUnit", "'hours'"]),
        ),
        (
            "countNumber zero",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":0}"#,
                EXPIRE,
            )]),
            Some(&["selection.countNumber", "1 or more"]),
        ),
        (
            "countNumber not an integer",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1.5}"#,
                EXPIRE,
            )]),
            Some(&["selection.countNumber", "expected an integer"]),
        ),
        (
            "two untagged rules",
            policy(&[
                rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":5}"#,
                    EXPIRE,
                ),
                rule(
                    2,
                    r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":5}"#,
                    EXPIRE,
                ),
            ]),
            Some(&[
                "rules[1] (rulePriority 2): selection.tagStatus",
                "only one rule may select untagged",
            ]),
        ),
        (
            "same prefix set twice",
            policy(&[
                rule(
                    1,
                    r#"{"tagStatus":"tagged","tagPrefixList":["a","b"],"countType":"imageCountMoreThan","countNumber":5}"#,
                    EXPIRE,
                ),
                rule(
                    2,
                    r#"{"tagStatus":"tagged","tagPrefixList":["b","a"],"countType":"sinceImagePushed","countUnit":"days","countNumber":5}"#,
                    EXPIRE,
                ),
            ]),
            Some(&["rules[1]", "same tag prefixes"]),
        ),
        (
            "unknown tagStatus",
            policy(&[rule(
                1,
                r#"{"tagStatus":"all","countType":"imageCountMoreThan","countNumber":1}"#,
                EXPIRE,
            )]),
            Some(&["selection.tagStatus", "'all'"]),
        ),
        (
            "unknown countType",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","countType":"sinceImageCreated","countUnit":"days","countNumber":1}"#,
                EXPIRE,
            )]),
            Some(&["selection.countType", "'sinceImageCreated'"]),
        ),
        (
            "unknown action",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#,
                r#"{"type":"delete"}"#,
            )]),
            Some(&["action.type", "'delete'"]),
        ),
        (
            "transition without target",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":30}"#,
                r#"{"type":"transition"}"#,
            )]),
            Some(&["action.targetStorageClass", "required"]),
        ),
        (
            "expire with a target",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":30}"#,
                r#"{"type":"expire","targetStorageClass":"archive"}"#,
            )]),
            Some(&[
                "action.targetStorageClass",
                "only allowed with action transition",
            ]),
        ),
        (
            "transition to glacier",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":30}"#,
                r#"{"type":"transition","targetStorageClass":"glacier"}"#,
            )]),
            Some(&["action.targetStorageClass", "'glacier'"]),
        ),
        (
            "sinceImageTransitioned in standard",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","countType":"sinceImageTransitioned","countUnit":"days","countNumber":90}"#,
                EXPIRE,
            )]),
            Some(&["selection.storageClass", "needs storageClass archive"]),
        ),
        (
            "archive class with imageCountMoreThan",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","storageClass":"archive","countType":"imageCountMoreThan","countNumber":5}"#,
                EXPIRE,
            )]),
            Some(&[
                "selection.storageClass",
                "only allowed with countType sinceImageTransitioned",
            ]),
        ),
        (
            "archived images expired before 90 days",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":30}"#,
                EXPIRE,
            )]),
            Some(&["selection.countNumber", "at least 90 days"]),
        ),
        (
            "archived images transitioned again",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":90}"#,
                TO_ARCHIVE,
            )]),
            Some(&["action.type", "can only expire"]),
        ),
        (
            "unknown storage class",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","storageClass":"cold","countType":"imageCountMoreThan","countNumber":1}"#,
                EXPIRE,
            )]),
            Some(&["selection.storageClass", "'cold'"]),
        ),
        (
            "unknown field",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1,"tagRegex":"x"}"#,
                EXPIRE,
            )]),
            Some(&[
                "rules[0] (rulePriority 1): selection.tagRegex",
                "unknown field",
            ]),
        ),
        (
            "missing countNumber",
            policy(&[rule(
                1,
                r#"{"tagStatus":"untagged","countType":"imageCountMoreThan"}"#,
                EXPIRE,
            )]),
            Some(&["selection.countNumber", "is required"]),
        ),
        (
            "no rules",
            r#"{"rules":[]}"#.into(),
            Some(&["policy.rules", "at least one rule"]),
        ),
        (
            "not JSON",
            r#"{"rules":[}"#.into(),
            Some(&["policy", "not valid JSON at line 1"]),
        ),
    ];
    for (name, text, expected) in cases {
        let got = verdict(&text);
        match (expected, &got) {
            (None, Ok(())) => {}
            (Some(words), Err(message)) => {
                for word in words {
                    assert!(message.contains(word), "{name}: {message:?} lacks {word:?}");
                }
            }
            _ => panic!("{name}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[test]
fn the_longest_allowed_text_is_30720_characters() {
    let long = |n: usize| {
        let description = "x".repeat(n);
        Policy {
            rules: vec![Rule {
                priority: 1,
                description: Some(description),
                tag_status: "untagged".into(),
                tag_prefixes: None,
                tag_patterns: None,
                storage_class: None,
                count_type: "imageCountMoreThan".into(),
                count_unit: None,
                count_number: 1,
                action: "expire".into(),
                target_storage_class: None,
            }],
        }
    };
    let base = long(0).text().chars().count();
    assert!(long(MAX_TEXT - base).validate().is_empty());
    let problems = long(MAX_TEXT - base + 1).validate();
    assert!(
        problems[0].message.contains("at most 30720"),
        "{problems:?}"
    );
}

#[test]
fn normalised_policies_ignore_order_and_defaults() {
    let a = Policy::parse(&policy(&[
        rule(2, r#"{"tagStatus":"tagged","tagPrefixList":["b","a"],"countType":"imageCountMoreThan","countNumber":5}"#, EXPIRE),
        rule(1, r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#, EXPIRE),
    ]))
    .unwrap();
    let b = Policy::parse(&policy(&[
        rule(1, r#"{"countNumber":1,"countType":"imageCountMoreThan","tagStatus":"untagged","storageClass":"standard"}"#, EXPIRE),
        rule(2, r#"{"tagStatus":"tagged","tagPrefixList":["a","b","a"],"countType":"imageCountMoreThan","countNumber":5}"#, EXPIRE),
    ]))
    .unwrap();
    assert_eq!(a.normalised(), b.normalised());
    assert!(diff(&a, &b).is_empty());

    let c = Policy::parse(&policy(&[rule(
        1,
        r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":3}"#,
        EXPIRE,
    )]))
    .unwrap();
    let changes: Vec<String> = diff(&a, &c).iter().map(ToString::to_string).collect();
    assert_eq!(
        changes,
        [
            "~ rule 1 selection.countNumber: 1 -> 3",
            "- rule 2 (tagged prefix [b, a], imageCountMoreThan 5, expire)"
        ]
    );
}

#[test]
fn text_is_compact_and_in_priority_order() {
    let p = Policy::parse(&policy(&[
        rule(2, r#"{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":5}"#, EXPIRE),
        rule(1, r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7}"#, EXPIRE),
    ]))
    .unwrap();
    assert_eq!(
        p.text(),
        r#"{"rules":[{"rulePriority":1,"description":"test rule","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}},{"rulePriority":2,"description":"test rule","selection":{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}}]}"#
    );
    assert_eq!(Policy::parse(&p.text()).unwrap().text(), p.text());
}
