#!/usr/bin/env bash
# The arm64 release, tested on this x86_64 machine: runs the main job (scripts/local-pipeline.sh:
# ecr-repo, ecr-login, img-tag, img-build, img-push and scan-gate on examples/sample-app, against
# the local services on ECR's host names) with the aarch64 imgpipe binary of a release archive,
# each tool a link to it, every one of them run by qemu-user through binfmt_misc.
#
# The repository is a new one each run (imgpipe-arm64-smoke-<pid>), so img-build finds no content
# tag and really builds, and img-push really pushes. The image built is the daemon's own platform:
# what is tested is the arm64 binary, not an arm64 image.
#
# scripts/release.sh --arch aarch64 runs it on the archive it made, and scripts/test.sh (CI) runs
# that: the cold arm64 build and this test take about 8 minutes on 2 cores.
#
# Needs: the local services (started here: they register QEMU for arm64) and the aarch64 C
# library (libc6:arm64, installed here when missing). qemu takes the binary's loader from
# /lib/ld-linux-aarch64.so.1; never point it (QEMU_LD_PREFIX, -L) at the cross toolchain's
# /usr/aarch64-linux-gnu, whose loader does not match libc6:arm64's libc (threads then hang).
#
# Usage: scripts/arm64-smoke.sh [ARCHIVE]
#   ARCHIVE   an imgpipe-<version>-aarch64-linux.tar.gz (default: the newest in target/dist)
# Exit status: 0 the main job passed with the arm64 binary; 1 it failed; 2 usage; 66 no archive;
# 78 arm64 programs cannot run here (no QEMU registration).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
say() { echo "arm64-smoke: $*" >&2; }
die() {
  say "$1"
  exit "${2:-1}"
}

case "${1:-}" in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac
[ $# -le 1 ] || die "one archive at most (usage: scripts/arm64-smoke.sh [ARCHIVE])" 2
archive="${1:-$(ls -t target/dist/imgpipe-*-aarch64-linux.tar.gz 2>/dev/null | head -1 || true)}"
[ -n "$archive" ] && [ -f "$archive" ] \
  || die "no aarch64 release archive${1:+ at $1}: make one with scripts/release.sh --arch aarch64" 66

# The services register QEMU for arm64 (binfmt_misc, F flag) before anything else.
services="$(scripts/services.sh up)" || die "the local services did not start" 1
eval "$services"
[ "${IMGPIPE_ARM64_EMULATION:-}" = ready ] \
  || die "arm64 programs cannot run here: ${IMGPIPE_ARM64_EMULATION:-no QEMU registration}" 78
if [ ! -e /lib/ld-linux-aarch64.so.1 ]; then
  say "installing the aarch64 C library (libc6:arm64)"
  { dpkg --add-architecture arm64 && apt-get update -qq && apt-get install -y -qq libc6:arm64; } >&2 \
    || die "the aarch64 C library is missing and 'apt-get install libc6:arm64' failed" 78
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar -xzf "$archive" -C "$work"
bin="$(ls "$work"/imgpipe-*/bin/imgpipe)"
# What it is: an aarch64 program, which this x86_64 kernel runs only through QEMU.
machine="$(readelf -h "$bin" | sed -n 's/^ *Machine: *//p')"
[ "$machine" = AArch64 ] || die "$bin is not an aarch64 program (readelf says: $machine)" 1
[ "$(uname -m)" != aarch64 ] || say "note: this machine is aarch64 itself: no emulation involved"
for link in "$work"/imgpipe-*/bin/*; do
  [ "$link" = "$bin" ] || [ "$(readlink "$link")" = imgpipe ] || die "$link is not a link to imgpipe" 1
done
say "$(basename "$archive"): $("$bin" --version) ($machine, under $(basename "$(sed -n 's/^interpreter //p' /proc/sys/fs/binfmt_misc/qemu-aarch64)"))"

repository="imgpipe-arm64-smoke-$$"
log="$work/pipeline.log"
if ! IMGPIPE_BIN="$bin" IMGPIPE_SAMPLE_REPOSITORY="$repository" scripts/local-pipeline.sh >"$log" 2>&1; then
  tail -40 "$log" >&2
  die "the main job failed with the arm64 binary (its last lines above)" 1
fi
# It ran the arm64 binary, built and pushed (not skipped), and the scan passed.
check() { # check PATTERN WHAT: the main job's log shows PATTERN, else it did not do WHAT
  grep -Eq "$1" "$log" || { tail -40 "$log" >&2; die "the main job did not $2 (its last lines above)" 1; }
}
check "^==> running $bin" "run $bin"
check "^img-build: built sha256:" "build the image"
check "^img-push: pushing " "push it"
check "^ +scan +pass " "pass the scan"
tail -12 "$log" >&2
say "passed: ecr-repo, ecr-login, img-tag, img-build, img-push and scan-gate ran as arm64 programs ($repository)"
