//! Container registries: the HTTP client (OCI distribution), the Docker config and its
//! credential helpers, and the one credential lookup every tool that talks to a registry uses.

mod client;
pub mod credentials;
pub mod dockerconfig;

pub use client::*;
