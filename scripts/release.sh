#!/usr/bin/env bash
# Builds the imgpipe release: one multi-call binary, imgpipe, that runs on every CodeBuild Linux
# image, Amazon Linux 2 (glibc 2.26) included, a link to it for every tool, and each tool's man
# page and shell completions.
#
#   target/dist/imgpipe-<version>-x86_64-linux.tar.gz
#       imgpipe-<version>-x86_64-linux/bin/imgpipe                 the binary (stripped)
#       imgpipe-<version>-x86_64-linux/bin/<tool> -> imgpipe        a link per `imgpipe --list`
#                                                                  name (docker-credential-ecr-login too)
#       imgpipe-<version>-x86_64-linux/share/man/man1/<tool>.1
#       imgpipe-<version>-x86_64-linux/share/bash-completion/completions/<tool>
#       imgpipe-<version>-x86_64-linux/share/zsh/site-functions/_<tool>
#       imgpipe-<version>-x86_64-linux/share/fish/vendor_completions.d/<tool>.fish
#   target/dist/install.sh       the installer a buildspec runs (scripts/install.sh)
#   target/dist/SHA256SUMS       sha256sum lines for both
#
# How: a plain `cargo build --release` links against this machine's glibc (2.36; the binaries
# then need GLIBC_2.34), too new for Amazon Linux 2. So the tools are linked by zig against a
# glibc 2.17 baseline with cargo-zigbuild (`--target x86_64-unknown-linux-gnu.2.17`); both are
# installed here, under target/release-tools, nothing global: zig from PyPI (`ziglang`) in a
# virtual environment, cargo-zigbuild with `cargo install --root`. Then every binary's dynamic
# symbols are read (objdump -T) and the release fails if it needs a glibc newer than 2.17.
# Man pages and completions come from the binaries themselves (`<tool> --generate man|bash|...`,
# the same clap command as --help). Cold, this takes about 5 minutes on 2 cores; builds go to
# target/zigbuild, apart from target/debug and target/release.
#
# arm64 (Graviton CodeBuild images): `scripts/release.sh --arch aarch64`, on this x86_64 machine,
# gives imgpipe-<version>-aarch64-linux.tar.gz beside the x86_64 one (same folder, one SHA256SUMS
# for both). zig cross-links against glibc 2.17 for aarch64 as it does for x86_64, and the C
# dependencies (aws-lc-sys with its own aarch64 assembly, libgit2, zlib) build with zig's clang.
# The compiler: rustup's, when it has the aarch64-unknown-linux-gnu target; else (these machines,
# whose rustup cannot download targets) Debian's rustc-web 1.96 with its aarch64 standard library
# (`libstd-rust-web-dev:arm64`), installed here when missing, run as CARGO=/usr/bin/cargo with
# RUSTC=/usr/bin/rustc. Cold, the aarch64 build and its test take about 8 minutes on 2 cores. Then the arm64
# binary is tested, not only built: scripts/arm64-smoke.sh runs the main job with it under
# qemu-user (skip with --no-smoke).
#
# Usage: scripts/release.sh [--arch x86_64|aarch64] [--out DIR] [--version V] [--from DIR]
#                           [--only TOOL[,TOOL...]] [--no-smoke]
#   --arch     the CPU to build for (default x86_64; see above for aarch64)
#   --no-smoke aarch64: do not run scripts/arm64-smoke.sh on the archive
#   --out      where the archive, install.sh and SHA256SUMS go (default target/dist)
#   --version  the version in the archive's name (default: the workspace's version)
#   --from     package the imgpipe binary already built in DIR instead of building (e.g.
#              target/debug, for tests); the glibc limit is then reported, not enforced
#   --only     link only these tools (a small archive for tests; default: every tool)
# Progress goes to stderr as "release: ..."; stdout gets the archive's path, last.
# Exit status: 0 done; 1 the binary needs a glibc newer than the baseline; 2 usage; other: a
# failed step (its own message above).
set -euo pipefail
# The rest is one brace group, which bash reads whole before running it: editing this file during
# a (long) release build cannot change what the running build does.
{

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/target/release-tools"
# Checked to work together (the first release build, on Debian 12 with Rust 1.95).
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1
GLIBC_BASELINE=2.17

arch=x86_64
out="$ROOT/target/dist"
version=""
from=""
only=""
smoke=true

say() { echo "release: $*" >&2; }
die() {
  echo "release: $1" >&2
  exit "${2:-1}"
}
usage() { die "$1 (usage: scripts/release.sh [--arch x86_64|aarch64] [--out DIR] [--version V] [--from DIR] [--only TOOL,...] [--no-smoke])" 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --arch) [ $# -ge 2 ] || usage "--arch needs a value"; arch="$2"; shift 2 ;;
    --out) [ $# -ge 2 ] || usage "--out needs a directory"; out="$2"; shift 2 ;;
    --version) [ $# -ge 2 ] || usage "--version needs a value"; version="$2"; shift 2 ;;
    --from) [ $# -ge 2 ] || usage "--from needs a directory"; from="$2"; shift 2 ;;
    --only) [ $# -ge 2 ] || usage "--only needs tool names"; only="$2"; shift 2 ;;
    --no-smoke) smoke=false; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) usage "unknown argument '$1'" ;;
  esac
done

case "$arch" in
  x86_64 | aarch64) ;;
  *) usage "--arch must be x86_64 or aarch64, not '$arch'" ;;
esac
triple="$arch-unknown-linux-gnu"
cargo="${CARGO:-cargo}" # the cargo that runs us, if one does
host_cargo="$cargo"     # for what runs here (cargo-zigbuild, the tool list): never Debian's
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$ROOT"

need_command() { # need_command COMMAND DEBIAN-PACKAGE
  command -v "$1" >/dev/null 2>&1 && return
  say "installing $2 (for $1)"
  if ! { apt-get update -qq && apt-get install -y -qq "$2"; } >&2; then
    die "$1 is missing and 'apt-get install $2' failed: install it and run again" 78
  fi
}
need_command objdump binutils
need_command python3 python3
need_command sha256sum coreutils

if [ -z "$version" ]; then
  version="$("$cargo" metadata --no-deps --format-version 1 --offline 2>/dev/null \
    | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="imgpipe"))')" \
    || die "cannot read the workspace version from cargo metadata: pass --version" 78
fi
# The one binary shipped; the tools are links to it, named as `imgpipe --list` says once it is
# built (below).
bin=imgpipe

# --- Build ------------------------------------------------------------------------------------
if [ -z "$from" ]; then
  if rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
    :
  elif [ "$arch" = aarch64 ]; then
    if [ ! -x /usr/bin/cargo ] || [ ! -d /usr/lib/rustlib/$triple/lib ]; then
      say "installing Debian's rustc-web and cargo-web with the $triple standard library"
      if ! { dpkg --add-architecture arm64 && apt-get update -qq \
        && apt-get install -y -qq rustc-web cargo-web libstd-rust-web-dev:arm64; } >&2; then
        die "the Rust target $triple is missing: neither rustup nor 'apt-get install rustc-web cargo-web libstd-rust-web-dev:arm64' gave it" 78
      fi
    fi
    cargo=/usr/bin/cargo
    export RUSTC=/usr/bin/rustc
    say "compiler: $("$RUSTC" --version) (Debian's rustc-web, for $triple)"
  else
    die "the Rust target $triple is not installed: run 'rustup target add $triple'" 78
  fi
  venv="$TOOLS/venv"
  if ! "$venv/bin/python" -m ziglang version >/dev/null 2>&1 \
    || [ "$("$venv/bin/pip" show ziglang 2>/dev/null | sed -n 's/^Version: //p')" != "$ZIGLANG_VERSION" ]; then
    say "installing zig $ZIGLANG_VERSION (PyPI ziglang) into $venv"
    python3 -m venv "$venv" >&2 || die "cannot create a Python virtual environment: apt-get install python3-venv" 78
    "$venv/bin/pip" install --quiet --disable-pip-version-check "ziglang==$ZIGLANG_VERSION" >&2 \
      || die "pip install ziglang==$ZIGLANG_VERSION failed (is PyPI reachable?)" 69
  fi
  zigbuild="$TOOLS/cargo/bin/cargo-zigbuild"
  if ! "$zigbuild" --version 2>/dev/null | grep -qx "cargo-zigbuild $CARGO_ZIGBUILD_VERSION"; then
    say "installing cargo-zigbuild $CARGO_ZIGBUILD_VERSION into $TOOLS/cargo (a few minutes)"
    env -u RUSTC "$host_cargo" install --quiet --locked --version "$CARGO_ZIGBUILD_VERSION" --root "$TOOLS/cargo" cargo-zigbuild >&2 \
      || die "cargo install cargo-zigbuild failed (is crates.io reachable?)" 69
  fi
  # cargo-zigbuild runs `python3 -m ziglang` when no `zig` is on PATH: the venv's python3 first.
  export PATH="$venv/bin:$TOOLS/cargo/bin:$PATH"
  say "building $bin for $triple against glibc $GLIBC_BASELINE (zig $ZIGLANG_VERSION)"
  start=$(date +%s)
  "$cargo" zigbuild --release --locked --target "$triple.$GLIBC_BASELINE" -p imgpipe-multicall \
    --bin "$bin" --target-dir "$ROOT/target/zigbuild" >&2 || die "the release build failed (see cargo's output above)"
  say "built in $(($(date +%s) - start))s"
  bindir="$ROOT/target/zigbuild/$triple/release"
else
  bindir="$(cd "$from" && pwd)" || die "--from: no directory $from" 66
fi

# --- The glibc each binary needs ---------------------------------------------------------------
glibc_needed() { # the highest GLIBC_x.y symbol version BIN needs ("none" for a static binary)
  local dump
  if [ "$arch" = x86_64 ]; then
    dump="$(objdump -T "$1")" || return 1
  else # objdump here reads x86 only; readelf reads any architecture
    dump="$(readelf --dyn-syms -W "$1")" || return 1
  fi
  { grep -o 'GLIBC_[0-9][0-9.]*' <<<"$dump" || true; } | sed 's/^GLIBC_//' | sort -uV | tail -1 | sed 's/^$/none/'
}
newer_than() { # newer_than A B: is version A > B?
  [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -1)" = "$1" ]
}

[ -x "$bindir/$bin" ] || die "no binary $bindir/$bin (did the build succeed?)" 66
needed="$(glibc_needed "$bindir/$bin")" || die "cannot read the symbols of $bindir/$bin" 70
libs="$(readelf -d "$bindir/$bin" 2>/dev/null | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"
say "$bin needs glibc $needed (baseline $GLIBC_BASELINE); links ${libs:-nothing dynamically}"
if [ "$needed" != none ] && newer_than "$needed" "$GLIBC_BASELINE"; then
  if [ -z "$from" ]; then
    die "$bin needs glibc $needed, newer than $GLIBC_BASELINE: it would not run on Amazon Linux 2" 1
  fi
  say "note: $bin needs glibc $needed, newer than $GLIBC_BASELINE (--from: not a release build)"
fi

# The tools' names, from an imgpipe that runs here: the one packed when it is for this CPU,
# else this machine's own build (the list is the same on every CPU).
host="$bindir/$bin"
if [ "$arch" != "$(uname -m)" ]; then
  env -u RUSTC "$host_cargo" build --quiet -p imgpipe-multicall --bin "$bin" >&2 || die "building the host imgpipe for the tool list failed"
  host="$ROOT/target/debug/$bin"
fi
names="$("$host" --list)" || die "$host --list failed" 70
[ -n "$names" ] || die "$host --list names no tools" 70
if [ -n "$only" ]; then
  for wanted in ${only//,/ }; do
    grep -qx "$wanted" <<<"$names" || usage "--only: imgpipe has no tool '$wanted'"
  done
  # The credential helper comes with ecr-login, as it always has.
  names="$(tr ',' '\n' <<<"$only" | sort -u)"
  if grep -qx ecr-login <<<"$names"; then names="$names"$'\n'docker-credential-ecr-login; fi
fi

# --- Archive -----------------------------------------------------------------------------------
name="imgpipe-$version-$arch-linux"
stage="$out/.stage"
rm -rf "$stage"
top="$stage/$name"
mkdir -p "$top/bin" "$top/share/man/man1" "$top/share/bash-completion/completions" \
  "$top/share/zsh/site-functions" "$top/share/fish/vendor_completions.d"
cp "$bindir/$bin" "$top/bin/$bin"
chmod 0755 "$top/bin/$bin"
for tool in $names; do
  ln -s "$bin" "$top/bin/$tool"
done
# The man pages and completions come from the tools themselves, through links to an imgpipe
# that runs here (the same text for every CPU). The credential helper has none of its own.
gen="$(mktemp -d)"
for tool in $names; do ln -s "$host" "$gen/$tool"; done
for tool in $names; do
  [ "$tool" = docker-credential-ecr-login ] && continue
  if ! { "$gen/$tool" --generate man >"$top/share/man/man1/$tool.1" &&
    "$gen/$tool" --generate bash >"$top/share/bash-completion/completions/$tool" &&
    "$gen/$tool" --generate zsh >"$top/share/zsh/site-functions/_$tool" &&
    "$gen/$tool" --generate fish >"$top/share/fish/vendor_completions.d/$tool.fish"; }; then
    die "$tool --generate failed: cannot make its man page and completions" 70
  fi
done
rm -rf "$gen"

archive="$out/$name.tar.gz"
# Reproducible: sorted, no owners, the last commit's time, gzip without a timestamp.
epoch="$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)"
tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -cf - "$name" \
  | gzip -n -9 >"$archive.tmp" || die "cannot write $archive" 74
mv -f "$archive.tmp" "$archive"
rm -rf "$stage"
cp "$ROOT/scripts/install.sh" "$out/install.sh"
chmod 0755 "$out/install.sh"
# One SHA256SUMS for the folder: every architecture's archive of this version, and install.sh.
(cd "$out" && sha256sum imgpipe-"$version"-*-linux.tar.gz install.sh >SHA256SUMS.tmp \
  && mv -f SHA256SUMS.tmp SHA256SUMS) || die "cannot write $out/SHA256SUMS" 74

# --- Sizes -------------------------------------------------------------------------------------
size=$(stat -c %s "$bindir/$bin")
asize=$(stat -c %s "$archive")
say "$(printf '%-10s %10d bytes (%s), and %d links to it' "$bin" "$size" "$(numfmt --to=iec-i --suffix=B "$size")" "$(wc -w <<<"$names")")"
say "$(printf '%-10s %10d bytes (%s)' "archive" "$asize" "$(numfmt --to=iec-i --suffix=B "$asize")")  $archive"
say "checksums: $out/SHA256SUMS"
if [ "$arch" = aarch64 ] && [ "$arch" != "$(uname -m)" ] && $smoke; then
  say "testing the arm64 binary under qemu-user: scripts/arm64-smoke.sh $archive"
  "$ROOT/scripts/arm64-smoke.sh" "$archive" >&2 || die "the arm64 smoke test failed (above); the archive is in $out but not tested" 1
fi
echo "$archive"
exit 0
}
