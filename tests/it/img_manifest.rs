//! `img-manifest` against the real registries and Docker Engine: two images of different
//! platforms (built FROM scratch with `--platform`, so nothing is pulled) pushed by `img-push`,
//! joined; the registry's own answer (read with curl) and `docker manifest inspect` (clients we
//! did not write) show both platforms; a re-run pushes nothing; wrong input pushes nothing.

use std::process::Command;

use registry::Registry;
use serde_json::{Value, json};
use shared::secret::Credentials;
use shared::secret::Secret;

use crate::harness::{Refs, build_for, registry_manifest, service, tool, unique};

/// Builds and pushes one image per `(platform, tag)` to `registry/repository` with img-push;
/// returns img-push's documents.
fn push_images(
    registry: &str,
    repository: &str,
    images: &[(&str, &str)],
    config: Option<&std::path::Path>,
    refs: &mut Refs,
) -> Vec<Value> {
    let mut docs = Vec::new();
    for (platform, tag) in images {
        let reference = format!("{registry}/{repository}:{tag}");
        let id = build_for(platform, &reference, &unique(&format!("{platform} {tag}")));
        refs.0.push(reference);
        let mut run = tool("img-push").stdin(
            json!({"registry": registry, "repository": repository, "tags": [tag], "image_id": id})
                .to_string(),
        );
        if let Some(config) = config {
            run = run.env("DOCKER_CONFIG", config);
        }
        docs.push(run.run().success().document());
    }
    docs
}

fn ndjson(docs: &[Value]) -> String {
    docs.iter().map(|d| d.to_string() + "\n").collect()
}

/// The registry's answer to a GET of a manifest, by curl: the digest header and the JSON body.
fn registry_get(
    host: &str,
    repository: &str,
    reference: &str,
    user: Option<(&str, &str)>,
) -> Option<(String, Value)> {
    registry_manifest(host, repository, reference, user)
        .map(|served| (served.digest.clone(), served.json()))
}

/// `(os/architecture[/variant], digest)` of each entry of a list or index, sorted.
fn entries(list: &Value) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = list["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut name = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(variant) = p["variant"].as_str() {
                name = format!("{name}/{variant}");
            }
            (name, m["digest"].as_str().unwrap().to_owned())
        })
        .collect();
    entries.sort();
    entries
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario: push, join, read back, re-run"
)]
fn joins_two_platforms_that_the_registry_and_the_docker_cli_read_back() {
    let registry = service("IMGPIPE_REGISTRY");
    let repository = unique("manifest-plain");
    let name = format!("{registry}/{repository}");
    let mut refs = Refs(Vec::new());
    let children = push_images(
        &registry,
        &repository,
        &[("linux/arm64/v8", "arm64"), ("linux/amd64", "amd64")],
        None,
        &mut refs,
    );
    let mut expected = vec![
        (
            "linux/amd64".to_owned(),
            children[1]["digest"].as_str().unwrap().to_owned(),
        ),
        (
            "linux/arm64/v8".to_owned(),
            children[0]["digest"].as_str().unwrap().to_owned(),
        ),
    ];
    expected.sort();

    let out = tool("img-manifest")
        .args(["--tag", "1.0", "--tag", "latest"])
        .stdin(ndjson(&children))
        .run();
    let doc = out.success().document();
    let digest = doc["digest"].as_str().unwrap().to_owned();
    assert_eq!(doc["digest_uri"], format!("{name}@{digest}"));
    assert_eq!(doc["image_uri"], format!("{name}:1.0"));
    assert_eq!(doc["tags"], json!(["1.0", "latest"]));
    assert_eq!(doc["manifest"]["format"], "docker", "{out:?}");
    assert_eq!(doc["manifest"]["tags_pushed"], json!(["1.0", "latest"]));
    assert_eq!(doc["manifest"]["tags_present"], json!([]));
    // The first child's other fields pass through; its own platform does not.
    assert_eq!(doc["push"], children[0]["push"]);
    assert!(doc.get("platform").is_none(), "{out:?}");
    let platforms: Vec<(String, String)> = doc["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["platform"].as_str().unwrap().to_owned(),
                p["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(platforms, expected, "sorted by platform{out:?}");
    assert_eq!(doc["platforms"][1]["variant"], "v8");

    // The registry's own answer, for both tags.
    for tag in ["1.0", "latest"] {
        let (served, list) = registry_get(&registry, &repository, tag, None).unwrap();
        assert_eq!(served, digest, "tag {tag}");
        assert_eq!(
            list["mediaType"],
            "application/vnd.docker.distribution.manifest.list.v2+json"
        );
        assert_eq!(entries(&list), expected);
    }

    // The docker CLI reads it.
    let config = tempfile::tempdir().unwrap();
    let output = Command::new("docker")
        .args(["manifest", "inspect", "--insecure", &format!("{name}:1.0")])
        .env("DOCKER_CONFIG", config.path())
        .envs(crate::harness::services())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "docker manifest inspect: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let inspected: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(entries(&inspected), expected, "{text}");

    // A second run: the same digest, nothing pushed.
    let again = tool("img-manifest")
        .args(["--tag", "1.0", "--tag", "latest"])
        .stdin(ndjson(&children))
        .run();
    let second = again.success().document();
    assert_eq!(second["digest"], digest.as_str());
    assert_eq!(second["manifest"]["tags_pushed"], json!([]));
    assert_eq!(second["manifest"]["tags_present"], json!(["1.0", "latest"]));
    assert!(again.stderr.contains("nothing to push"), "{again:?}");

    // As an OCI index, under the first document's own tags, from references.
    let first_ref = children[0]["digest_uri"].as_str().unwrap();
    let second_ref = children[1]["digest_uri"].as_str().unwrap();
    let oci = tool("img-manifest")
        .args(["--no-input", "--format", "oci", "--tag", "oci"])
        .args(["--image", second_ref, "--image", first_ref])
        .run();
    let oci_doc = oci.success().document();
    assert_eq!(oci_doc["manifest"]["format"], "oci");
    assert_ne!(oci_doc["digest"], digest.as_str());
    let (served, index) = registry_get(&registry, &repository, "oci", None).unwrap();
    assert_eq!(served, oci_doc["digest"].as_str().unwrap());
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(entries(&index), expected);
    // The tags of the first document, when no --tag is given.
    let mut tagged = children.clone();
    tagged[0]["tags"] = json!(["multi"]);
    let from_doc = tool("img-manifest").stdin(ndjson(&tagged)).run();
    let from_doc = from_doc.success().document();
    assert_eq!(from_doc["digest"], digest.as_str());
    assert_eq!(from_doc["tags"], json!(["multi"]));

    // By tag, as a batch build's join step names the images: resolved to the same digests,
    // so the same list, already there; a tag the registry lacks pushes nothing.
    let by_tag = tool("img-manifest")
        .args(["--no-input", "--tag", "1.0"])
        .args(["--image", &format!("{name}:amd64")])
        .args(["--image", &format!("{name}:arm64")])
        .run();
    let by_tag_doc = by_tag.success().document();
    assert_eq!(by_tag_doc["digest"], digest.as_str());
    assert_eq!(by_tag_doc["manifest"]["tags_present"], json!(["1.0"]));
    tool("img-manifest")
        .args(["--no-input", "--tag", "never"])
        .args(["--image", &format!("{name}:amd64")])
        .args(["--image", &format!("{name}:s390x")])
        .run()
        .fails(65, &["has no image", ":s390x", "img-push"]);
    assert_eq!(registry_get(&registry, &repository, "never", None), None);
    assert_eq!(
        registry_get(&registry, &repository, "multi", None)
            .unwrap()
            .0,
        digest
    );
}

#[test]
fn joins_in_the_auth_registry_with_stored_credentials_and_reads_blobs() {
    let registry = service("IMGPIPE_AUTH_REGISTRY");
    let user = service("IMGPIPE_AUTH_REGISTRY_USER");
    let password = service("IMGPIPE_AUTH_REGISTRY_PASSWORD");
    let repository = unique("manifest-auth");
    let config = tempfile::tempdir().unwrap();
    let mut refs = Refs(Vec::new());
    tool("ecr-login")
        .args(["--registry", &registry])
        .env("DOCKER_CONFIG", config.path())
        .run()
        .success();
    let children = push_images(
        &registry,
        &repository,
        &[("linux/amd64", "amd64"), ("linux/arm64/v8", "arm64")],
        Some(config.path()),
        &mut refs,
    );

    // Without credentials: refused, nothing pushed.
    let empty = tempfile::tempdir().unwrap();
    tool("img-manifest")
        .args(["--tag", "1"])
        .env("DOCKER_CONFIG", empty.path())
        .stdin(ndjson(&children))
        .run()
        .fails(77, &["requires credentials"]);
    let out = tool("img-manifest")
        .args(["--tag", "1"])
        .env("DOCKER_CONFIG", config.path())
        .stdin(ndjson(&children))
        .run();
    let doc = out.success().hides(&password).document();
    let (served, list) =
        registry_get(&registry, &repository, "1", Some((&user, &password))).unwrap();
    assert_eq!(served, doc["digest"].as_str().unwrap());
    assert_eq!(entries(&list).len(), 2);

    // The blob GET, against what curl reads from the registry.
    let (_, manifest) = registry_get(
        &registry,
        &repository,
        children[1]["digest"].as_str().unwrap(),
        Some((&user, &password)),
    )
    .unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_owned();
    let client = Registry::new(
        &registry,
        Some(Credentials {
            username: user,
            password: Secret::new(password),
        }),
    )
    .unwrap();
    let runtime = shared::cli::runtime().unwrap();
    let blob = runtime
        .block_on(client.blob(&repository, &config_digest))
        .unwrap()
        .unwrap();
    assert_eq!(registry::sha256_digest(&blob), config_digest);
    let value: Value = serde_json::from_slice(&blob).unwrap();
    assert_eq!(value["architecture"], "arm64");
    let absent = format!("sha256:{}", "0".repeat(64));
    assert_eq!(
        runtime.block_on(client.blob(&repository, &absent)).unwrap(),
        None
    );
}

#[test]
fn wrong_children_fail_on_one_line_and_push_nothing() {
    let registry = service("IMGPIPE_REGISTRY");
    let repository = unique("manifest-bad");
    let other = unique("manifest-other");
    let mut refs = Refs(Vec::new());
    let children = push_images(
        &registry,
        &repository,
        &[
            ("linux/amd64", "a1"),
            ("linux/amd64", "a2"),
            ("linux/arm64", "b"),
        ],
        None,
        &mut refs,
    );
    let elsewhere = push_images(&registry, &other, &[("linux/arm64", "b")], None, &mut refs);
    let digest = |doc: &Value| doc["digest"].as_str().unwrap().to_owned();
    let nothing_pushed = || {
        for repo in [&repository, &other] {
            assert!(
                registry_get(&registry, repo, "joined", None).is_none(),
                "{repo}:joined was pushed"
            );
        }
    };

    tool("img-manifest")
        .args(["--tag", "joined"])
        .stdin(ndjson(&[children[0].clone(), elsewhere[0].clone()]))
        .run()
        .fails(
            65,
            &[
                "different repositories",
                &format!("{registry}/{repository}"),
                &format!("{registry}/{other}"),
            ],
        );
    nothing_pushed();

    tool("img-manifest")
        .args(["--tag", "joined"])
        .stdin(ndjson(&[
            children[0].clone(),
            children[2].clone(),
            children[1].clone(),
        ]))
        .run()
        .fails(
            65,
            &[
                "platform linux/amd64",
                &digest(&children[0]),
                &digest(&children[1]),
            ],
        );
    nothing_pushed();

    let mut missing = children[2].clone();
    let absent = format!("sha256:{}", "e".repeat(64));
    missing["digest"] = json!(absent);
    tool("img-manifest")
        .args(["--tag", "joined"])
        .stdin(ndjson(&[children[0].clone(), missing]))
        .run()
        .fails(65, &["has no image", &absent, "img-push"]);
    nothing_pushed();

    // A list is not a child: join once, then offer the list itself.
    let list = tool("img-manifest")
        .args(["--tag", "list"])
        .stdin(ndjson(&[children[0].clone(), children[2].clone()]))
        .run();
    let list = list.success().document();
    tool("img-manifest")
        .args(["--tag", "joined", "--no-input"])
        .args(["--image", list["digest_uri"].as_str().unwrap()])
        .run()
        .fails(65, &["itself a multi-platform image"]);
    nothing_pushed();
}
