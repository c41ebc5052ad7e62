//! Digest references, the children's repository and platforms, and the list's bytes, checked without a registry.

use super::*;

fn cli(args: &[&str]) -> Cli {
    let mut all = vec!["img-manifest"];
    all.extend_from_slice(args);
    Cli::parse_from(all)
}

#[test]
fn digest_references_split_and_bad_ones_are_refused() {
    let hex = "a".repeat(64);
    let (host, repo, named) =
        parse_image_reference(&format!("127.0.0.1:5000/team/app:1@sha256:{hex}")).unwrap();
    assert_eq!(
        (host.as_str(), repo.as_str(), named),
        (
            "127.0.0.1:5000",
            "team/app",
            Named::Digest(format!("sha256:{hex}"))
        )
    );
    assert_eq!(
        parse_image_reference("127.0.0.1:5000/team/app:1.4-arm64").unwrap(),
        (
            "127.0.0.1:5000".to_owned(),
            "team/app".to_owned(),
            Named::Tag("1.4-arm64".into())
        )
    );
    for bad in [
        "127.0.0.1:5000/app".to_owned(),
        "127.0.0.1:5000/app:bad/tag".to_owned(),
        format!("app@sha256:{hex}"),
        "127.0.0.1:5000/app@sha256:abc".to_owned(),
    ] {
        assert_eq!(
            parse_image_reference(&bad).unwrap_err().code(),
            exit::DATA,
            "{bad}"
        );
    }
}

#[test]
fn children_come_from_one_repository() {
    let hex = "b".repeat(64);
    let doc = |repo: &str| {
        Document::from_value(
            json!({"registry": "r.example", "repository": repo, "digest": format!("sha256:{hex}"), "tags": ["1"]}),
            "t",
        )
        .unwrap()
    };
    let refs = child_refs(&cli(&[]), &[doc("app"), doc("app")]).unwrap();
    assert_eq!(refs.len(), 2);
    let err = child_refs(&cli(&[]), &[doc("app"), doc("other")]).unwrap_err();
    assert_eq!(err.code(), exit::DATA);
    assert!(
        err.message().contains("r.example/app") && err.message().contains("r.example/other"),
        "{}",
        err.message()
    );
    assert_eq!(child_refs(&cli(&[]), &[]).unwrap_err().code(), exit::DATA);
    assert_eq!(tags(&cli(&[]), &[doc("app")]).unwrap(), ["1"]);
    assert_eq!(
        tags(&cli(&["-t", "x", "-t", "x"]), &[doc("app")]).unwrap(),
        ["x"]
    );
}
