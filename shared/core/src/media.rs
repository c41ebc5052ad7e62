//! The manifest media types of container images: one home for the strings that the registry
//! client, ECR's BatchGetImage and the tools that join or read multi-platform images use.

/// A Docker v2 schema 2 (single-platform) image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A Docker manifest list (multi-platform).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// An OCI (single-platform) image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index (multi-platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The manifest media types a client accepts, as the docker CLI sends them: Docker v2 schema 2,
/// the Docker manifest list, and the OCI image manifest and index.
pub const MANIFEST_TYPES: &[&str] = &[DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX];

/// The media types of a multi-platform image: a Docker manifest list, an OCI index.
pub const INDEX_TYPES: &[&str] = &[DOCKER_LIST, OCI_INDEX];

/// Whether `media_type` is that of a multi-platform image (see [`INDEX_TYPES`]).
#[must_use]
pub fn is_index(media_type: &str) -> bool {
    INDEX_TYPES.contains(&media_type)
}
