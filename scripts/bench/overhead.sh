#!/usr/bin/env bash
# Per-invocation overhead of each imgpipe tool against the aws-cli call it replaces, against the
# local ECR API server (moto), in one run: each pair alternates which goes first, N runs each,
# medians and ratios (aws-cli / imgpipe).
#
#   ecr-login --password-stdout          vs  aws ecr get-login-password
#   ecr-repo --repository R (it exists)  vs  aws ecr describe-repositories --repository-names R
#                                            || aws ecr create-repository ...  (the usual idempotent
#                                            idiom; the repository exists, so one call)
#   lifecycle-set (policy unchanged)     vs  aws ecr put-lifecycle-policy (the same policy)
#   scan-gate --fail-on critical         vs  aws ecr describe-image-scan-findings (the call alone,
#                                            without the python snippet; see scan-gate.sh for that)
#   <tool> --version, <tool> --help      vs  aws --version (start-up cost alone, no network)
#
# Usage: scripts/bench/overhead.sh              BENCH_RUNS runs of each (default 10)
# BENCH_PROFILE=dev times a debug build; BENCH_BUILD=0 skips the cargo build.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
runs="${BENCH_RUNS:-10}"
cd "$root"
. scripts/bench/common.sh
tools=(ecr-login ecr-repo img-tag img-build img-push scan-gate lifecycle-set)
bench_tools "${tools[@]}"

aws="$IMGPIPE_AWS_CLI"
ep="$AWS_ENDPOINT_URL_ECR"
AWS=("$aws" --endpoint-url "$ep" --output json)
work="$(mktemp -d /tmp/bench-overhead.XXXXXX)"
repo="bench-overhead-$$-$(date +%s)"
cleanup() {
  "${AWS[@]}" ecr delete-repository --repository-name "$repo" --force >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# Setup (untimed): a repository with scanning on push, its lifecycle policy, one image with a
# finished scan.
"${AWS[@]}" ecr create-repository --repository-name "$repo" \
  --image-scanning-configuration scanOnPush=true >/dev/null
lifecycle_flags=(--keep-last 20 --tag-prefix v --expire-untagged-after 7)
"$bin/lifecycle-set" -q --no-input --repository "$repo" "${lifecycle_flags[@]}" --dry-run \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps(d["lifecycle"]["policy"]))' >"$work/policy.json" \
  || { echo "bench: cannot read the policy lifecycle-set writes" >&2; exit 1; }
"${AWS[@]}" ecr put-lifecycle-policy --repository-name "$repo" \
  --lifecycle-policy-text "file://$work/policy.json" >/dev/null
layer="sha256:$(printf '%s' "$repo" | sha256sum | cut -c1-64)"
config="sha256:$(printf 'config-%s' "$repo" | sha256sum | cut -c1-64)"
manifest='{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"'"$config"'"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":1,"digest":"'"$layer"'"}]}'
digest="$("${AWS[@]}" ecr put-image --repository-name "$repo" --image-tag v1 --image-manifest "$manifest" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["image"]["imageId"]["imageDigest"])')"
"${AWS[@]}" ecr start-image-scan --repository-name "$repo" --image-id "imageDigest=$digest" >/dev/null
printf '{"repository":"%s","digest":"%s","tags":["v1"]}\n' "$repo" "$digest" >"$work/doc.json"

# The pairs: ours_<name> and peer_<name>, each one invocation, output discarded.
ours_login() { "$bin/ecr-login" --password-stdout </dev/null; }
peer_login() { "${AWS[@]}" ecr get-login-password; }
ours_repo() { "$bin/ecr-repo" --no-input --repository "$repo"; }
peer_repo() {
  "${AWS[@]}" ecr describe-repositories --repository-names "$repo" 2>/dev/null \
    || "${AWS[@]}" ecr create-repository --repository-name "$repo" --image-scanning-configuration scanOnPush=true
}
ours_lifecycle() { "$bin/lifecycle-set" --no-input --repository "$repo" "${lifecycle_flags[@]}"; }
peer_lifecycle() {
  "${AWS[@]}" ecr put-lifecycle-policy --repository-name "$repo" --lifecycle-policy-text "file://$work/policy.json"
}
ours_scan() { "$bin/scan-gate" --fail-on critical <"$work/doc.json"; }
peer_scan() { "${AWS[@]}" ecr describe-image-scan-findings --repository-name "$repo" --image-id "imageDigest=$digest"; }

# Every pair must succeed (and the lifecycle policy must be unchanged for lifecycle-set) before
# anything is timed.
for name in login repo lifecycle scan; do
  ours_$name >/dev/null 2>"$work/err" || { echo "bench: ours_$name failed:" >&2; cat "$work/err" >&2; exit 1; }
  peer_$name >/dev/null 2>"$work/err" || { echo "bench: peer_$name failed:" >&2; cat "$work/err" >&2; exit 1; }
done
written=$(ours_lifecycle 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["lifecycle"].get("written"))')
[ "$written" = False ] || { echo "bench: lifecycle-set rewrote the policy (written: $written); not timing" >&2; exit 1; }

now_ns() { date +%s%N; }
results="$work/results"
: >"$results"
timed() { # label command...
  local label=$1 start
  shift
  start=$(now_ns)
  "$@" >/dev/null 2>&1 || { echo "bench: $label failed" >&2; exit 1; }
  echo "$label $(( ($(now_ns) - start) / 1000 ))" >>"$results"
}

echo "timing $runs runs of each..." >&2
for i in $(seq "$runs"); do
  for name in login repo lifecycle scan; do
    if [ $((i % 2)) -eq 1 ]; then
      timed "ours_$name" "ours_$name"; timed "peer_$name" "peer_$name"
    else
      timed "peer_$name" "peer_$name"; timed "ours_$name" "ours_$name"
    fi
  done
  timed "peer_version" "$aws" --version
  for tool in "${tools[@]}"; do
    timed "version_$tool" "$bin/$tool" --version
    timed "help_$tool" "$bin/$tool" --help
  done
done

echo "overhead per invocation against the local ECR API server, $runs runs of each ($profile build)," \
  "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$results" <<'PY'
import statistics, sys
us = {}
for line in open(sys.argv[1]):
    label, v = line.split()
    us.setdefault(label, []).append(int(v) / 1000)
med = {k: statistics.median(v) for k, v in us.items()}
pairs = [
    ("login", "ecr-login --password-stdout", "aws ecr get-login-password"),
    ("repo", "ecr-repo (existing repository)", "aws ecr describe-repositories"),
    ("lifecycle", "lifecycle-set (policy unchanged)", "aws ecr put-lifecycle-policy"),
    ("scan", "scan-gate --fail-on critical", "aws ecr describe-image-scan-findings"),
]
print(f"{'imgpipe':<34} {'ms':>7}   {'aws-cli':<38} {'ms':>7}  {'ratio':>6}")
for key, ours, peer in pairs:
    o, p = med[f"ours_{key}"], med[f"peer_{key}"]
    print(f"{ours:<34} {o:7.1f}   {peer:<38} {p:7.1f}  {p / o:5.1f}x")
peer = med["peer_version"]
print(f"start-up: aws --version {peer:.1f} ms (median)")
print(f"{'tool':<16} {'--version ms':>12} {'ratio':>7} {'--help ms':>10} {'ratio':>7}")
for tool in ["ecr-login", "ecr-repo", "img-tag", "img-build", "img-push", "scan-gate", "lifecycle-set"]:
    v, h = med[f"version_{tool}"], med[f"help_{tool}"]
    print(f"{tool:<16} {v:12.1f} {peer / v:6.0f}x {h:10.1f} {peer / h:6.0f}x")
PY
