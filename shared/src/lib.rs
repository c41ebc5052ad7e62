//! What every imgpipe tool shares: the image document and its JSON I/O, errors and exit codes,
//! logging, and the clients for AWS, the Docker Engine and container registries.
//!
//! If two tools need a piece, it lives here, once.

pub mod aws;
pub mod cli;
pub mod context;
pub mod credentials;
pub mod docker;
pub mod dockerconfig;
pub mod document;
pub mod duration;
pub mod ecr;
pub mod error;
pub mod exit;
pub mod files;
pub mod generate;
pub mod iam;
pub mod io;
pub mod log;
pub mod media;
pub mod names;
pub mod registry;
pub mod secret;
pub mod show;

pub use document::Document;
pub use error::{Error, Result};

/// Lowercase hexadecimal of `bytes` (digests, fingerprints).
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, b| {
            let _ = write!(text, "{b:02x}");
            text
        })
}
