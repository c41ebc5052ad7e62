//! img-push's unit tests.

mod units {
    use crate::Cli;

    use crate::engine::classify_push_error;
    use crate::engine::digest_in_status;
    use crate::immutability::ecr_tag_immutable;

    use crate::retag::retag_reason;
    use crate::target::Target;
    use crate::target::parse_reference;
    use crate::target::target;
    use clap::Parser;
    use serde_json::{Value, json};
    use shared::Document;
    use shared::exit;

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["img-push"];
        all.extend_from_slice(args);
        Cli::parse_from(all)
    }

    fn doc(value: Value) -> Document {
        Document::from_value(value, "test").unwrap()
    }

    #[test]
    fn references_split_into_registry_repository_and_tag() {
        let cases = [
            (
                "127.0.0.1:5000/my-app:1.0",
                ("127.0.0.1:5000", "my-app", "1.0"),
            ),
            ("localhost/team/app", ("localhost", "team/app", "latest")),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/a/b:c",
                ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "a/b", "c"),
            ),
        ];
        for (reference, (host, repo, tag)) in cases {
            let parsed = parse_reference(reference).unwrap();
            assert_eq!(
                parsed,
                (host.into(), repo.into(), tag.into()),
                "{reference}"
            );
        }
        let digest = format!("sha256:{}", "a".repeat(64));
        for bad in [
            "my-app:1.0",
            "team/app:1",
            &format!("r.example/app@{digest}"),
            "r.example/app@sha256:abc",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:443@other.host/app:1",
            "r.example/../other:1",
            "r.example/app:1\nx",
        ] {
            assert_eq!(
                parse_reference(bad).unwrap_err().code(),
                exit::DATA,
                "{bad}"
            );
        }
    }

    #[test]
    fn targets_come_from_flags_then_references_then_tags() {
        let d = doc(json!({
            "registry": "r.example", "repository": "app", "tags": ["a", "b"],
            "references": ["r.example/app:x", "r.example/app:y", "r.example/app:x"]
        }));
        assert_eq!(target(&cli(&[]), &d).unwrap().tags, ["x", "y"]);
        let t = target(&cli(&["--tag", "z", "--repository", "other"]), &d).unwrap();
        assert_eq!(
            (t.registry.as_str(), t.repository.as_str()),
            ("r.example", "other")
        );
        assert_eq!(t.tags, ["z"]);
        let d = doc(json!({"registry": "r.example", "repository": "app", "tags": ["a", "b"]}));
        assert_eq!(target(&cli(&[]), &d).unwrap().tags, ["a", "b"]);
        let cases = [
            (json!({"repository": "app", "tags": ["a"]}), "no registry"),
            (
                json!({"registry": "r.example", "tags": ["a"]}),
                "no repository",
            ),
            (
                json!({"registry": "r.example", "repository": "app"}),
                "no tags",
            ),
            (
                json!({"registry": "r.example", "repository": "App", "tags": ["a"]}),
                "not valid",
            ),
            (
                json!({"registry": "r.example", "repository": "app", "tags": ["-a"]}),
                "not valid",
            ),
            (
                json!({"references": ["r.example/app:1", "r.example/other:1"]}),
                "more than one repository",
            ),
        ];
        for (value, why) in cases {
            let err = target(&cli(&[]), &doc(value.clone())).unwrap_err();
            assert_eq!(err.code(), exit::DATA, "{value}");
            assert!(err.message().contains(why), "{value}: {}", err.message());
        }
    }

    #[test]
    fn ecr_mutability_with_exclusions() {
        let ex = vec!["latest".to_owned(), "dev-*".to_owned()];
        let cases = [
            ("MUTABLE", "1.0", false),
            ("IMMUTABLE", "latest", true),
            ("IMMUTABLE_WITH_EXCLUSION", "latest", false),
            ("IMMUTABLE_WITH_EXCLUSION", "dev-42", false),
            ("IMMUTABLE_WITH_EXCLUSION", "1.0", true),
            ("MUTABLE_WITH_EXCLUSION", "dev-1", true),
            ("MUTABLE_WITH_EXCLUSION", "1.0", false),
        ];
        for (mutability, tag, immutable) in cases {
            assert_eq!(
                ecr_tag_immutable(mutability, &ex, tag),
                immutable,
                "{mutability} {tag}"
            );
        }
    }

    #[test]
    fn push_stream_digests_and_errors() {
        let hex = "a".repeat(64);
        assert_eq!(
            digest_in_status(&format!("1.0: digest: sha256:{hex} size: 527")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(digest_in_status("Pushed"), None);
        assert_eq!(digest_in_status("x: digest: sha256:XYZ size: 1"), None);
        let target = Target {
            registry: "127.0.0.1:5001".into(),
            repository: "app".into(),
            tags: vec!["1".into()],
        };
        let cases = [
            ("no basic auth credentials", exit::NO_PERM, "refused"),
            (
                "unauthorized: authentication required",
                exit::NO_PERM,
                "refused",
            ),
            (
                "denied: requested access to the resource is denied",
                exit::NO_PERM,
                "denied",
            ),
            (
                "tag invalid: The image tag '1' already exists in the 'app' repository and cannot be overwritten because the repository is immutable.",
                exit::CONFLICT,
                "refused to move tag 1",
            ),
            (
                "name unknown: The repository with name 'app' does not exist in the registry with id '1'",
                exit::DATA,
                "repository app does not exist in registry 127.0.0.1:5001",
            ),
            (
                "EOF",
                exit::UNAVAILABLE,
                "registry 127.0.0.1:5001 did not take 127.0.0.1:5001/app:1: EOF",
            ),
            (
                "Get \"http://127.0.0.1:5001/v2/\": dial tcp 127.0.0.1:5001: connect: connection refused",
                exit::UNAVAILABLE,
                "connection refused",
            ),
            (
                "received unexpected HTTP status: 502 Bad Gateway",
                exit::UNAVAILABLE,
                "502",
            ),
        ];
        for (text, code, words) in cases {
            let err = classify_push_error(text, &target, "1");
            assert_eq!(err.code(), code, "{text}");
            assert!(err.message().contains(words), "{text}: {}", err.message());
        }
    }

    #[test]
    fn retag_when_asked_or_when_the_build_was_skipped() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let cases = [
            (vec![], json!({}), None),
            (vec!["--retag"], json!({}), Some("--retag")),
            (vec!["--from", "sha-1"], json!({}), Some("--retag")),
            (
                vec![],
                json!({"digest": digest, "image_id": "sha256:1", "build": {"skipped": true}}),
                Some("img-build skipped the build"),
            ),
            (
                vec![],
                json!({"digest": digest}),
                Some("the document has a digest and no local image"),
            ),
            (
                vec![],
                json!({"digest": digest, "image_id": "sha256:1"}),
                None,
            ),
            (vec!["--image", "x"], json!({"digest": digest}), None),
            (
                vec![],
                json!({"digest": digest, "image_id": "sha256:1", "build": {"skipped": false}}),
                None,
            ),
        ];
        for (args, value, want) in cases {
            let got = retag_reason(&cli(&args), &doc(value.clone()));
            assert_eq!(got.as_deref(), want, "{args:?} {value}");
        }
    }
}

mod progress {

    use crate::engine::Progress;

    #[test]
    fn a_retry_countdown_is_announced_once() {
        let mut progress = Progress::new("x".into());
        let mut announced = Vec::new();
        for n in [5, 5, 4, 3, 2, 1, 10, 10, 9, 1] {
            if progress.retry_announced(&format!("Retrying in {n} seconds")) {
                announced.push(n);
            }
        }
        assert_eq!(announced, [5, 10]);
    }
}
