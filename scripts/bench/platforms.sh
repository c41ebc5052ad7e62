#!/usr/bin/env bash
# Benchmark: an emulated linux/arm64 build beside the native linux/amd64 build of the same
# Dockerfile on this amd64 host, in one run, alternating. Issue 20 asks for the ratio, and
# docs/img-build.md uses it to say when native ARM hosts pay off.
#
# Two workloads, both FROM the local multi-platform base (scripts/services.sh publishes the
# amd64 and the real arm64 busybox as one list, so one FROM serves both platforms):
#   sample   the sample application (examples/sample-app): two stages, a RUN step of small
#            shell commands (sh -n, sed, chmod), a COPY --from. Most CI images look like this.
#   cpu      one RUN step that is all CPU: busybox sha256sum and gzip of 64 MiB of random
#            bytes, standing in for what a compile or a minify step does to a build.
# Each run is `img-build --no-cache --platform P`, so every RUN step really runs (under QEMU
# for arm64); the base is local and the context tiny, so the time is the steps'. One untimed
# warm-up build of each first, then BENCH_RUNS rounds, the order alternating.
#
# Usage: scripts/bench/platforms.sh [--runs N]      (default 3; or BENCH_RUNS)
# BENCH_PROFILE=dev times the debug binaries instead of the release ones; BENCH_BUILD=0 skips
# the cargo build (times the binaries already in target/).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

runs="${BENCH_RUNS:-3}"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    *) echo "unknown argument: $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

. scripts/bench/common.sh
export BENCH_RUNS="$runs"
in_services_namespace "$0"
bench_tools img-build
[ "${IMGPIPE_ARM64_EMULATION:-}" = ready ] \
  || { echo "bench: no arm64 emulation here: ${IMGPIPE_ARM64_EMULATION:-unknown}" >&2; exit 1; }

work="$(mktemp -d)"
tag="bench-platforms-$$"
cleanup() {
  docker image ls --format '{{.Repository}}:{{.Tag}}' "$tag" 2>/dev/null \
    | xargs -r docker image rm >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

base="$IMGPIPE_MULTI_BASE_IMAGE"
cp -r examples/sample-app "$work/sample"
sed -i "s|^FROM local/busybox:1|FROM $base|" "$work/sample/Dockerfile"
grep -q "^FROM $base AS build" "$work/sample/Dockerfile" \
  || { echo "bench: examples/sample-app/Dockerfile no longer starts FROM local/busybox:1" >&2; exit 1; }
mkdir "$work/cpu"
printf 'FROM %s\nRUN head -c 67108864 /dev/urandom > /tmp/data && sha256sum /tmp/data > /sum && gzip -6 < /tmp/data | wc -c > /compressed && rm /tmp/data\n' "$base" \
  >"$work/cpu/Dockerfile"

# build WORKLOAD PLATFORM: one uncached build, prints the wall time in seconds.
build() {
  local workload="$1" platform="$2" start end
  start=$(date +%s.%N)
  if ! "$bin/img-build" -q --no-input --no-cache --platform "$platform" \
    --tag "$tag:$workload-${platform##*/}" "$work/$workload" >"$work/out.json" 2>"$work/err"; then
    echo "$workload $platform failed:" >&2; tail -20 "$work/err" >&2; exit 1
  fi
  end=$(date +%s.%N)
  python3 -c 'import sys; print("%.3f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$start" "$end"
}

echo "warm-up (untimed)" >&2
for workload in sample cpu; do
  build "$workload" linux/amd64 >/dev/null
  build "$workload" linux/arm64 >/dev/null
done
machine=$(docker run --rm --platform linux/arm64 "$tag:cpu-arm64" uname -m 2>/dev/null | head -1)
[ "$machine" = aarch64 ] || { echo "bench: the arm64 image does not run as aarch64 ($machine)" >&2; exit 1; }

: >"$work/results"
for i in $(seq 1 "$runs"); do
  for workload in sample cpu; do
    if [ $((i % 2)) -eq 1 ]; then order="linux/amd64 linux/arm64"; else order="linux/arm64 linux/amd64"; fi
    for platform in $order; do
      t=$(build "$workload" "$platform")
      echo "round $i: $workload $platform $t s" >&2
      echo "$workload ${platform##*/} $t" >>"$work/results"
    done
  done
done

echo "img-build --no-cache, $profile binaries, $runs rounds, $(nproc) cores; arm64 under QEMU ($(dpkg-query -W -f='${Version}' qemu-user-static 2>/dev/null || echo '?'))"
python3 - "$work/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    workload, arch, wall = line.split()
    rows.setdefault((workload, arch), []).append(float(wall))
for workload, what in (("sample", "the sample app"), ("cpu", "a CPU-bound RUN step")):
    med = {}
    for arch in ("amd64", "arm64"):
        xs = rows[(workload, arch)]
        med[arch] = statistics.median(xs)
        print("%-6s %-5s wall (s): %s | median %.3f" % (workload, arch, " ".join("%.3f" % x for x in xs), med[arch]))
    ratio = med["arm64"] / med["amd64"] if med["amd64"] else float("nan")
    print("ratio emulated arm64 / native amd64 (%s, medians): %.1fx" % (what, ratio))
PY
