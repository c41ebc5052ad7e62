//! `lifecycle-set` against the ECR API server, checked with aws-cli (a client we did not write).

use serde_json::{Value, json};

use crate::harness::{aws_cli, tool, unique};

fn repository() -> String {
    let name = unique("lifecycle");
    tool("ecr-repo")
        .args(["--repository", &name, "-q"])
        .run()
        .success();
    name
}

/// The policy text the repository has, as aws-cli reads it (None when it has none).
fn policy_text(name: &str) -> Option<String> {
    let (ok, text) = aws_cli(&["ecr", "get-lifecycle-policy", "--repository-name", name]);
    if !ok {
        assert!(text.contains("LifecyclePolicyNotFoundException"), "{text}");
        return None;
    }
    let value: Value = serde_json::from_str(&text).unwrap();
    Some(value["lifecyclePolicyText"].as_str().unwrap().to_owned())
}

const SEED: [&str; 6] = [
    "--keep-last",
    "20",
    "--tag-prefix",
    "v",
    "--expire-untagged-after",
    "14",
];

#[test]
fn a_policy_is_applied_read_back_identically_and_not_rewritten() {
    let name = repository();
    let out = tool("lifecycle-set")
        .args(["--repository", &name])
        .args(SEED)
        .run();
    let doc = out.success().document();
    assert_eq!(doc["lifecycle"]["written"], true, "{out:?}");
    let written = doc["lifecycle"]["policy"].to_string();
    assert_eq!(policy_text(&name).as_deref(), Some(written.as_str()));
    assert_eq!(
        doc["lifecycle"]["policy"]["rules"][1]["selection"],
        json!({"tagStatus": "tagged", "tagPrefixList": ["v"], "countType": "imageCountMoreThan", "countNumber": 20})
    );

    let out = tool("lifecycle-set")
        .args(["--repository", &name])
        .args(SEED)
        .run();
    let again = out.success().document();
    assert_eq!(again["lifecycle"]["written"], false);
    assert_eq!(again["lifecycle"]["changed"], false);
    assert!(out.stderr.contains("is up to date"), "{out:?}");

    // The same rules in another order and spelling (pretty, reordered keys, explicit default
    // storage class) are the same policy: nothing is written.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lifecycle.json");
    let mut reordered: Value = serde_json::from_str(&written).unwrap();
    reordered["rules"].as_array_mut().unwrap().reverse();
    reordered["rules"][0]["selection"]["storageClass"] = json!("standard");
    std::fs::write(&file, serde_json::to_string_pretty(&reordered).unwrap()).unwrap();
    let doc = tool("lifecycle-set")
        .args(["--repository", &name, "--policy"])
        .args([file.to_str().unwrap()])
        .run()
        .success()
        .document();
    assert_eq!(doc["lifecycle"]["written"], false);
    assert_eq!(policy_text(&name).as_deref(), Some(written.as_str()));
}

#[test]
fn check_exits_1_on_drift_and_changes_nothing() {
    let name = repository();
    // No policy yet: drift.
    let out = tool("lifecycle-set")
        .args(["--repository", &name, "--check"])
        .args(SEED)
        .run();
    let doc = out.code(1).document();
    assert_eq!(doc["lifecycle"]["changed"], true);
    assert_eq!(doc["lifecycle"]["written"], false);
    assert_eq!(policy_text(&name), None);

    tool("lifecycle-set")
        .args(["--repository", &name])
        .args(SEED)
        .run()
        .success();
    tool("lifecycle-set")
        .args(["--repository", &name, "--check"])
        .args(SEED)
        .run()
        .success();

    let before = policy_text(&name);
    let out = tool("lifecycle-set")
        .args([
            "--repository",
            &name,
            "--check",
            "--keep-last",
            "30",
            "--tag-prefix",
            "v",
            "--expire-untagged-after",
            "14",
        ])
        .run();
    let doc = out.code(1).document();
    let changes: Vec<&str> = doc["lifecycle"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        changes.contains(&"~ rule 2 selection.countNumber: 20 -> 30"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("~ rule 2 selection.countNumber: 20 -> 30"),
        "the difference is shown on stderr{out:?}"
    );
    assert_eq!(policy_text(&name), before);
}

#[test]
fn policies_ecr_would_refuse_are_refused_before_any_call() {
    let name = repository();
    // The local ECR API server accepts this (tagged, no tag list); ECR does not.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    std::fs::write(
        &file,
        r#"{"rules":[{"rulePriority":1,"description":"tagged without a list","selection":{"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":3},"action":{"type":"expire"}}]}"#,
    )
    .unwrap();
    tool("lifecycle-set")
        .args(["--repository", &name, "--policy"])
        .args([file.to_str().unwrap()])
        .run()
        .fails(
            65,
            &[
                "rules[0] (rulePriority 1): selection",
                "tagPrefixList or tagPatternList",
            ],
        );
    assert_eq!(policy_text(&name), None);

    tool("lifecycle-set")
        .args([
            "--repository",
            &name,
            "--rule",
            "any count>5",
            "--rule",
            "untagged pushed>3d",
        ])
        .run()
        .fails(
            65,
            &["rules[0] (rulePriority 1): rulePriority", "tagStatus any"],
        );
    tool("lifecycle-set")
        .args([
            "--repository",
            &name,
            "--rule",
            "pattern=a*b*c*d*e*f count>1",
        ])
        .run()
        .fails(65, &["selection.tagPatternList[0]", "at most 4"]);
    tool("lifecycle-set")
        .args([
            "--repository",
            &name,
            "--policy",
            "/nonexistent/lifecycle.json",
        ])
        .run()
        .fails(66, &["reading policy file /nonexistent/lifecycle.json"]);
    tool("lifecycle-set")
        .args(["--repository", &name])
        .run()
        .fails(2, &["no policy given", "--policy"]);
}

#[test]
fn several_repositories_from_flags_and_a_policy_on_stdin() {
    let names = [repository(), repository()];
    let policy = r#"{"rules":[{"rulePriority":1,"description":"Expire untagged images after 3 days","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":3},"action":{"type":"expire"}}]}"#;
    let out = tool("lifecycle-set")
        .args([
            "--repository",
            &names[0],
            "--repository",
            &names[1],
            "--policy",
            "-",
        ])
        .stdin(policy)
        .run();
    let docs = out.success().documents();
    assert_eq!(docs.len(), 2);
    for (doc, name) in docs.iter().zip(&names) {
        assert_eq!(doc["repository"], name.as_str());
        assert_eq!(doc["lifecycle"]["written"], true);
        assert_eq!(policy_text(name).as_deref(), Some(policy));
    }
    // An NDJSON stream of documents, e.g. from ecr-repo.
    let stream = format!(
        "{{\"repository\":\"{}\"}}\n{{\"repository\":\"{}\"}}\n",
        names[0], names[1]
    );
    let docs = tool("lifecycle-set")
        .args(["--rule", "untagged pushed>3d"])
        .stdin(stream)
        .run()
        .success()
        .documents();
    assert_eq!(docs.len(), 2);
    assert!(docs.iter().all(|d| d["lifecycle"]["changed"] == true));
}

#[test]
fn dry_run_prints_the_policy_without_aws() {
    let out = tool("lifecycle-set")
        .args([
            "--keep",
            "latest",
            "--rule",
            "untagged pushed>14d",
            "--dry-run",
            "--field",
            "lifecycle.policy",
        ])
        .env("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:9")
        .env_remove("AWS_ACCESS_KEY_ID")
        .run();
    out.success();
    let policy: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        policy["rules"][0]["selection"]["tagPatternList"],
        json!(["latest"])
    );
    assert_eq!(policy["rules"][1]["selection"]["tagStatus"], "untagged");
}

/// AWS's "Filtering on multiple rules" example A, from an images file, with a fixed clock.
#[test]
fn preview_of_an_images_file_reproduces_the_aws_example() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images.json");
    std::fs::write(
        &images,
        json!({"imageDetails": [
            {"imageDigest": "sha256:aaaa", "imageTags": ["beta-1", "prod-1"], "imagePushedAt": "2025-06-20T12:00:00Z"},
            {"imageDigest": "sha256:bbbb", "imageTags": ["beta-2", "prod-2"], "imagePushedAt": "2025-06-21T12:00:00Z"},
            {"imageDigest": "sha256:cccc", "imageTags": ["beta-3"], "imagePushedAt": "2025-06-22T12:00:00Z"},
        ]})
        .to_string(),
    )
    .unwrap();
    let doc = tool("lifecycle-set")
        .args([
            "--rule",
            "pattern=prod* count>1",
            "--rule",
            "pattern=beta* count>1",
            "--preview",
            "--now",
            "2025-06-30T12:00:00Z",
            "--images",
        ])
        .args([images.to_str().unwrap()])
        .run()
        .success()
        .document();
    let preview = &doc["lifecycle"]["preview"];
    assert_eq!(preview["now"], "2025-06-30T12:00:00Z");
    let decisions: Vec<(&str, &str, Value)> = preview["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["digest"].as_str().unwrap(),
                i["decision"].as_str().unwrap(),
                i["rule"].clone(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("sha256:cccc", "keep", json!(2)),
            ("sha256:bbbb", "keep", json!(1)),
            ("sha256:aaaa", "expire", json!(1)),
        ]
    );
}

/// A preview of the repository's own images (DescribeImages), which says that the server has
/// no preview API of its own.
#[test]
fn preview_of_the_repository_images() {
    let name = repository();
    for (i, tag) in ["v1", "v2", "v3"].iter().enumerate() {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": format!("sha256:{:064x}", i + 1)},
            "layers": []
        })
        .to_string();
        let (ok, text) = aws_cli(&[
            "ecr",
            "put-image",
            "--repository-name",
            &name,
            "--image-tag",
            tag,
            "--image-manifest",
            &manifest,
        ]);
        assert!(ok, "{text}");
    }
    let out = tool("lifecycle-set")
        .args([
            "--repository",
            &name,
            "--preview",
            "--rule",
            "prefix=v count>1",
        ])
        .run();
    let doc = out.success().document();
    let preview = &doc["lifecycle"]["preview"];
    assert_eq!(preview["source"], "DescribeImages");
    assert_eq!(
        (preview["expire"].clone(), preview["keep"].clone()),
        (json!(2), json!(1))
    );
    assert!(
        out.stderr.contains("preview API is not available"),
        "{out:?}"
    );
    // Without ECR's answer there is nothing to compare with.
    assert!(preview.get("ecr").is_none(), "{preview}");
    assert_eq!(policy_text(&name), None, "a preview applies nothing");

    // --ecr-preview-timeout 0 does not ask ECR at all.
    let out = tool("lifecycle-set")
        .args([
            "--repository",
            &name,
            "--preview",
            "--ecr-preview-timeout",
            "0",
            "--rule",
            "prefix=v count>1",
        ])
        .run();
    let doc = out.success().document();
    assert_eq!(doc["lifecycle"]["preview"]["expire"], 2);
    assert!(!out.stderr.contains("preview API"), "{out:?}");
}
