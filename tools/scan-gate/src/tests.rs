//! The policy the flags give, and how the image to wait for is named.

use super::*;

#[test]
fn the_policy_from_flags() {
    let cli = Cli::parse_from(["scan-gate"]);
    assert_eq!(
        cli.policy().fail_on,
        Some(Severity::Critical),
        "fails on CRITICAL by default"
    );
    let cli = Cli::parse_from([
        "scan-gate",
        "--budget",
        "high=5",
        "--budget",
        "critical=1,low=9",
    ]);
    let policy = cli.policy();
    assert_eq!(policy.fail_on, None);
    assert_eq!(policy.limit(Severity::Critical), Some(1));
    assert_eq!(policy.limit(Severity::High), Some(5));
    assert_eq!(policy.limit(Severity::Medium), None);
    let cli = Cli::parse_from(["scan-gate", "--fail-on", "HIGH", "--budget", "high=2"]);
    assert_eq!(cli.policy().limit(Severity::Critical), Some(0));
    assert_eq!(cli.policy().limit(Severity::High), Some(2));
    assert!(Cli::try_parse_from(["scan-gate", "--fail-on", "severe"]).is_err());
    assert!(Cli::try_parse_from(["scan-gate", "--min-score", "11"]).is_err());
    assert!(Cli::try_parse_from(["scan-gate", "--strict-allowlist"]).is_err());
}

#[test]
fn the_image_is_named_by_digest_first() {
    let digest = format!("sha256:{}", "a".repeat(64));
    let doc = Document::from_value(
        json!({"repository": "app", "digest": digest, "tags": ["v1", "latest"]}),
        "test",
    )
    .unwrap();
    let cli = Cli::parse_from(["scan-gate"]);
    let t = target(&cli, &doc).unwrap();
    assert_eq!(
        (t.digest.as_deref(), t.tag.as_deref()),
        (Some(digest.as_str()), Some("v1"))
    );
    let cli = Cli::parse_from(["scan-gate", "--tag", "v2"]);
    let t = target(&cli, &doc).unwrap();
    assert_eq!(
        (t.digest, t.tag.as_deref()),
        (None, Some("v2")),
        "an explicit tag wins"
    );
    let cli = Cli::parse_from(["scan-gate", "--digest", "sha256:12"]);
    assert_eq!(target(&cli, &doc).unwrap_err().code(), exit::DATA);
    let bare = Document::from_value(json!({"repository": "app"}), "test").unwrap();
    let cli = Cli::parse_from(["scan-gate"]);
    assert!(
        target(&cli, &bare)
            .unwrap_err()
            .message()
            .contains("no image named")
    );
}
