//! Integration tests: the real tool binaries against a real Docker Engine, real registries and
//! the ECR API server on loopback, all started by `scripts/services.sh`.

// A panic is how a test fails: unwrapping in helpers reports the location like an assert.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod build_session;
mod buildspecs;
mod clients;
mod codebuild;
mod contract;
mod ecr_hosts;
mod ecr_login;
mod ecr_repo;
mod exit_codes;
mod harness;
mod hostile;
mod img_build;
mod img_manifest;
mod img_push;
mod img_tag;
mod install;
mod lifecycle_set;
mod multicall;
mod platforms;
mod registry_ops;
mod scan_gate;
mod security_hosts;
mod security_outputs;
mod security_reads;
