#!/usr/bin/env bash
# Time to gate an image with 10,000 findings: scan-gate against the usual buildspec snippet,
#   aws ecr describe-image-scan-findings ... | python3 -c '<count CRITICAL, exit 1>'
# both against the local ECR API server (moto), on the same image and the same findings.
#
# Usage: scripts/bench/scan-gate.sh [RUNS]      (default 5 runs of each; prints the ratio)
# BENCH_PROFILE=dev to time a debug build instead of a release build.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUNS="${1:-5}"
FINDINGS=10000
cd "$REPO_ROOT"
. scripts/bench/common.sh
bench_tools scan-gate
PROFILE="$profile"
GATE="$bin/scan-gate"
AWS=("$IMGPIPE_AWS_CLI" --endpoint-url "$AWS_ENDPOINT_URL_ECR" --output json)
PYTHON="$(dirname "$IMGPIPE_AWS_CLI")/python3"

repo="bench-scan-gate-$$-$(date +%s)"
"${AWS[@]}" ecr create-repository --repository-name "$repo" >/dev/null
layer="sha256:$(printf '%s' "$repo" | sha256sum | cut -c1-64)"
manifest='{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"sha256:'"$(printf c%.0s {1..64})"'"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":1,"digest":"'"$layer"'"}]}'
digest="$("${AWS[@]}" ecr put-image --repository-name "$repo" --image-tag v1 --image-manifest "$manifest" \
  | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["image"]["imageId"]["imageDigest"])')"

# 10,000 basic findings, 1 in 100 CRITICAL, set as the image's scan result.
"$PYTHON" - "$repo" "$FINDINGS" <<'PY' | curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' \
    --data-binary @- "$IMGPIPE_ECR_API/moto-api/static/ecr/scan-finding-results"
import json, sys
repo, n = sys.argv[1], int(sys.argv[2])
findings = [{"name": f"CVE-2024-{i:05d}", "severity": "CRITICAL" if i % 100 == 0 else "MEDIUM",
             "uri": f"https://nvd.example/{i}",
             "attributes": [{"key": "package_name", "value": f"pkg{i % 300}"},
                            {"key": "package_version", "value": "1.0"}]} for i in range(n)]
print(json.dumps({"region": "us-east-1", "results": [{"repositoryName": repo, "imageId": {},
    "imageScanStatus": {"status": "COMPLETE", "description": "bench"},
    "imageScanFindings": {"findings": findings}}]}))
PY
"${AWS[@]}" ecr start-image-scan --repository-name "$repo" --image-id "imageDigest=$digest" >/dev/null

doc="{\"repository\":\"$repo\",\"digest\":\"$digest\"}"
peer() {
  "${AWS[@]}" ecr describe-image-scan-findings --repository-name "$repo" --image-id "imageDigest=$digest" \
    | "$PYTHON" -c '
import json, sys
f = json.load(sys.stdin)["imageScanFindings"]["findings"]
n = sum(1 for x in f if x["severity"] == "CRITICAL")
print(f"CRITICAL: {n}", file=sys.stderr)
sys.exit(1 if n > 0 else 0)'
}
ours() {
  printf '%s' "$doc" | "$GATE" -q --fail-on critical --poll-interval 1s >/dev/null
}

# Warm-up (and a check that both give the same verdict: fail, exit 1).
set +e
peer 2>/dev/null; peer_rc=$?
ours; ours_rc=$?
set -e
if [ "$peer_rc" != 1 ] || [ "$ours_rc" != 1 ]; then
  echo "bench: expected both to fail the gate (exit 1): peer $peer_rc, scan-gate $ours_rc" >&2
  exit 1
fi

time_runs() {
  local fn=$1 start end
  start=$(date +%s.%N)
  for _ in $(seq "$RUNS"); do "$fn" 2>/dev/null || true; done
  end=$(date +%s.%N)
  "$PYTHON" -c "print(f'{($end - $start) / $RUNS:.3f}')"
}
peer_s=$(time_runs peer)
ours_s=$(time_runs ours)
echo "gate an image with $FINDINGS findings ($RUNS runs each, $PROFILE build):"
echo "  aws-cli describe-image-scan-findings + python: ${peer_s}s per run"
echo "  scan-gate:                                     ${ours_s}s per run"
"$PYTHON" -c "print(f'  ratio (aws-cli+python / scan-gate): {$peer_s / $ours_s:.1f}x')"
