#!/usr/bin/env bash
# Installs the imgpipe tools from a release archive (made by scripts/release.sh) after checking
# its SHA-256, so a buildspec's install phase is one line:
#
#   curl -fsSL https://HOST/imgpipe/0.1.0/install.sh | bash -s -- https://HOST/imgpipe/0.1.0/
#
# Usage: install.sh [--prefix DIR] [--sha256 HEX | --sums URL|PATH] [--share DIR] ARCHIVE|BASE/
#   ARCHIVE    the release archive: an http(s):// URL (downloaded with curl), a file:// URL or a
#              local path (copied)
#   BASE/      the release's folder (a URL or path ending in /): the archive for this machine
#              (`uname -m`: x86_64 or aarch64) is the one its SHA256SUMS lists for it
#   --prefix   where the binaries go (default /usr/local/bin); also gets the
#              docker-credential-ecr-login link to ecr-login
#   --sha256   the archive's expected SHA-256 (64 hex digits). Pinning it in the buildspec also
#              protects against a changed file on the server, which SHA256SUMS from the same
#              server cannot
#   --sums     the SHA256SUMS file to check against (default: SHA256SUMS next to the archive)
#   --share    also install the man pages and completions under DIR (e.g. /usr/local/share):
#              DIR/man/man1, DIR/bash-completion/completions, DIR/zsh/site-functions,
#              DIR/fish/vendor_completions.d
#
# Nothing is installed unless the checksum matches, the archive unpacks, and its binaries run on
# this machine. Each binary replaces the installed one atomically (a rename), so a running tool
# is not disturbed; identical ones are left alone, so a second run changes nothing.
# Needs bash, curl (for URLs), sha256sum, tar and gzip: all on every CodeBuild Linux image.
# Messages go to stderr as "imgpipe-install: ..."; nothing goes to stdout.
# Exit status (as the tools'): 0 installed; 2 usage; 65 checksum mismatch or a bad archive;
# 66 a local file missing; 69 a download failed; 74 cannot write the prefix; 78 the archive is
# for another platform or its binaries do not run here.
set -euo pipefail

say() { echo "imgpipe-install: $*" >&2; }
die() {
  echo "imgpipe-install: $1" >&2
  exit "$2"
}
synopsis="usage: install.sh [--prefix DIR] [--sha256 HEX | --sums URL|PATH] [--share DIR] ARCHIVE|BASE/"
usage() { die "$1 ($synopsis)" 2; }

prefix=/usr/local/bin
sha256=""
sums=""
share=""
archive=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || usage "--prefix needs a directory"; prefix="$2"; shift 2 ;;
    --sha256) [ $# -ge 2 ] || usage "--sha256 needs a checksum"; sha256="$2"; shift 2 ;;
    --sums) [ $# -ge 2 ] || usage "--sums needs a URL or path"; sums="$2"; shift 2 ;;
    --share) [ $# -ge 2 ] || usage "--share needs a directory"; share="$2"; shift 2 ;;
    -h | --help)
      # Piped into bash, there is no file to read the help from.
      if [ -f "$0" ]; then sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; else say "$synopsis"; fi
      exit 0
      ;;
    -*) usage "unknown option '$1'" ;;
    *) [ -z "$archive" ] || usage "one archive only, got '$archive' and '$1'"; archive="$1"; shift ;;
  esac
done
[ -n "$archive" ] || usage "name the release archive to install"
[ -n "$prefix" ] || usage "--prefix must not be empty"
if [ -n "$sha256" ]; then
  [[ "$sha256" =~ ^[0-9a-fA-F]{64}$ ]] || usage "--sha256 must be 64 hexadecimal digits, got '$sha256'"
  [ -z "$sums" ] || usage "give --sha256 or --sums, not both"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/imgpipe-install.XXXXXX")" || die "cannot create a temporary directory" 74
trap 'rm -rf "$work"' EXIT

fetch() { # fetch SOURCE DEST WHAT
  case "$1" in
    http://* | https://*)
      command -v curl >/dev/null 2>&1 || die "curl is needed to download $3: install it, or pass a local path" 69
      local err
      if ! err="$(curl -fsSL --retry 3 --retry-connrefused -o "$2" "$1" 2>&1)"; then
        # curl says the same on each retry: its last line is enough.
        die "cannot download $3 from ${1%%[?#]*}: ${err##*$'\n'}; check the URL and the network" 69
      fi
      ;;
    file://*) fetch "${1#file://}" "$2" "$3" ;;
    *://*) usage "cannot fetch $3 from '$1': use an http(s):// or file:// URL, or a local path" ;;
    *)
      [ -f "$1" ] || die "no such file: $1 ($3)" 66
      cp "$1" "$2" || die "cannot read $1 ($3)" 66
      ;;
  esac
}

# A release's folder: its SHA256SUMS names the archive for this machine, and vouches for it.
if [[ "${archive%%[?#]*}" == */ ]]; then
  machine="$(uname -m)"
  case "$machine" in
    x86_64 | aarch64) ;;
    *) die "imgpipe is released for x86_64 and aarch64 Linux, and this machine is $machine (nothing was installed)" 78 ;;
  esac
  [ -z "$sha256" ] || usage "--sha256 pins one archive: name the archive, not the release's folder"
  [ -n "$sums" ] || sums="${archive}SHA256SUMS"
  fetch "$sums" "$work/SHA256SUMS" "the checksum file"
  # Only names of the release's own form count: nothing with a path, nothing of another CPU.
  picked="$(awk -v m="$machine" '{ n = $2; sub(/^\*/, "", n) }
    n ~ ("^imgpipe-[0-9A-Za-z.+~_-]+-" m "-linux\\.tar\\.gz$") { print n }' "$work/SHA256SUMS")"
  [ -n "$picked" ] \
    || die "$sums lists no imgpipe archive for $machine: build one with scripts/release.sh --arch $machine (nothing was installed)" 78
  [ "$(wc -l <<<"$picked")" = 1 ] \
    || die "$sums lists more than one archive for $machine ($(tr '\n' ' ' <<<"$picked")): name the one to install (nothing was installed)" 65
  archive="$archive$picked"
fi

# The file name, without a URL's query string (a presigned S3 URL) or fragment.
name="${archive%%[?#]*}"
name="${name##*/}"
[[ "$name" == *.tar.gz ]] || usage "the archive must be a .tar.gz release archive, got '$name'"

fetch "$archive" "$work/$name" "the release archive"
actual="$(sha256sum "$work/$name" | cut -d' ' -f1)"
if [ -z "$sha256" ]; then
  if [ -z "$sums" ]; then
    base="${archive%%[?#]*}"
    if [[ "$base" == */* ]]; then sums="${base%/*}/SHA256SUMS"; else sums="SHA256SUMS"; fi
  fi
  [ -f "$work/SHA256SUMS" ] || fetch "$sums" "$work/SHA256SUMS" "the checksum file"
  # sha256sum lines are "HEX  NAME" (or "HEX *NAME" in binary mode).
  sha256="$(awk -v n="$name" '$2 == n || $2 == "*" n { print $1; exit }' "$work/SHA256SUMS")"
  [ -n "$sha256" ] || die "$sums has no checksum for $name: refusing to install an unverified archive (nothing was installed)" 65
fi
sha256="$(tr 'A-F' 'a-f' <<<"$sha256")"
if ! (cd "$work" && echo "$sha256  $name" | sha256sum -c --strict --status -); then
  die "checksum mismatch for $name: expected $sha256, got $actual; the download is corrupt or was altered: nothing was installed" 65
fi
say "verified $name (sha256 $actual)"

mkdir "$work/x"
tar -xzf "$work/$name" -C "$work/x" 2>/dev/null \
  || die "cannot unpack $name although its checksum matches: the release is broken, rebuild it with scripts/release.sh (nothing was installed)" 65
top="$(find "$work/x" -mindepth 1 -maxdepth 1)"
if [ "$(wc -l <<<"$top")" != 1 ] || [ ! -d "$top/bin" ]; then
  die "$name is not an imgpipe release archive (expected one imgpipe-<version>-<arch>-linux/bin directory; nothing was installed)" 65
fi
release="${top##*/}"
arch="${release%-linux}"
arch="${arch##*-}"
if [ "$arch" != "$(uname -m)" ]; then
  die "$release is for $arch, but this machine is $(uname -m): install the $(uname -m) archive (nothing was installed)" 78
fi
# A binary that cannot start here (too old a glibc, a wrong architecture) fails now, not later in
# the build.
for bin in "$top"/bin/*; do
  if [ ! -f "$bin" ] || [ -L "$bin" ]; then continue; fi
  if ! err="$("$bin" --version 2>&1 >/dev/null)"; then
    die "${bin##*/} from $release does not run on this machine: $(head -1 <<<"$err"); nothing was installed" 78
  fi
done

mkdir -p "$prefix" 2>/dev/null || die "cannot create $prefix: choose a writable --prefix or run as root" 74
[ -w "$prefix" ] || die "cannot write to $prefix: choose a writable --prefix or run as root" 74
installed=0
unchanged=0
place() { # place SOURCE-PATH DEST-PATH: atomically, unless identical
  if [ -L "$1" ]; then
    if [ -L "$2" ] && [ "$(readlink "$2")" = "$(readlink "$1")" ]; then
      unchanged=$((unchanged + 1))
      return
    fi
    if [ -e "$2" ] && [ ! -L "$2" ]; then
      say "replacing $2 (not a link) with a link to $(readlink "$1")"
    fi
    ln -sfn "$(readlink "$1")" "$2.imgpipe-new" && mv -Tf "$2.imgpipe-new" "$2"
  else
    if [ -f "$2" ] && [ ! -L "$2" ] && cmp -s "$1" "$2"; then
      unchanged=$((unchanged + 1))
      return
    fi
    install -m "$3" "$1" "$2.imgpipe-new" && mv -Tf "$2.imgpipe-new" "$2"
  fi || {
    rm -f "$2.imgpipe-new"
    die "cannot write $2: choose a writable --prefix or run as root" 74
  }
  installed=$((installed + 1))
}
for bin in "$top"/bin/*; do
  place "$bin" "$prefix/${bin##*/}" 0755
done
if [ -n "$share" ] && [ -d "$top/share" ]; then
  while IFS= read -r -d '' file; do
    rel="${file#"$top/share/"}"
    mkdir -p "$share/$(dirname "$rel")" 2>/dev/null || die "cannot create $share/$(dirname "$rel")" 74
    place "$file" "$share/$rel" 0644
  done < <(find "$top/share" -type f -print0)
fi
say "$release: $installed file(s) installed, $unchanged already up to date, in $prefix${share:+ and $share}"
