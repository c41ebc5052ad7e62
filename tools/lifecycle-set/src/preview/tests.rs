//! The preview, checked against the evaluation rules in ECR's user guide, rule by rule.

#![allow(clippy::unwrap_used)]
use super::*;
use crate::policy::Policy;

/// The fixed clock of these tests.
fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-06-30T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn image(name: &str, tags: &[&str], days_ago: i64) -> Image {
    Image {
        digest: format!("sha256:{name}"),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        pushed_at: now() - chrono::Duration::days(days_ago),
        last_pulled: None,
        storage: StorageClass::Standard,
        archived_at: None,
        manifests: Vec::new(),
    }
}

fn rule(priority: i64, selection: &str) -> String {
    format!(
        r#"{{"rulePriority":{priority},"description":"Rule {priority}","selection":{selection},"action":{{"type":"expire"}}}}"#
    )
}

fn policy(rules: &[String]) -> Policy {
    let p = Policy::parse(&format!(r#"{{"rules":[{}]}}"#, rules.join(","))).unwrap();
    assert_eq!(p.validate(), Vec::new());
    p
}

/// The names of the images with `outcome`, in name order.
fn with(preview: &Preview, outcome: Outcome) -> Vec<String> {
    let mut names: Vec<String> = preview
        .decisions
        .iter()
        .filter(|d| d.outcome == outcome)
        .map(|d| d.digest.trim_start_matches("sha256:").to_owned())
        .collect();
    names.sort();
    names
}

fn doc_repository() -> Vec<Image> {
    vec![
        image("A", &["beta-1", "prod-1"], 10),
        image("B", &["beta-2", "prod-2"], 9),
        image("C", &["beta-3"], 8),
    ]
}

/// "Filtering on multiple rules", example A: Rule 1 (prod, keep 1) marks A; Rule 2 (beta,
/// keep 1) would mark A and B, but B was seen by Rule 1. Result: Image A is expired.
#[test]
fn aws_example_multiple_rules_a() {
    for (prod, beta) in [
        (r#""tagPrefixList":["prod"]"#, r#""tagPrefixList":["beta"]"#),
        (
            r#""tagPatternList":["prod*"]"#,
            r#""tagPatternList":["beta*"]"#,
        ),
    ] {
        let p = policy(&[
            rule(
                1,
                &format!(
                    r#"{{"tagStatus":"tagged",{prod},"countType":"imageCountMoreThan","countNumber":1}}"#
                ),
            ),
            rule(
                2,
                &format!(
                    r#"{{"tagStatus":"tagged",{beta},"countType":"imageCountMoreThan","countNumber":1}}"#
                ),
            ),
        ]);
        let result = evaluate(&p, &doc_repository(), now());
        assert_eq!(with(&result, Outcome::Expire), ["A"]);
        let b = result
            .decisions
            .iter()
            .find(|d| d.digest == "sha256:B")
            .unwrap();
        assert_eq!(b.rule, Some(1));
        assert!(
            b.reason.contains("rule 1 has higher priority"),
            "{}",
            b.reason
        );
    }
}

/// Example B: the same repository with the rules swapped. Rule 1 (beta, keep 1) marks A and
/// B; Rule 2 (prod) sees only images Rule 1 saw. Result: Images A and B are expired.
#[test]
fn aws_example_multiple_rules_b() {
    let p = policy(&[
        rule(
            1,
            r#"{"tagStatus":"tagged","tagPrefixList":["beta"],"countType":"imageCountMoreThan","countNumber":1}"#,
        ),
        rule(
            2,
            r#"{"tagStatus":"tagged","tagPrefixList":["prod"],"countType":"imageCountMoreThan","countNumber":1}"#,
        ),
    ]);
    let result = evaluate(&p, &doc_repository(), now());
    assert_eq!(with(&result, Outcome::Expire), ["A", "B"]);
    assert_eq!(with(&result, Outcome::Keep), ["C"]);
    assert!(
        result
            .warnings
            .iter()
            .any(|w| w.starts_with("rule 2 ") && w.contains("shadowed")),
        "{:?}",
        result.warnings
    );
}

/// "Filtering on multiple tags in a single rule", example A: prefixes alpha and beta,
/// older than 5 days. The rule sees C and F; C is older. Result: Image C is expired.
#[test]
fn aws_example_multiple_tags_a() {
    let images = vec![
        image("A", &["alpha-1"], 12),
        image("B", &["beta-1"], 11),
        image("C", &["alpha-2", "beta-2"], 10),
        image("D", &["alpha-3"], 4),
        image("E", &["beta-3"], 3),
        image("F", &["alpha-4", "beta-4"], 2),
    ];
    let p = policy(&[rule(
        1,
        r#"{"tagStatus":"tagged","tagPrefixList":["alpha","beta"],"countType":"sinceImagePushed","countNumber":5,"countUnit":"days"}"#,
    )]);
    let result = evaluate(&p, &images, now());
    assert_eq!(with(&result, Outcome::Expire), ["C"]);
    let a = result
        .decisions
        .iter()
        .find(|d| d.digest == "sha256:A")
        .unwrap();
    assert_eq!((a.rule, a.reason.as_str()), (None, "no rule selects it"));
}

/// Example B: tags are not exclusive. Prefixes alpha and beta, keep 1: the rule sees all
/// three images. Result: Images A and B are expired.
#[test]
fn aws_example_multiple_tags_b() {
    let images = vec![
        image("A", &["alpha-1", "beta-1", "gamma-1"], 10),
        image("B", &["alpha-2", "beta-2"], 9),
        image("C", &["alpha-3", "beta-3", "gamma-2"], 8),
    ];
    let p = policy(&[rule(
        1,
        r#"{"tagStatus":"tagged","tagPrefixList":["alpha","beta"],"countType":"imageCountMoreThan","countNumber":1}"#,
    )]);
    let result = evaluate(&p, &images, now());
    assert_eq!(with(&result, Outcome::Expire), ["A", "B"]);
}

/// "Filtering on image age": images tagged prod* older than 14 days expire.
#[test]
fn aws_example_image_age() {
    let images = vec![
        image("old", &["prod-1"], 15),
        image("edge", &["prod-2"], 14),
        image("new", &["prod-3"], 1),
        image("other", &["dev-1"], 30),
    ];
    let p = policy(&[rule(
        1,
        r#"{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":14}"#,
    )]);
    let result = evaluate(&p, &images, now());
    assert_eq!(with(&result, Outcome::Expire), ["old"]);
}

/// A small deterministic generator (no randomness in tests: the same sets every run).
fn generated(seed: u64, n: usize) -> Vec<Image> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    (0..n)
        .map(|i| {
            let tags: Vec<String> = match next() % 4 {
                0 => Vec::new(),
                1 => vec![format!("pr-{i}")],
                2 => vec![format!("v1.{i}.0"), format!("sha-{i:x}")],
                _ => vec![format!("main-{i}"), "latest".to_owned()]
                    .into_iter()
                    .take(if i % 7 == 0 { 2 } else { 1 })
                    .collect(),
            };
            let mut img = image(
                &format!("{i:04}"),
                &[],
                i64::try_from(next() % 120).unwrap(),
            );
            img.tags = tags;
            img
        })
        .collect()
}

/// Properties the documented semantics imply, checked on generated image sets: a count rule
/// leaves exactly N of its images unexpired by itself; an image a higher rule identified is
/// never expired by a lower one; untagged rules touch only untagged images.
#[test]
fn generated_image_sets_keep_the_documented_invariants() {
    let p = policy(&[
        rule(
            1,
            r#"{"tagStatus":"tagged","tagPatternList":["v*.*.*"],"countType":"imageCountMoreThan","countNumber":5}"#,
        ),
        rule(
            2,
            r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7}"#,
        ),
        rule(
            3,
            r#"{"tagStatus":"tagged","tagPrefixList":["pr-"],"countType":"imageCountMoreThan","countNumber":10}"#,
        ),
        rule(
            4,
            r#"{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":90}"#,
        ),
    ]);
    for seed in 1..=20 {
        let images = generated(seed, 200);
        let result = evaluate(&p, &images, now());
        assert_eq!(result.decisions.len(), images.len());
        let by_digest: HashMap<&str, &Image> =
            images.iter().map(|i| (i.digest.as_str(), i)).collect();
        let releases: Vec<&Image> = images
            .iter()
            .filter(|i| i.tags.iter().any(|t| shared::ecr::tag_matches("v*.*.*", t)))
            .collect();
        let expired_releases = result
            .decisions
            .iter()
            .filter(|d| d.outcome == Outcome::Expire && d.rule == Some(1))
            .count();
        assert_eq!(
            expired_releases,
            releases.len().saturating_sub(5),
            "seed {seed}"
        );
        for d in &result.decisions {
            let img = by_digest[d.digest.as_str()];
            if d.outcome == Outcome::Expire {
                let acting = p.rules.iter().find(|r| Some(r.priority) == d.rule).unwrap();
                assert!(tags_match(acting, &img.tags), "seed {seed}: {d:?}");
                for higher in p.rules.iter().filter(|r| r.priority < acting.priority) {
                    assert!(
                        !tags_match(higher, &img.tags),
                        "seed {seed}: rule {} identified {d:?}",
                        higher.priority
                    );
                }
                if acting.priority == 2 {
                    assert!(img.tags.is_empty() && age_days(now(), img.pushed_at) > 7);
                }
                if acting.priority == 4 {
                    assert!(age_days(now(), img.pushed_at) > 90);
                }
            }
        }
    }
}

#[test]
fn images_a_manifest_list_references_are_kept() {
    let mut index = image("index", &["v1.0.0"], 3);
    index.manifests = vec!["sha256:amd64".into(), "sha256:arm64".into()];
    let images = vec![
        index,
        image("amd64", &[], 30),
        image("arm64", &[], 30),
        image("loose", &[], 30),
    ];
    let p = policy(&[rule(
        1,
        r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7}"#,
    )]);
    let result = evaluate(&p, &images, now());
    assert_eq!(with(&result, Outcome::Expire), ["loose"]);
    let child = result
        .decisions
        .iter()
        .find(|d| d.digest == "sha256:amd64")
        .unwrap();
    assert!(
        child.reason.contains("manifest list index references it"),
        "{}",
        child.reason
    );
}

#[test]
fn keep_rules_protect_their_tags_and_risky_expiries_are_warned() {
    let flags = crate::build::Flags {
        keep: vec!["latest".into()],
        rules: vec!["any count>1".into()],
        ..Default::default()
    };
    let p = crate::build::build(&flags).unwrap();
    assert_eq!(p.validate(), Vec::new());
    let images = vec![
        image("new", &["dev"], 1),
        image("mid", &["latest"], 5),
        image("old", &["v2.0.1"], 9),
    ];
    let result = evaluate(&p, &images, now());
    assert_eq!(with(&result, Outcome::Expire), ["old"]);
    assert_eq!(with(&result, Outcome::Keep), ["mid", "new"]);
    assert!(
        result
            .warnings
            .iter()
            .any(|w| w == "rule 2 would expire old tagged v2.0.1"),
        "{:?}",
        result.warnings
    );
}

#[test]
fn archive_rules_move_then_expire() {
    let mut archived_long = image("arch-old", &["v0.1.0"], 400);
    archived_long.storage = StorageClass::Archive;
    archived_long.archived_at = Some(now() - chrono::Duration::days(200));
    let mut archived_recent = image("arch-new", &["v0.2.0"], 300);
    archived_recent.storage = StorageClass::Archive;
    archived_recent.archived_at = Some(now() - chrono::Duration::days(100));
    let mut pulled = image("pulled", &["v0.3.0"], 200);
    pulled.last_pulled = Some(now() - chrono::Duration::days(2));
    let images = vec![
        archived_long,
        archived_recent,
        pulled,
        image("idle", &["v0.4.0"], 60),
    ];
    let p = crate::build::build(&crate::build::Flags {
        rules: vec![
            "pattern=v* pulled>30d archive".into(),
            "any archived>180d".into(),
        ],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(p.validate(), Vec::new());
    let result = evaluate(&p, &images, now());
    assert_eq!(with(&result, Outcome::Archive), ["idle"]);
    assert_eq!(with(&result, Outcome::Expire), ["arch-old"]);
    assert_eq!(with(&result, Outcome::Keep), ["arch-new", "pulled"]);
}

#[test]
fn rules_that_select_nothing_are_warned() {
    let p = policy(&[rule(
        1,
        r#"{"tagStatus":"tagged","tagPrefixList":["nope"],"countType":"imageCountMoreThan","countNumber":1}"#,
    )]);
    let result = evaluate(&p, &doc_repository(), now());
    assert_eq!(
        result.warnings,
        ["rule 1 (tagged prefix [nope], imageCountMoreThan 1, expire) selects no image"]
    );
    let shadow = policy(&[
        rule(
            1,
            r#"{"tagStatus":"tagged","tagPrefixList":["prod"],"countType":"imageCountMoreThan","countNumber":5}"#,
        ),
        rule(
            2,
            r#"{"tagStatus":"tagged","tagPrefixList":["prod-eu"],"countType":"imageCountMoreThan","countNumber":1}"#,
        ),
    ]);
    assert_eq!(static_warnings(&shadow).len(), 1);
}

#[test]
fn images_files_in_aws_cli_shapes() {
    let v2 = r#"{"imageDetails":[{"imageDigest":"sha256:a","imageTags":["x"],"imagePushedAt":"2025-06-01T00:00:00+00:00"},{"imageDigest":"sha256:b","imagePushedAt":1748736000.5,"imageStatus":"ARCHIVED","lastArchivedAt":1748736000}]}"#;
    let images = parse_images(v2).unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(images[0].tags, ["x"]);
    assert_eq!(images[1].storage, StorageClass::Archive);
    assert_eq!(images[0].pushed_at, images[1].pushed_at);
    let lines = "{\"imageDigest\":\"sha256:a\",\"imagePushedAt\":\"2025-06-01T00:00:00Z\"}\n{\"imageDigest\":\"sha256:b\",\"imagePushedAt\":\"2025-06-01T00:00:00Z\",\"manifests\":[\"sha256:a\"]}\n";
    assert_eq!(parse_images(lines).unwrap()[1].manifests, ["sha256:a"]);
    assert!(
        parse_images(r#"[{"imageDigest":"sha256:a"}]"#)
            .unwrap_err()
            .contains("imagePushedAt is required")
    );
    assert!(
        parse_images(r#"[{"imageDigest":"sha256:a","imagePushedAt":"yesterday"}]"#)
            .unwrap_err()
            .contains("image 1: imagePushedAt")
    );
}

#[test]
fn images_with_the_same_digest_are_counted_apart() {
    // The local ECR API server gives every image one digest; each is still its own image.
    let images: Vec<Image> = ["v1", "v2", "v3"]
        .iter()
        .enumerate()
        .map(|(i, tag)| image("same", &[tag], 3 - i64::try_from(i).unwrap()))
        .collect();
    let p = policy(&[rule(
        1,
        r#"{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":1}"#,
    )]);
    let result = evaluate(&p, &images, now());
    let outcomes: Vec<(&str, Outcome)> = result
        .decisions
        .iter()
        .map(|d| (d.tags[0].as_str(), d.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("v3", Outcome::Keep),
            ("v2", Outcome::Expire),
            ("v1", Outcome::Expire)
        ]
    );
}

#[test]
fn release_tags() {
    for (tag, expected) in [
        ("latest", true),
        ("v1.2.3", true),
        ("1.2", true),
        ("release-2025", true),
        ("v1", false),
        ("pr-12", false),
        ("sha-1.x", false),
    ] {
        assert_eq!(is_protected_tag(tag), expected, "{tag}");
    }
}

#[test]
fn ecr_preview_differences_are_named() {
    let decision = |digest: &str, outcome, rule| Decision {
        digest: digest.into(),
        tags: vec![],
        outcome,
        rule,
        reason: String::new(),
    };
    let local = Preview {
        decisions: vec![
            decision("sha256:a", Outcome::Keep, Some(1)),
            decision("sha256:b", Outcome::Expire, Some(2)),
            decision("sha256:c", Outcome::Expire, Some(2)),
            decision("sha256:d", Outcome::Archive, Some(3)),
        ],
        warnings: vec![],
    };
    let action = |digest: &str, outcome, rule| EcrAction {
        digest: digest.into(),
        outcome,
        rule: Some(rule),
    };
    // ECR agrees: kept images are absent from its results.
    let same = [
        action("sha256:b", Outcome::Expire, 2),
        action("sha256:c", Outcome::Expire, 2),
        action("sha256:d", Outcome::Archive, 3),
    ];
    assert!(differences(&local, &same).is_empty());
    assert_eq!(ecr_value(&same, &[])["agrees"], true);
    // ECR keeps c, expires a, names another rule for d, and knows an image we do not.
    let other = [
        action("sha256:a", Outcome::Expire, 4),
        action("sha256:b", Outcome::Expire, 2),
        action("sha256:d", Outcome::Archive, 1),
        action("sha256:e", Outcome::Expire, 2),
    ];
    let found = differences(&local, &other);
    let digests: Vec<&str> = found.iter().map(|d| d.digest.as_str()).collect();
    assert_eq!(digests, ["sha256:a", "sha256:c", "sha256:d", "sha256:e"]);
    assert_eq!(found[1].ecr, (Outcome::Keep, None));
    assert_eq!(found[1].local, (Outcome::Expire, Some(2)));
    let value = ecr_value(&other, &found);
    assert_eq!(value["agrees"], false);
    assert_eq!(value["expire"], 3);
    assert_eq!(value["differences"][0]["ecr"]["rule"], 4);
}
