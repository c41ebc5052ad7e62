#!/usr/bin/env bash
# Runs every check imgpipe has, as CI does: formatting, clippy with warnings denied, the unit
# and integration tests against the real local services (Docker Engine, registries, the ECR API
# server and the local ECR data plane on ECR's host names), which this script installs and
# starts when they are not running, and stops again at the end if it started them, and the
# arm64 release's smoke test under qemu-user. The tests run in the services' private mount
# namespace (scripts/services.sh run).
#
# Usage: scripts/test.sh [extra arguments for cargo test]
# Prints the wall time of each stage. Exits non-zero on the first failing stage.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

stage_start=0
stage() {
  stage_start=$(date +%s)
  echo "==> $1" >&2
}
done_stage() {
  echo "==> $1 took $(( $(date +%s) - stage_start ))s" >&2
}

total_start=$(date +%s)

stage "services: install and start what is missing"
started_services=false
if ! scripts/services.sh status >/dev/null 2>&1; then
  started_services=true
fi
trap 'if $started_services; then scripts/services.sh down || true; fi' EXIT
scripts/services.sh up >/dev/null
done_stage "services"

stage "cargo fmt --check"
cargo fmt --all -- --check
done_stage "fmt"

stage "cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings
done_stage "clippy"

stage "cargo build (tools)"
cargo build --workspace --bins --locked
done_stage "build"

stage "cargo test (unit and integration)"
# In the services' private namespace, where the ECR host names resolve to the local ECR.
scripts/services.sh run -- cargo test --workspace --locked "$@"
done_stage "test"

stage "arm64: the aarch64 release, cross-built and run under qemu-user"
# scripts/release.sh --arch aarch64 builds imgpipe-<version>-aarch64-linux.tar.gz (installing
# what it needs when missing) and runs scripts/arm64-smoke.sh on it: the main job with the arm64
# binary, against the services started above. About 8 minutes cold. The archive goes to
# target/test-dist, so that a release made in target/dist is left as it was.
scripts/release.sh --arch aarch64 --out target/test-dist >/dev/null
done_stage "arm64"

echo "==> all checks passed in $(( $(date +%s) - total_start ))s" >&2
