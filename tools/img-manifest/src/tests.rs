//! Digest references, the children's repository and platforms, and the list's bytes, checked without a registry.

use super::*;
use shared::media::OCI_MANIFEST;

fn cli(args: &[&str]) -> Cli {
    let mut all = vec!["img-manifest"];
    all.extend_from_slice(args);
    Cli::parse_from(all)
}

fn child(os: &str, arch: &str, variant: Option<&str>, digest: char) -> Child {
    Child {
        platform: Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
            os_version: None,
        },
        digest: format!("sha256:{}", digest.to_string().repeat(64)),
        media_type: DOCKER_MANIFEST.into(),
        size: 528,
    }
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

#[test]
fn platforms_come_from_the_configuration() {
    let p = Platform::from_config(
        br#"{"os":"linux","architecture":"arm64","variant":"v8","rootfs":{}}"#,
        "x",
    )
    .unwrap();
    assert_eq!(p.name(), "linux/arm64/v8");
    let p = Platform::from_config(
        br#"{"os":"windows","architecture":"amd64","os.version":"10.0.17763.1"}"#,
        "x",
    )
    .unwrap();
    assert_eq!(p.os_version.as_deref(), Some("10.0.17763.1"));
    assert_eq!(
        p.descriptor(),
        json!({"architecture":"amd64","os":"windows","os.version":"10.0.17763.1"})
    );
    assert!(Platform::from_config(br#"{"os":"linux"}"#, "x").is_err());
}

#[test]
fn lists_are_sorted_deterministic_and_refuse_duplicates() {
    let mut a = vec![
        child("linux", "arm64", Some("v8"), 'b'),
        child("linux", "amd64", None, 'a'),
    ];
    let mut b = vec![a[1].clone(), a[0].clone()];
    sort_children(&mut a).unwrap();
    sort_children(&mut b).unwrap();
    assert_eq!(
        index_bytes(Format::Docker, &a),
        index_bytes(Format::Docker, &b)
    );
    let value: Value = serde_json::from_slice(&index_bytes(Format::Oci, &a)).unwrap();
    assert_eq!(value["mediaType"], OCI_INDEX);
    assert_eq!(
        value["manifests"][0]["platform"],
        json!({"architecture":"amd64","os":"linux"})
    );
    assert_eq!(value["manifests"][1]["size"], 528);
    let mut dup = vec![
        child("linux", "amd64", None, 'a'),
        child("linux", "amd64", None, 'c'),
    ];
    let err = sort_children(&mut dup).unwrap_err();
    assert!(err.message().contains(&"a".repeat(64)) && err.message().contains(&"c".repeat(64)));
    assert_eq!(
        Format::matching([DOCKER_MANIFEST, DOCKER_MANIFEST]),
        Format::Docker
    );
    assert_eq!(
        Format::matching([DOCKER_MANIFEST, OCI_MANIFEST]),
        Format::Oci
    );
}
