//! What every imgpipe tool shares: the command line, the image document and its JSON I/O,
//! errors and exit codes, logging, local files, and the names of registries, repositories,
//! tags, digests and media types.
//!
//! If two tools need a piece, it lives here, once. The clients live beside it, each in its own
//! crate, so that a tool compiles only what it uses: `imgpipe-aws` (the AWS SDK),
//! `imgpipe-registry` (the registry client, the Docker config, credentials),
//! `imgpipe-docker` (the Docker Engine) and `imgpipe-context` (the build context).

pub mod child;
pub mod cli;
pub mod document;
pub mod duration;
pub mod ecr;
pub mod error;
pub mod exit;
pub mod files;
pub mod generate;
pub mod io;
pub mod log;
pub mod media;
pub mod names;
pub mod platform;
pub mod secret;
pub mod show;

pub use document::Document;
pub use error::{Error, Result};
