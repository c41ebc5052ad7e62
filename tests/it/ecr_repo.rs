//! `ecr-repo` against the ECR API server, checked with aws-cli (a client we did not write).

use serde_json::Value;

use crate::harness::{aws_cli, tool, unique};

fn describe(name: &str) -> Value {
    let (ok, text) = aws_cli(&["ecr", "describe-repositories", "--repository-names", name]);
    assert!(ok, "aws-cli could not describe {name}: {text}");
    let value: Value = serde_json::from_str(&text).unwrap();
    value["repositories"][0].clone()
}

#[test]
fn creates_a_repository_once_then_leaves_it_unchanged() {
    let name = unique("repo-create");
    let args = [
        "--repository",
        &name,
        "--tag-mutability",
        "immutable",
        "--tag",
        "team=platform",
    ];
    let doc = tool("ecr-repo").args(args).run().success().document();
    assert_eq!(doc["repository_settings"]["created"], true);
    assert_eq!(doc["repository_settings"]["scan_on_push"], true);
    assert_eq!(doc["repository_settings"]["tag_mutability"], "IMMUTABLE");
    assert_eq!(doc["region"], "us-east-1");

    let seen = describe(&name);
    assert_eq!(seen["repositoryUri"], doc["repository_uri"]);
    assert_eq!(seen["repositoryArn"], doc["repository_arn"]);
    assert_eq!(seen["imageScanningConfiguration"]["scanOnPush"], true);
    assert_eq!(seen["imageTagMutability"], "IMMUTABLE");
    assert_eq!(seen["encryptionConfiguration"]["encryptionType"], "AES256");
    let uri = doc["repository_uri"].as_str().unwrap();
    assert_eq!(
        doc["registry"].as_str().unwrap(),
        uri.split('/').next().unwrap()
    );

    let arn = doc["repository_arn"].as_str().unwrap();
    let (ok, tags) = aws_cli(&["ecr", "list-tags-for-resource", "--resource-arn", arn]);
    assert!(ok && tags.contains("\"platform\""), "{tags}");

    let out = tool("ecr-repo").args(args).run();
    let again = out.success().document();
    assert_eq!(again["repository_settings"]["created"], false);
    assert_eq!(
        again["repository_settings"]["changed"],
        serde_json::json!([])
    );
    assert!(out.stderr.contains("is up to date"), "{out:?}");
}

#[test]
fn brings_an_existing_repository_in_line() {
    let name = unique("repo-update");
    // Created without scanning, then switched on. (The other direction is not shown here: the
    // SDK leaves `scanOnPush: false` out of the request as the default, which ECR reads as false
    // but the local ECR API server ignores.)
    tool("ecr-repo")
        .args(["--repository", &name, "--no-scan-on-push"])
        .run()
        .success();
    assert_eq!(
        describe(&name)["imageScanningConfiguration"]["scanOnPush"],
        false
    );
    let doc = tool("ecr-repo")
        .args([
            "--repository",
            &name,
            "--scan-on-push",
            "--tag-mutability",
            "immutable",
            "--tag",
            "env=ci",
        ])
        .run()
        .success()
        .document();
    let changed: Vec<&str> = doc["repository_settings"]["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        changed,
        [
            "scan_on_push=true",
            "tag_mutability=IMMUTABLE",
            "tag env=ci"
        ]
    );
    let seen = describe(&name);
    assert_eq!(seen["imageScanningConfiguration"]["scanOnPush"], true);
    assert_eq!(seen["imageTagMutability"], "IMMUTABLE");
    // Settings not given are left alone.
    let doc = tool("ecr-repo")
        .args(["--repository", &name])
        .run()
        .success()
        .document();
    assert_eq!(doc["repository_settings"]["scan_on_push"], true);
    assert_eq!(doc["repository_settings"]["tag_mutability"], "IMMUTABLE");
    assert_eq!(doc["repository_settings"]["changed"], serde_json::json!([]));
}

#[test]
fn tag_mutability_takes_exception_filters() {
    let name = unique("repo-except");
    let args = [
        "--repository",
        &name,
        "--tag-mutability",
        "immutable",
        "--mutability-exception",
        "latest",
        "--mutability-exception",
        "dev-*",
    ];
    let doc = tool("ecr-repo").args(args).run().success().document();
    let settings = &doc["repository_settings"];
    assert_eq!(settings["tag_mutability"], "IMMUTABLE_WITH_EXCLUSION");
    assert_eq!(
        settings["mutability_exceptions"],
        serde_json::json!(["latest", "dev-*"])
    );
    let seen = describe(&name);
    assert_eq!(seen["imageTagMutability"], "IMMUTABLE_WITH_EXCLUSION");
    assert_eq!(
        seen["imageTagMutabilityExclusionFilters"],
        serde_json::json!([
            {"filterType": "WILDCARD", "filter": "latest"},
            {"filterType": "WILDCARD", "filter": "dev-*"}
        ])
    );

    // The same flags in another order change nothing.
    let mut reordered = args;
    reordered.swap(5, 7);
    let again = tool("ecr-repo").args(reordered).run().success().document();
    assert_eq!(
        again["repository_settings"]["changed"],
        serde_json::json!([])
    );

    // Dropping the exceptions makes every tag immutable.
    let plain = tool("ecr-repo")
        .args(["--repository", &name, "--tag-mutability", "immutable"])
        .run()
        .success()
        .document();
    assert_eq!(
        plain["repository_settings"]["changed"],
        serde_json::json!(["tag_mutability=IMMUTABLE"])
    );
    let seen = describe(&name);
    assert_eq!(seen["imageTagMutability"], "IMMUTABLE");

    // Mutable with fixed release tags.
    let fixed = tool("ecr-repo")
        .args([
            "--repository",
            &name,
            "--tag-mutability",
            "mutable",
            "--mutability-exception",
            "v*",
        ])
        .run()
        .success()
        .document();
    assert_eq!(
        fixed["repository_settings"]["changed"],
        serde_json::json!(["tag_mutability=MUTABLE_WITH_EXCLUSION except v*"])
    );
    assert_eq!(
        describe(&name)["imageTagMutabilityExclusionFilters"],
        serde_json::json!([{"filterType": "WILDCARD", "filter": "v*"}])
    );

    // ECR's filter grammar and limits are checked before any call.
    tool("ecr-repo")
        .args([
            "--repository",
            &name,
            "--tag-mutability",
            "immutable",
            "--mutability-exception",
            "feature/x",
        ])
        .run()
        .fails(2, &["'feature/x' has '/'"]);
    let mut six = vec!["--repository", &name, "--tag-mutability", "immutable"];
    for pattern in ["a*", "b*", "c*", "d*", "e*", "f*"] {
        six.extend(["--mutability-exception", pattern]);
    }
    tool("ecr-repo")
        .args(six)
        .run()
        .fails(2, &["6 --mutability-exception patterns", "at most 5"]);
    assert_eq!(
        describe(&name)["imageTagMutabilityExclusionFilters"],
        serde_json::json!([{"filterType": "WILDCARD", "filter": "v*"}])
    );
}

#[test]
fn encryption_cannot_change_after_creation() {
    let name = unique("repo-kms");
    tool("ecr-repo")
        .args(["--repository", &name])
        .run()
        .success();
    tool("ecr-repo")
        .args(["--repository", &name, "--encryption", "kms"])
        .run()
        .fails(
            78,
            &[
                "encrypted with AES256, not KMS",
                "fixed when a repository is created",
            ],
        );
}

#[test]
fn invalid_names_are_refused_before_any_call() {
    tool("ecr-repo")
        .args(["--repository", "My_App"])
        .run()
        .fails(65, &["repository name 'My_App' is not valid", "uppercase"]);
    tool("ecr-repo")
        .run()
        .fails(65, &["no repository named", "--repository"]);
}

#[test]
fn configuration_and_service_faults_are_one_clear_line() {
    let name = unique("repo-faults");
    tool("ecr-repo")
        .args(["--repository", &name])
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .run()
        .fails(78, &["no AWS region is set", "--region"]);
    tool("ecr-repo")
        .args(["--repository", &name, "--region", "useast1"])
        .run()
        .fails(78, &["'useast1' is not an AWS region name"]);
    tool("ecr-repo")
        .args(["--repository", &name])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .run()
        .fails(78, &["no AWS credentials found", "AWS_ACCESS_KEY_ID"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    tool("ecr-repo")
        .args(["--repository", &name])
        .env("AWS_ENDPOINT_URL_ECR", &endpoint)
        .env("AWS_MAX_ATTEMPTS", "1")
        .run()
        .fails(69, &[&format!("cannot reach the ECR API at {endpoint}")]);
}

#[test]
fn several_repositories_from_one_command() {
    let names = [unique("repo-many"), unique("repo-many")];
    let out = tool("ecr-repo")
        .args(["--repository", &names[0], "--repository", &names[1]])
        .stdin(r#"{"keep": "me"}"#)
        .run();
    let docs = out.success().documents();
    assert_eq!(docs.len(), 2, "{out:?}");
    for (doc, name) in docs.iter().zip(&names) {
        assert_eq!(doc["repository"], name.as_str());
        assert_eq!(doc["keep"], "me");
        assert_eq!(doc["repository_settings"]["created"], true);
        assert_eq!(describe(name)["repositoryArn"], doc["repository_arn"]);
    }
}

#[test]
fn prints_a_least_privilege_iam_policy_scoped_to_the_repository() {
    let name = unique("repo-iam");
    // Unknown account and no repository yet: the ARN cannot be known.
    tool("ecr-repo")
        .args(["--repository", &name, "--print-iam-policy", "push"])
        .run()
        .fails(
            65,
            &[
                &format!("repository {name} does not exist"),
                "--registry-id",
            ],
        );

    let doc = tool("ecr-repo")
        .args(["--repository", &name])
        .run()
        .success()
        .document();
    let arn = describe(&name)["repositoryArn"].clone();
    assert_eq!(doc["repository_arn"], arn);
    let out = tool("ecr-repo")
        .args([
            "--repository",
            &name,
            "--print-iam-policy",
            "login,push,scan,lifecycle",
        ])
        .run();
    out.success();
    let policy: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(policy["Version"], "2012-10-17");
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 4);
    assert_eq!(
        statements[0]["Action"],
        serde_json::json!(["ecr:GetAuthorizationToken"])
    );
    assert_eq!(statements[0]["Resource"], "*");
    for statement in &statements[1..] {
        assert_eq!(statement["Resource"], serde_json::json!([arn]), "{out:?}");
    }
    assert!(
        statements[1]["Action"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("ecr:PutImage"))
    );

    // With the account given, the ARN is built (the repository need not exist), and documents
    // on stdin name the repositories.
    let out = tool("ecr-repo")
        .args([
            "--print-iam-policy",
            "pull",
            "--registry-id",
            "210987654321",
        ])
        .stdin(r#"{"repository":"team/never-created"}"#)
        .run();
    out.success();
    let policy: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        policy["Statement"][0]["Resource"],
        serde_json::json!(["arn:aws:ecr:us-east-1:210987654321:repository/team/never-created"])
    );
}
