#!/usr/bin/env bash
# Sizes: each tool's binary (release build as built, which the release profile already strips of
# symbols; after `strip --strip-all`; gzip -9 of that), the portable (cargo-zigbuild, glibc 2.17)
# binaries in the release archive when scripts/release.sh has made one (target/dist), the archive
# itself, and what a buildspec must download to install imgpipe (archive + install.sh +
# SHA256SUMS) against what the seed's aws-cli costs.
#
# aws-cli: version 1 from PyPI is measured here (the wheels `pip download` fetches, and the
# installed size: a fresh virtual environment with awscli, minus an empty one), at the version the
# local services use. aws-cli version 2 (AWS's awscli-exe-linux-x86_64.zip) cannot be fetched from
# this machine (no internet access), and its size is not measured by this script.
#
# Usage: scripts/bench/sizes.sh       (builds the release binaries first; BENCH_BUILD=0 skips that)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
tools=(ecr-login ecr-repo img-tag img-build img-push img-manifest scan-gate lifecycle-set)
[ "${BENCH_BUILD:-1}" = 0 ] || cargo build --quiet --release --workspace --bins

work="$(mktemp -d /tmp/bench-sizes.XXXXXX)"
trap 'rm -rf "$work"' EXIT

mb() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 1e6:.1f}')" "$1"; }
size() { stat -c %s "$1"; }

archive=$(ls -t "$target"/dist/imgpipe-*-x86_64-linux.tar.gz 2>/dev/null | head -1 || true)
declare -A portable
if [ -n "$archive" ]; then
  tar -xzf "$archive" -C "$work"
  # A tool is its own binary in older archives, a link to imgpipe in newer ones (not counted).
  for tool in "${tools[@]}" imgpipe; do
    f=$(ls "$work"/imgpipe-*/bin/"$tool" 2>/dev/null || true)
    [ -n "$f" ] && [ ! -L "$f" ] && portable[$tool]=$(size "$f")
  done
fi

echo "binary sizes in MB (10^6 bytes)"
printf '%-14s %10s %10s %10s %12s\n' tool release stripped "gzip -9" portable
tot_r=0; tot_s=0; tot_g=0; tot_p=0
for tool in "${tools[@]}"; do
  bin="$target/release/$tool"
  [ -x "$bin" ] || { echo "bench: $bin is missing (cargo build --release)" >&2; exit 1; }
  cp "$bin" "$work/$tool"
  strip --strip-all "$work/$tool"
  gzip -9 -c "$work/$tool" >"$work/$tool.gz"
  r=$(size "$bin"); s=$(size "$work/$tool"); g=$(size "$work/$tool.gz"); p=${portable[$tool]:-}
  tot_r=$((tot_r + r)); tot_s=$((tot_s + s)); tot_g=$((tot_g + g)); tot_p=$((tot_p + ${p:-0}))
  printf '%-14s %10s %10s %10s %12s\n' "$tool" "$(mb "$r")" "$(mb "$s")" "$(mb "$g")" "${p:+$(mb "$p")}"
done
printf '%-14s %10s %10s %10s %12s\n' total "$(mb $tot_r)" "$(mb $tot_s)" "$(mb $tot_g)" \
  "$([ -n "$archive" ] && mb $tot_p)"
# The multi-call binary: every tool in one (issue 21).
bin="$target/release/imgpipe"
if [ -x "$bin" ]; then
  cp "$bin" "$work/imgpipe"
  strip --strip-all "$work/imgpipe"
  gzip -9 -c "$work/imgpipe" >"$work/imgpipe.gz"
  p=${portable[imgpipe]:-}
  printf '%-14s %10s %10s %10s %12s\n' "imgpipe (all)" "$(mb "$(size "$bin")")" \
    "$(mb "$(size "$work/imgpipe")")" "$(mb "$(size "$work/imgpipe.gz")")" "${p:+$(mb "$p")}"
fi
echo "(release: target/release as cargo builds it, profile strip = \"symbols\", built $(date -u -r "$target/release/img-build" '+%F %H:%M UTC');"
echo " portable: the binaries in the release archive, cargo-zigbuild against glibc 2.17, stripped)"

echo
if [ -n "$archive" ]; then
  a=$(size "$archive")
  dl=$a
  for f in install.sh SHA256SUMS; do
    [ -f "$target/dist/$f" ] && dl=$((dl + $(size "$target/dist/$f")))
  done
  echo "release archive: $(basename "$archive") $(mb "$a") MB (made $(date -u -r "$archive" '+%F %H:%M UTC'))"
  echo "a buildspec downloads (archive + install.sh + SHA256SUMS): $(mb "$dl") MB;" \
    "installed (the extracted archive): $(mb "$(du -sb "$work"/imgpipe-*/ | cut -f1)") MB"
else
  echo "release archive: none in $target/dist (run scripts/release.sh)"
fi

# aws-cli v1 from PyPI, at the version the local services run.
eval "$(scripts/services.sh env)"
version=$("$IMGPIPE_AWS_CLI" --version 2>&1 | sed -n 's|^aws-cli/\([0-9.]*\).*|\1|p')
python3 -m venv "$work/empty"
python3 -m venv "$work/awscli"
if "$work/awscli/bin/pip" download -q -d "$work/wheels" "awscli==$version" >/dev/null 2>&1 \
  && "$work/awscli/bin/pip" install -q --no-index --find-links "$work/wheels" "awscli==$version" >/dev/null 2>&1; then
  wheels=$(du -sb "$work/wheels" | cut -f1)
  installed=$(( $(du -sb "$work/awscli" | cut -f1) - $(du -sb "$work/empty" | cut -f1) ))
  echo "aws-cli $version (v1, PyPI): download (wheels, with dependencies) $(mb "$wheels") MB;" \
    "installed $(mb "$installed") MB (a virtual environment, minus an empty one)"
  if [ -n "$archive" ]; then
    python3 -c "import sys; w, d = int(sys.argv[1]), int(sys.argv[2]); print(f'ratio: aws-cli v1 download / imgpipe download: {w / d:.2f}x')" "$wheels" "$dl"
  fi
else
  echo "aws-cli $version (v1): pip could not fetch it here; not measured"
fi
echo "aws-cli v2 (awscli-exe-linux-x86_64.zip): not measured here (no internet access)"
