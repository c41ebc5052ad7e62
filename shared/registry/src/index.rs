//! Multi-platform images: the children a Docker manifest list or an OCI index names, read and
//! checked through the registry, the list's bytes, and its push under tags. img-manifest joins
//! images already pushed; img-push pushes the children of a multi-platform build and then
//! their list. Both go through here.
//!
//! Each child's platform is read from its image configuration (a blob GET), never taken from a
//! document. The list's bytes are deterministic (children sorted by platform), so the same
//! children give the same digest, and a tag already at that digest is not written again.

use serde_json::{Value, json};
use shared::exit;
use shared::media::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, is_index};
use shared::platform::Platform;
use shared::{Error, Result, verbose};

use crate::{Registry, sha256_digest};

/// A child image as the registry holds it.
#[derive(Clone, Debug)]
pub struct Child {
    /// Its platform, from its configuration.
    pub platform: Platform,
    /// Its manifest digest.
    pub digest: String,
    /// Its manifest's media type.
    pub media_type: String,
    /// Its manifest's size in bytes.
    pub size: usize,
    /// Its configuration's digest (the Engine's image ID for the image it describes).
    pub config: String,
}

/// Reads one child from the registry: its manifest by digest, then its configuration. `from`
/// says where it was named (`record 2`, `the arm64 build`), for the errors.
pub async fn read_child(
    registry: &Registry,
    repository: &str,
    digest: &str,
    from: &str,
) -> Result<Child> {
    let host = registry.host();
    let name = format!("{host}/{repository}@{digest}");
    let manifest = registry
        .manifest(repository, digest)
        .await?
        .ok_or_else(|| {
            Error::data(format!("{from}: registry {host} has no image {name}"))
                .with_hint("push every platform's image (img-push) before joining them")
        })?;
    if manifest.digest != digest || sha256_digest(&manifest.body) != digest {
        return Err(Error::unavailable(format!(
            "registry {host} served {name} with digest {}",
            sha256_digest(&manifest.body)
        )));
    }
    if is_index(&manifest.media_type) {
        return Err(Error::data(format!(
            "{from}: {name} is itself a multi-platform image ({})",
            manifest.media_type
        ))
        .with_hint("join the single-platform images it lists, by their digests"));
    }
    let config = manifest.config_digest().ok_or_else(|| {
        Error::data(format!(
            "{from}: the manifest of {name} names no configuration"
        ))
    })?;
    let blob = registry.blob(repository, &config).await?.ok_or_else(|| {
        Error::data(format!(
            "{from}: registry {host} has no configuration {config} for {name}"
        ))
        .with_hint("push the image again")
    })?;
    if sha256_digest(&blob) != config {
        return Err(Error::unavailable(format!(
            "registry {host} served the configuration {config} of {name} with another digest"
        )));
    }
    let platform = Platform::from_config(&blob, &name)?;
    verbose!("{name}: {}", platform.name());
    Ok(Child {
        platform,
        digest: digest.to_owned(),
        media_type: manifest.media_type,
        size: manifest.body.len(),
        config,
    })
}

/// Sorts the children by platform and refuses two of one platform.
pub fn sort_children(children: &mut [Child]) -> Result<()> {
    children.sort_by(|a, b| {
        (a.platform.normalized(), &a.platform, &a.digest).cmp(&(
            b.platform.normalized(),
            &b.platform,
            &b.digest,
        ))
    });
    for pair in children.windows(2) {
        if pair[0].platform.same(&pair[1].platform) {
            return Err(Error::data(format!(
                "two images are for platform {}: {} and {}",
                pair[0].platform.name(),
                pair[0].digest,
                pair[1].digest
            ))
            .with_hint("join one image per platform"));
        }
    }
    Ok(())
}

/// The media type that fits the children: a Docker manifest list when every child is a Docker
/// v2 manifest, else an OCI index.
#[must_use]
pub fn matching_type(children: &[Child]) -> &'static str {
    if children.iter().all(|c| c.media_type == DOCKER_MANIFEST) {
        DOCKER_LIST
    } else {
        OCI_INDEX
    }
}

/// The bytes of the list or index of `media_type`: compact JSON, children in the order given.
#[must_use]
pub fn index_bytes(media_type: &str, children: &[Child]) -> Vec<u8> {
    let manifests: Vec<Value> = children
        .iter()
        .map(|c| {
            json!({
                "mediaType": c.media_type,
                "size": c.size,
                "digest": c.digest,
                "platform": c.platform.descriptor(),
            })
        })
        .collect();
    let value = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    });
    // Serialising a Value cannot fail.
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The document's `platforms` field: each child's platform, digest and media type, and
/// `name@digest` (`name` is `registry/repository`).
#[must_use]
pub fn platforms_field(name: &str, children: &[Child]) -> Vec<Value> {
    children
        .iter()
        .map(|c| {
            let mut p = json!({
                "platform": c.platform.name(),
                "os": c.platform.os,
                "architecture": c.platform.architecture,
            });
            if let Some(variant) = &c.platform.variant {
                p["variant"] = json!(variant);
            }
            if let Some(version) = &c.platform.os_version {
                p["os_version"] = json!(version);
            }
            p["digest"] = json!(c.digest);
            p["digest_uri"] = json!(format!("{name}@{}", c.digest));
            p["media_type"] = json!(c.media_type);
            p
        })
        .collect()
}

/// The most entries a list may have for imgpipe to read it: far more platforms than exist.
pub const MAX_ENTRIES: usize = 64;

/// The platforms a list or index names, from its own descriptors, normalised and sorted, with
/// no request made; attestation manifests (`unknown/unknown`) left out. `None` for a
/// single-platform manifest; an error for a list that is not JSON, holds more than
/// [`MAX_ENTRIES`] entries, or names a platform imgpipe would not accept on its command line.
pub fn index_platforms(manifest: &crate::Manifest, what: &str) -> Result<Option<Vec<Platform>>> {
    if !is_index(&manifest.media_type) {
        return Ok(None);
    }
    let bad = |why: String| Error::data(format!("the list at {what} {why}"));
    let value: Value =
        serde_json::from_slice(&manifest.body).map_err(|e| bad(format!("is not JSON ({e})")))?;
    let entries = value
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("has no manifests".to_owned()))?;
    if entries.len() > MAX_ENTRIES {
        return Err(bad(format!(
            "has {} entries, more than the {MAX_ENTRIES} imgpipe reads",
            entries.len()
        )));
    }
    let mut platforms = Vec::new();
    for entry in entries {
        let platform = entry
            .get("platform")
            .and_then(Platform::from_object)
            .ok_or_else(|| bad("has an entry without a valid platform".to_owned()))?;
        if platform.os == "unknown" && platform.architecture == "unknown" {
            continue;
        }
        platforms.push(platform.normalized());
    }
    platforms.sort();
    Ok(Some(platforms))
}

/// Pushes the list under every tag not already at its digest, then checks through the
/// registry's API that every tag resolves to it. A tag at another digest where `immutable`
/// says tags may not move is a conflict (exit 4), never written. Returns the tags pushed and
/// those present.
pub async fn push_index(
    registry: &Registry,
    repository: &str,
    tags: &[String],
    media_type: &str,
    body: &[u8],
    immutable: &dyn Fn(&str) -> bool,
) -> Result<(Vec<String>, Vec<String>)> {
    let digest = sha256_digest(body);
    let host = registry.host();
    let mut pushed: Vec<String> = Vec::new();
    let mut present: Vec<String> = Vec::new();
    let before = registry.manifest_digests(repository, tags).await?;
    for (tag, found) in tags.iter().zip(before) {
        if found.as_deref() == Some(digest.as_str()) {
            present.push(tag.clone());
            continue;
        }
        if let Some(other) = found.filter(|_| immutable(tag)) {
            return Err(Error::new(
                exit::CONFLICT,
                format!("immutable tag {host}/{repository}:{tag} already names {other}, not the list {digest}"),
            )
            .with_hint("push under a new tag, or remove the old image from the registry first"));
        }
        let stored = registry
            .put_manifest(repository, tag, media_type, body)
            .await?;
        if stored != digest {
            return Err(Error::unavailable(format!(
                "registry {host} stored {host}/{repository}:{tag} as {stored}, not as {digest}"
            )));
        }
        pushed.push(tag.clone());
    }
    let after = registry.manifest_digests(repository, tags).await?;
    for (tag, found) in tags.iter().zip(after) {
        match found {
            Some(found) if found == digest => {}
            Some(found) => {
                return Err(Error::new(
                    exit::CONFLICT,
                    format!("after the push, {host}/{repository}:{tag} resolves to {found}, not to {digest}"),
                )
                .with_hint("another push moved the tag meanwhile: push again"));
            }
            None => {
                return Err(Error::unavailable(format!(
                    "after the push, registry {host} does not know {host}/{repository}:{tag}"
                ))
                .with_hint("the registry lost the push: push again"));
            }
        }
    }
    Ok((pushed, present))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(platform: &str, digest: char) -> Child {
        Child {
            platform: Platform::parse(platform).unwrap(),
            digest: format!("sha256:{}", digest.to_string().repeat(64)),
            media_type: DOCKER_MANIFEST.into(),
            size: 528,
            config: String::new(),
        }
    }

    fn list(entries: &[Value]) -> crate::Manifest {
        crate::Manifest {
            digest: String::new(),
            media_type: DOCKER_LIST.into(),
            body: serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": entries})).unwrap(),
        }
    }

    #[test]
    fn a_registrys_list_is_read_within_bounds_and_its_words_checked() {
        let entry = |arch: &str| json!({"digest": "sha256:aa", "platform": {"os": "linux", "architecture": arch}});
        let attestation = json!({"digest": "sha256:bb", "platform": {"os": "unknown", "architecture": "unknown"}});
        let read =
            index_platforms(&list(&[entry("arm64"), attestation, entry("x86_64")]), "r").unwrap();
        let names: Vec<String> = read.unwrap().iter().map(Platform::name).collect();
        assert_eq!(names, ["linux/amd64", "linux/arm64"]);
        // More entries than any real list, and words that would reach logs: refused.
        let many: Vec<Value> = (0..=MAX_ENTRIES).map(|_| entry("amd64")).collect();
        let err = index_platforms(&list(&many), "r").unwrap_err();
        assert!(
            err.message().contains("more than the 64"),
            "{}",
            err.message()
        );
        let hostile = index_platforms(&list(&[entry("arm64\u{1b}[2J")]), "r").unwrap_err();
        assert_eq!(hostile.code(), exit::DATA);
        let single = crate::Manifest {
            digest: String::new(),
            media_type: DOCKER_MANIFEST.into(),
            body: b"{}".to_vec(),
        };
        assert!(index_platforms(&single, "r").unwrap().is_none());
    }

    #[test]
    fn lists_are_sorted_deterministic_and_refuse_one_platform_twice() {
        let mut a = vec![child("linux/arm64", 'b'), child("linux/amd64", 'a')];
        let mut b = vec![a[1].clone(), a[0].clone()];
        sort_children(&mut a).unwrap();
        sort_children(&mut b).unwrap();
        assert_eq!(index_bytes(DOCKER_LIST, &a), index_bytes(DOCKER_LIST, &b));
        assert_eq!(matching_type(&a), DOCKER_LIST);
        let value: Value = serde_json::from_slice(&index_bytes(OCI_INDEX, &a)).unwrap();
        assert_eq!(value["mediaType"], OCI_INDEX);
        assert_eq!(
            value["manifests"][0]["platform"],
            json!({"architecture":"amd64","os":"linux"})
        );
        assert_eq!(value["manifests"][1]["size"], 528);
        let spelled = |arch: &str, digest: char| {
            let mut c = child("linux/amd64", digest);
            c.platform.architecture = arch.into();
            c
        };
        // aarch64 sorts before amd64 by its raw words, arm64 after: they still meet.
        let mut apart = vec![
            spelled("aarch64", 'd'),
            spelled("amd64", 'e'),
            spelled("arm64", 'f'),
        ];
        assert_eq!(sort_children(&mut apart).unwrap_err().code(), exit::DATA);
        let mut twice = vec![child("linux/arm64", 'b'), child("linux/aarch64", 'c')];
        let err = sort_children(&mut twice).unwrap_err();
        assert_eq!(err.code(), exit::DATA);
        assert!(err.message().contains(&"b".repeat(64)) && err.message().contains(&"c".repeat(64)));
        let mut mixed = a.clone();
        mixed[1].media_type = shared::media::OCI_MANIFEST.into();
        assert_eq!(matching_type(&mixed), OCI_INDEX);
    }
}
