//! Container registries: the HTTP client (OCI distribution), the Docker config and its
//! credential helpers, and the one credential lookup every tool that talks to a registry uses.

mod auth;
mod client;
pub mod credentials;
pub mod dockerconfig;
mod retry;
#[cfg(test)]
mod tests;

pub use auth::Challenge;
pub use client::*;
pub use retry::{Retry, is_transient};
