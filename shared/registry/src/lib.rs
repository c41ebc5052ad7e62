//! Container registries: the HTTP client (OCI distribution), the Docker config and its
//! credential helpers, and the one credential lookup every tool that talks to a registry uses.

mod auth;
mod client;
pub mod credentials;
pub mod dockerconfig;
mod http;
pub mod index;
mod retry;
#[cfg(test)]
mod tests;

pub use auth::Challenge;
pub use client::*;
pub use http::registry_said;
pub use retry::{Retry, is_transient};
