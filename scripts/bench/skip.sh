#!/usr/bin/env bash
# Benchmark: an unchanged service through the whole `img-tag | img-build | img-push`, with
# `img-build --skip-if-present` against a normal rebuild and push, in one run, alternating.
# Issue 9's target: the skipping pipeline at least 10x faster.
#
# The service is the sample application (examples/sample-app), copied into a temporary git
# repository; its sources never change during the run, as for an untouched service in a monorepo.
#   rebuild  img-tag --tag raw:<run> --tag content | img-build | img-push
#            img-build's default builder (auto: the daemon's BuildKit) with the local build cache
#            warm, as in CI after a cache restore: every step comes from cache, and img-push finds
#            every layer already in the registry. This is the cheapest a rebuild gets, so the
#            ratio is the least favourable to skipping.
#   cold     the same rebuild on a host without the local build cache, as a fresh CodeBuild host
#            without a cache restore: before each cold run (untimed) the repository's local images
#            are removed and the daemon's build cache is pruned (`docker builder prune -af`; the
#            locally made base image stays, where a real host would also pull it).
#   skip     img-tag --tag raw:<run> --tag content | img-build --skip-if-present | img-push
#            the context is hashed, the content tag is found in the registry, img-push copies the
#            manifest under the new tag (no build, no layer traffic).
# Every run pushes a new tag (raw:<pipeline>-<round>), so both pipelines really add a tag to the
# registry. One untimed warm-up run of each comes first (it builds and pushes the image and its
# content tag, and warms the build cache); then BENCH_RUNS rounds, the order alternating.
# Wall time is measured around the whole pipeline (three processes).
#
# Usage: scripts/bench/skip.sh [--runs N]      (default 7; or BENCH_RUNS)
# BENCH_PROFILE=dev times the debug binaries instead of the release ones; BENCH_BUILD=0 skips
# the cargo build (times the binaries already in target/).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

runs="${BENCH_RUNS:-7}"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    *) echo "unknown argument: $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

. scripts/bench/common.sh
export BENCH_RUNS="$runs"
in_services_namespace "$0"
bench_tools ecr-repo img-tag img-build img-push
"$bin/img-build" --help | grep -q -- --skip-if-present \
  || { echo "$bin/img-build has no --skip-if-present: rebuild it" >&2; exit 1; }

# The local ECR's host name: img-build and img-push get their token from the ECR API server.
registry="$IMGPIPE_ECR_REGISTRY"
repository="bench-skip-$$"
"$bin/ecr-repo" -q --no-input --repository "$repository" >/dev/null
export DOCKER_CONFIG="$(mktemp -d)"

work="$(mktemp -d)"
cleanup() {
  docker image ls --format '{{.Repository}}:{{.Tag}}' "$registry/$repository" 2>/dev/null \
    | xargs -r docker image rm >/dev/null 2>&1 || true
  "$IMGPIPE_AWS_CLI" ecr delete-repository --repository-name "$repository" --force >/dev/null 2>&1 || true
  rm -rf "$work" "$DOCKER_CONFIG"
}
trap cleanup EXIT

cp -r examples/sample-app "$work/app"
git -C "$work/app" init -q
git -C "$work/app" add -A
git -C "$work/app" -c user.name=bench -c user.email=bench@localhost commit -qm "sample app"

# pipeline NAME TAG [img-build flags...]: runs the pipeline, prints the wall time in seconds.
pipeline() {
  local name="$1" tag="$2"; shift 2
  local start end
  start=$(date +%s.%N)
  if ! ( "$bin/img-tag" --no-input -q --context "$work/app" --registry "$registry" \
           --repository "$repository" --tag "raw:$tag" --tag content \
         | "$bin/img-build" -q "$@" "$work/app" \
         | "$bin/img-push" -q >"$work/$name.json" ) 2>"$work/$name.err"; then
    echo "$name failed:" >&2; tail -20 "$work/$name.err" >&2; exit 1
  fi
  end=$(date +%s.%N)
  python3 -c 'import sys; print("%.3f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$start" "$end"
}

skipped() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["build"].get("skipped"))' "$1"; }

echo "warm-up (untimed): build, push, content tag" >&2
pipeline rebuild warm-rebuild >/dev/null
pipeline skip warm-skip --skip-if-present >/dev/null
[ "$(skipped "$work/skip.json")" = True ] || { echo "the warm-up skip run did not skip" >&2; exit 1; }

: >"$work/results"
for i in $(seq 1 "$runs"); do
  if [ $((i % 2)) -eq 1 ]; then order="rebuild skip"; else order="skip rebuild"; fi
  order="$order cold"
  for who in $order; do
    if [ "$who" = skip ]; then
      t=$(pipeline skip "skip-$i" --skip-if-present)
      [ "$(skipped "$work/skip.json")" = True ] || { echo "round $i: skip run built" >&2; exit 1; }
    elif [ "$who" = cold ]; then
      docker image ls --format '{{.Repository}}:{{.Tag}}' "$registry/$repository" \
        | xargs -r docker image rm >/dev/null 2>&1 || true
      # (The bare docker CLI warns on stderr that its legacy builder is deprecated: not ours.)
      docker builder prune -af >/dev/null 2>&1 || { echo "docker builder prune failed" >&2; exit 1; }
      t=$(pipeline cold "cold-$i")
    else
      t=$(pipeline rebuild "rebuild-$i")
    fi
    echo "round $i: $who $t s" >&2
    echo "$who $t" >>"$work/results"
  done
done

builder=$(python3 -c 'import json,sys; b=json.load(open(sys.argv[1]))["build"]; print(b["builder"], "%d/%d steps cached" % (b["cached_steps"], b["steps"]))' "$work/rebuild.json")
echo "sample-app, $profile binaries, registry $registry, $runs rounds; rebuild: $builder"
python3 - "$work/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, wall = line.split()
    rows.setdefault(name, []).append(float(wall))
med = {}
for name in ("rebuild", "cold", "skip"):
    med[name] = statistics.median(rows[name])
    print("%-8s wall (s): %s | median %.3f" % (name, " ".join("%.3f" % x for x in rows[name]), med[name]))
for name, what in (("cold", "no build cache: a fresh CodeBuild host, the default"),
                   ("rebuild", "warm build cache: the cheapest rebuild")):
    ratio = med[name] / med["skip"] if med["skip"] else float("nan")
    print("ratio %s/skip (medians, %s): %.1fx (target: >= 10x)" % (name, what, ratio))
PY
