#!/usr/bin/env bash
# The main job: build, tag and ship the sample application (examples/sample-app) through the
# whole imgpipe pipeline, printing each step's result and a summary.
#
# Usage: scripts/local-pipeline.sh          on the local default (installs what it needs and
#                                           starts a Docker Engine, registries and the ECR API
#                                           server on loopback: scripts/services.sh)
#        scripts/local-pipeline.sh --aws    against real AWS: needs only credentials and a region
#                                           in the environment (and a Docker Engine, DOCKER_HOST)
#
# Running it again is safe: every step is idempotent.
#
# Locally, scripts/services.sh gives ECR's shape: the ECR API server for the control plane and
# the local ECR data plane on ECR's own host name (123456789012.dkr.ecr.us-east-1.amazonaws.com,
# TLS with a local CA) in a private namespace that this script enters. The commands are those of
# examples/buildspecs/basic.yml, with no registry override and no stand-in step.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

target=local
case "${1:-}" in
  --aws) target=aws ;;
  "") ;;
  *) echo "usage: scripts/local-pipeline.sh [--aws]" >&2; exit 2 ;;
esac

say() { printf '\n==> %s\n' "$*" >&2; }

repository="${IMGPIPE_SAMPLE_REPOSITORY:-imgpipe-sample}"
app="examples/sample-app"

if [ "$target" = local ]; then
  if [ -z "${IMGPIPE_ECR_REGISTRY:-}" ] || ! grep -q "$IMGPIPE_ECR_REGISTRY" /etc/hosts; then
    say "starting the local services (scripts/services.sh up)"
    scripts/services.sh up >/dev/null
    # Again, inside the services' namespace, where ECR's host names resolve.
    exec scripts/services.sh run -- "$0" "$@"
  fi
  # A Docker config of the pipeline's own: the local run never touches ~/.docker.
  export DOCKER_CONFIG="$IMGPIPE_STATE_DIR/pipeline-docker-config"
fi

# What ships: the one imgpipe binary, each tool a link to it (as scripts/release.sh packs it).
# IMGPIPE_BIN names an imgpipe binary built elsewhere (the arm64 release, run under QEMU by
# scripts/arm64-smoke.sh); else this checkout's is built.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ -n "${IMGPIPE_BIN:-}" ]; then
  [ -f "$IMGPIPE_BIN" ] && [ -x "$IMGPIPE_BIN" ] \
    || { echo "local-pipeline: IMGPIPE_BIN=$IMGPIPE_BIN is not an executable file" >&2; exit 66; }
  links="$work/imgpipe-links"
  mkdir -p "$links"
  cp "$IMGPIPE_BIN" "$links/imgpipe"
  for tool in $("$links/imgpipe" --list); do ln -s imgpipe "$links/$tool"; done
  say "running $IMGPIPE_BIN: $( (file -b "$links/imgpipe" 2>/dev/null || echo "a binary") | cut -d, -f1-2)"
else
  say "building imgpipe (cargo build --release -p imgpipe-multicall)"
  cargo build --release -p imgpipe-multicall --bin imgpipe --locked
  release="${CARGO_TARGET_DIR:-$root/target}/release"
  links="$release/imgpipe-links"
  rm -rf "$links.new"
  mkdir -p "$links.new"
  ln -s ../imgpipe "$links.new/imgpipe"
  for tool in $("$release/imgpipe" --list); do ln -s ../imgpipe "$links.new/$tool"; done
  rm -rf "$links"
  mv "$links.new" "$links"
fi
export PATH="$links:$PATH"

# Runs one pipeline step: reads the previous step's document, shows and keeps its own.
step() {
  local name=$1 input=$2 output=$3
  shift 3
  say "$name"
  echo "    \$ $*" >&2
  "$@" <"$input" >"$output"
  cat "$output"
}

: >"$work/00.json"
step "ecr-repo: the repository exists, scanning on push" "$work/00.json" "$work/01.json" \
  ecr-repo --repository "$repository" --tag project=imgpipe-sample
step "ecr-login: Docker is logged in" "$work/01.json" "$work/02.json" \
  ecr-login
step "img-tag: tags and labels from git and the environment" "$work/02.json" "$work/03.json" \
  img-tag --context "$app" --tag sha --tag content --tag semver --tag latest
# --skip-if-present: when the registry already holds this build context's content tag (an
# earlier run pushed it), nothing is built and img-push only makes sure of the tags.
step "img-build: the image is built with every tag (skipped when unchanged)" "$work/03.json" "$work/04.json" \
  img-build --skip-if-present "$app"
artifacts="${IMGPIPE_ARTIFACTS_DIR:-${CARGO_TARGET_DIR:-$root/target}/local-pipeline}"
mkdir -p "$artifacts"
step "img-push: every tag pushed and verified, deployment artifacts written" "$work/04.json" "$work/05.json" \
  img-push --image-uri-file "$artifacts/image_uri.txt" \
  --imagedefinitions "$artifacts/imagedefinitions.json" --container sample-app \
  --image-detail "$artifacts/imageDetail.json"

step "scan-gate: the scan passes the policy (no CRITICAL findings)" "$work/05.json" "$work/06.json" \
  scan-gate --fail-on critical --timeout 10m --junit "$artifacts/scan-report.xml"
step "lifecycle-set: keep the last 20 release images, expire untagged after 7 days" "$work/06.json" "$work/07.json" \
  lifecycle-set --keep latest --keep-last 20 --tag-prefix v --expire-untagged-after 7

say "summary"
python3 - "$work/07.json" "$artifacts" >&2 <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
build = doc.get("build", {})
lifecycle = doc.get("lifecycle", {})
rows = [
    ("repository", doc.get("repository_uri") or doc.get("repository")),
    ("logged in to", ", ".join(doc.get("login", {}).get("registries", []))),
    ("tags", ", ".join(doc.get("tags", []))),
    ("image", doc.get("image_uri") or (doc.get("references") or ["?"])[0]),
    ("digest", doc.get("digest")),
    ("image id", doc.get("image_id") or "-"),
    ("build", f"skipped: {build.get('skip_reason')}" if build.get("skipped") else
              f"{build.get('steps', '?')} steps, {build.get('cached_steps', 0)} cached, "
              f"{build.get('duration_seconds', '?')} s"),
    ("scan", f"{doc.get('scan', {}).get('verdict', '?')} ({doc.get('scan', {}).get('status', '?')})"),
    ("lifecycle policy", "written" if lifecycle.get("written") else "unchanged"),
    ("artifacts", sys.argv[2]),
]
width = max(len(k) for k, _ in rows)
for key, value in rows:
    print(f"  {key:<{width}}  {value}")
PY
