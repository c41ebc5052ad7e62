#!/usr/bin/env bash
# Per-invocation time of `ecr-login --password-stdout` against the command it replaces,
# `aws ecr get-login-password` (aws-cli from PyPI), both against the local ECR API server,
# in one run, alternating, and prints the wall-time ratio. Target: at least 10x faster.
#
# Usage: scripts/bench/ecr-login.sh [RUNS]      (default 20 runs of each)
# BENCH_PROFILE=dev times a debug build instead of a release build.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
runs="${1:-20}"
cd "$root"
. scripts/bench/common.sh
bench_tools ecr-login
login="$bin/ecr-login"

# Both must print the same password before anything is timed.
ours_password=$("$login" --password-stdout)
peer_password=$("$IMGPIPE_AWS_CLI" ecr get-login-password --endpoint-url "$AWS_ENDPOINT_URL_ECR")
if [ "$ours_password" != "$peer_password" ]; then
  echo "bench: ecr-login and aws-cli print different passwords; not timing" >&2
  exit 1
fi

now_ns() { date +%s%N; }
ours_total=0
peer_total=0
for _ in $(seq "$runs"); do
  start=$(now_ns); "$login" --password-stdout >/dev/null; ours_total=$((ours_total + $(now_ns) - start))
  start=$(now_ns); "$IMGPIPE_AWS_CLI" ecr get-login-password --endpoint-url "$AWS_ENDPOINT_URL_ECR" >/dev/null
  peer_total=$((peer_total + $(now_ns) - start))
done

python3 - "$runs" "$ours_total" "$peer_total" <<'PY'
import sys
runs, ours, peer = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ours_ms, peer_ms = ours / runs / 1e6, peer / runs / 1e6
print(f"runs of each:                    {runs}")
print(f"ecr-login --password-stdout:     {ours_ms:8.1f} ms per call")
print(f"aws ecr get-login-password:      {peer_ms:8.1f} ms per call")
print(f"ratio (aws-cli / ecr-login):     {peer_ms / ours_ms:8.1f}x faster")
PY
