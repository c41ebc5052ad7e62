#!/usr/bin/env bash
# Sizes, build time and start-up of what ships (issue 21), beside aws-cli v1 and the figures of
# the per-tool binaries imgpipe shipped before (the issue's own measures, on this machine).
#
# For each architecture with a release archive in target/dist (scripts/release.sh, and
# scripts/release.sh --arch aarch64):
#   installed   the extracted archive (the imgpipe binary, a link per tool, man pages and
#               completions): du -sb                                       target: <= 35 MB
#   download    the archive, install.sh and SHA256SUMS: what a buildspec fetches
#                                                                          target: <= 14 MB
# and, on this machine:
#   build       a cold `cargo build --release --locked` of the workspace (what ships: the imgpipe
#               binary), in an empty target directory, the crates already fetched
#                                                                          target: <= 320 s (half of 640 s)
#   start-up    `img-build --version` through its link to imgpipe, built here (cargo build
#               --release) and from the x86_64 archive (what a buildspec installs), against the
#               per-tool img-build binary of commit b67b2ab (built once into target/bench-baseline,
#               which scripts/bench/img-build.sh shares), the median of 301 runs each,
#               alternating; and `aws --version` (aws-cli v1), the median of 21 runs
#                                                                          target: no slower
# The "before" column: the issue's own figures for the eight per-tool binaries (installed,
# downloaded, cold build, measured on this machine), and the start-up measured here and now.
# aws-cli v1 comes from PyPI at the version the local services use: the wheels `pip download`
# fetches, and a fresh virtual environment with it minus an empty one. aws-cli v2 cannot be fetched
# here (no internet access) and is not measured.
#
# Usage: scripts/bench/sizes.sh [--no-build-time]
#   --no-build-time   skip the cold build (it takes minutes); its row then says so
# Missing archives are reported as such; make them with scripts/release.sh [--arch aarch64].
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
build_time=true
case "${1:-}" in
  "") ;;
  --no-build-time) build_time=false ;;
  *) echo "usage: scripts/bench/sizes.sh [--no-build-time]" >&2; exit 2 ;;
esac
target="$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
baseline_ref=b67b2ab

work="$(mktemp -d /tmp/bench-sizes.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mb() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 1e6:.1f} MB')" "$1"; }
size() { stat -c %s "$1"; }

# --- The release archives ----------------------------------------------------------------------
declare -A installed download
for arch in x86_64 aarch64; do
  archive=$(ls -t "$target"/dist/imgpipe-*-"$arch"-linux.tar.gz 2>/dev/null | head -1 || true)
  if [ -z "$archive" ]; then
    installed[$arch]="no archive"; download[$arch]="no archive"
    continue
  fi
  mkdir -p "$work/$arch"
  tar -xzf "$archive" -C "$work/$arch"
  links=$(find "$work/$arch" -type l | wc -l)
  copies=$(find "$work/$arch" -path '*/bin/*' -type f | wc -l)
  [ "$copies" = 1 ] || { echo "bench: $archive holds $copies binaries, not one" >&2; exit 1; }
  installed[$arch]="$(mb "$(du -sb "$work/$arch" | cut -f1)")"
  dl=$(size "$archive")
  for f in install.sh SHA256SUMS; do
    [ -f "$target/dist/$f" ] && dl=$((dl + $(size "$target/dist/$f")))
  done
  download[$arch]="$(mb "$dl")"
  echo "$arch: $(basename "$archive") (made $(date -u -r "$archive" '+%F %H:%M UTC')): one binary, $links links" >&2
done

# --- aws-cli v1 --------------------------------------------------------------------------------
eval "$(scripts/services.sh up)"
version=$("$IMGPIPE_AWS_CLI" --version 2>&1 | sed -n 's|^aws-cli/\([0-9.]*\).*|\1|p')
python3 -m venv "$work/empty"
python3 -m venv "$work/awscli"
aws_installed="not measured"; aws_download="not measured"
if "$work/awscli/bin/pip" download -q -d "$work/wheels" "awscli==$version" >/dev/null 2>&1 \
  && "$work/awscli/bin/pip" install -q --no-index --find-links "$work/wheels" "awscli==$version" >/dev/null 2>&1; then
  aws_download="$(mb "$(du -sb "$work/wheels" | cut -f1)")"
  aws_installed="$(mb $(( $(du -sb "$work/awscli" | cut -f1) - $(du -sb "$work/empty" | cut -f1) )))"
fi

# --- Start-up ----------------------------------------------------------------------------------
echo "bench: building imgpipe (release)" >&2
cargo build --quiet --release --locked -p imgpipe-multicall --bin imgpipe >&2
ln -s "$target/release/imgpipe" "$work/img-build"
# shellcheck source=scripts/bench/common.sh
. scripts/bench/common.sh
old="$(baseline_img_build "$baseline_ref")"
# The archive's own link, when there is an x86_64 archive.
shipped=$(find "$work/x86_64" -path '*/bin/img-build' 2>/dev/null | head -1)
startup=$(python3 - "$work/img-build" "$old" "$IMGPIPE_AWS_CLI" "$shipped" <<'PY'
import statistics, subprocess, sys, time
def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t
# The binaries alternate, 301 runs each; aws-cli (a Python start, a hundred times longer) runs
# apart, so that it does not disturb them.
bins = {"imgpipe": sys.argv[1], "per-tool": sys.argv[2]}
if sys.argv[4]:
    bins["archive"] = sys.argv[4]
runs = {name: [] for name in bins}
for _ in range(301):
    for name, path in bins.items():
        runs[name].append(timed([path, "--version"]))
runs["aws"] = [timed([sys.argv[3], "--version"]) for _ in range(21)]
runs.setdefault("archive", [])
med = lambda n: "%.2f" % (statistics.median(runs[n]) * 1000) if runs[n] else "-"
print(" ".join(med(n) for n in ("imgpipe", "per-tool", "aws", "archive")))
PY
)
read -r start_new start_old start_aws start_archive <<<"$startup"

# --- Cold build --------------------------------------------------------------------------------
build="not measured (--no-build-time)"
if $build_time; then
  cargo fetch --locked >/dev/null
  cold="$work/cold-target"
  echo "bench: a cold cargo build --release (minutes) ..." >&2
  start=$(date +%s.%N)
  CARGO_TARGET_DIR="$cold" cargo build --quiet --release --locked >&2
  build=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f} s')" "$start" "$(date +%s.%N)")
  binaries=$(find "$cold/release" -maxdepth 1 -type f -executable | wc -l)
  build="$build ($binaries binary)"
  rm -rf "$cold"
fi

# --- The table ---------------------------------------------------------------------------------
row() { printf '%-22s %-22s %-16s %-16s %-18s %s\n' "$@"; }
echo "imgpipe $(git describe --always --dirty), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
row "" "imgpipe x86_64" "imgpipe aarch64" "before (issue)" "aws-cli $version v1" "target"
row "installed" "${installed[x86_64]}" "${installed[aarch64]}" "125.6 MB" "$aws_installed" "<= 35 MB"
row "download" "${download[x86_64]}" "${download[aarch64]}" "48.7 MB" "$aws_download" "<= 14 MB"
row "cold release build" "$build" "-" "640 s" "-" "<= 320 s"
row "--version start-up" "$start_new ms" "-" "$start_old ms" "$start_aws ms" "<= before"
row "  (the archive's)" "$start_archive ms" "-" "" "" ""
echo "(MB = 10^6 bytes; installed: du -sb of the extracted archive; start-up: img-build --version, median of 301; aws --version, of 21)"
