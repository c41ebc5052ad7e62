#!/usr/bin/env bash
# Benchmark: img-build against the docker CLI's classic builder, and img-build's BuildKit session
# against the tar upload it replaced, on the same daemon, in one run.
#
# Generates a build context of about 50,000 files and 1 GB, half of it excluded by .dockerignore
# (an excluded tree, and *.tmp files next to the kept ones), then builds it with
# `DOCKER_BUILDKIT=0 docker build` and with `img-build --builder classic`, each under
# /usr/bin/time -v, several times, alternating which client goes first.
# Prints wall time, client CPU time (user+sys) and client peak memory for every run, the medians
# and the ratios of the medians. Issue 5's target: img-build no slower, and client CPU and peak
# memory no higher.
#
# Fairness: the same daemon, context and Dockerfile for both; the generated files are synced to
# disk before the first run (else the first build competes with their writeback); the page cache
# is warmed by reading
# every file before the first run (`tar -cf /dev/null` would not do it: GNU tar skips reading file
# data when the archive is /dev/null), and the order alternates, so neither client always runs
# on caches the other warmed. Both clients' images are removed after each run, so every build does
# the same work on the daemon (the COPY step's layer stays cached for both alike).
#
# The BuildKit part (issue 19) builds the same context with BuildKit twice per client: a first
# build on a daemon whose build cache was just pruned, then a rebuild after one kept file changed
# (same size, new bytes). The clients are this img-build (its own session: file sync, only the
# files the daemon lacks) and the img-build of --baseline (default b67b2ab, the last that sent the
# context to BuildKit as a tar body through bollard). It prints bytes sent, wall time, client CPU
# and peak memory, the ratios, and this img-build's peak memory on a context a quarter the size
# (flat memory: the two should match), and the context transfer alone (see transfer() below).
# Targets: the rebuild's context transfer at least 20x faster, the first build no slower. Its
# Dockerfile (outside the context) bind-mounts the whole context into one cheap step (`du`):
# BuildKit must receive all of it, no layer copies it, and the step reruns when a file changes,
# so most of the build's time is the transfer. (With `COPY one-file`, BuildKit asks the session
# for that file alone, and the comparison would say nothing.)
#
# Usage: scripts/bench/img-build.sh [--files N] [--mb M] [--runs R] [--part P] [--baseline REF] [--keep]
#   --files N       files in the context (default 50000)
#   --mb M          total size in MB (default 1024); e.g. --files 5000 --mb 100 for a quick run
#   --runs R        builds per client (default 3)
#   --part P        classic, buildkit or all (default all)
#   --baseline REF  the commit whose img-build is the tar-upload baseline (default b67b2ab);
#                   built once into target/bench-baseline, or set IMG_BUILD_BASELINE=/path
#   --keep          keep the generated context (printed path) instead of deleting it
# Starts the local services (scripts/services.sh) and runs what ships: the imgpipe binary, built
# (release) through a link named img-build (or set IMG_BUILD=/path/to/img-build).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

files=50000
mb=1024
keep=false
runs=3
part=all
baseline_ref=b67b2ab
while [ $# -gt 0 ]; do
  case "$1" in
    --files) files="$2"; shift 2 ;;
    --mb) mb="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --part) part="$2"; shift 2 ;;
    --baseline) baseline_ref="$2"; shift 2 ;;
    --keep) keep=true; shift ;;
    *) echo "unknown argument: $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

if [ ! -x /usr/bin/time ]; then
  apt-get install -y time >/dev/null
fi
# shellcheck source=scripts/bench/common.sh
. scripts/bench/common.sh
if [ -n "${IMG_BUILD:-}" ]; then
  eval "$(scripts/services.sh up)"
  bin="$IMG_BUILD"
else
  bench_tools img-build
  bin="$bin/img-build"
fi
base="${IMGPIPE_BASE_IMAGE:-local/busybox:1}"

work="$(mktemp -d)"
tag="imgpipe-bench-$$"
cleanup() {
  docker image rm -f "$tag-cli" "$tag-img" "$tag-new" "$tag-main" >/dev/null 2>&1 || true
  if $keep; then echo "context kept in $work/ctx" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

generate() { # dir, files, MB
  local dir="$1" n="$2" m="$3"
  echo "generating $n files, $m MB (half excluded) in $dir ..." >&2
  python3 - "$dir" "$n" "$m" <<'PY'
import os, sys
root, files, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
size = max(1, mb * 1024 * 1024 // files)
block = os.urandom(4 * 1024 * 1024)
os.makedirs(root)
with open(os.path.join(root, "Dockerfile"), "w") as f:
    f.write("FROM %s\nCOPY keep/d000/f00000.bin /marker\n" % os.environ.get("BASE", "local/busybox:1"))
with open(os.path.join(root, ".dockerignore"), "w") as f:
    f.write("# half the context is excluded\nexcluded\n**/*.tmp\n!excluded/keep-me.txt\n")
per_dir = 500
for i in range(files):
    # A quarter in the excluded tree, a quarter as *.tmp beside kept files: half excluded.
    kind = i % 4
    d = i // per_dir
    if kind == 0:
        path = os.path.join(root, "excluded", "d%03d" % d, "f%05d.bin" % i)
    elif kind == 1:
        path = os.path.join(root, "keep", "d%03d" % d, "f%05d.tmp" % i)
    else:
        path = os.path.join(root, "keep", "d%03d" % d, "f%05d.bin" % i)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    off = (i * 7919) % (len(block) - size) if size < len(block) else 0
    with open(path, "wb") as f:
        f.write(block[off:off + size])
open(os.path.join(root, "keep", "d000", "f00000.bin"), "ab").close()
PY
  sed -i "s|^FROM .*|FROM $base|" "$dir/Dockerfile"
  # Warm the page cache so neither client pays for the first read (through a pipe: GNU tar does
  # not read file contents when writing to /dev/null).
  tar -cf - -C "$dir" . | cat >/dev/null
  # Write the generated files out now: otherwise the kernel flushes a gigabyte of dirty pages during
  # the first build, and whichever client runs first pays for it.
  sync
}

generate "$work/ctx" "$files" "$mb"

measure() { # name, then the command
  local name="$1"; shift
  /usr/bin/time -v "$@" >"$work/$name.out" 2>"$work/$name.err" || {
    echo "$name failed:" >&2; tail -20 "$work/$name.err" >&2; exit 1; }
  awk -v name="$name" -F': ' '
    /Elapsed \(wall clock\)/ { n = split($2, p, ":"); wall = (n == 3) ? p[1]*3600 + p[2]*60 + p[3] : p[1]*60 + p[2] }
    /User time/ { user = $2 } /System time/ { sys = $2 }
    /Maximum resident set size/ { rss = $2 }
    END { printf "%s %.2f %.2f %.1f\n", name, wall, user + sys, rss / 1024 }' "$work/$name.err"
}

if [ "$part" = classic ] || [ "$part" = all ]; then
run_cli() { DOCKER_BUILDKIT=0 measure docker-cli docker build -q -t "$tag-cli" "$work/ctx"; }
run_img() { measure img-build "$bin" --no-input -q --builder classic --tag "$tag-img" "$work/ctx"; }
: >"$work/results"
for i in $(seq 1 "$runs"); do
  if [ $((i % 2)) -eq 1 ]; then order="cli img"; else order="img cli"; fi
  for who in $order; do
    if [ "$who" = cli ]; then line=$(run_cli) || exit 1; else line=$(run_img) || exit 1; fi
    echo "run $i: $line" >&2
    echo "$line" >>"$work/results"
    docker image rm -f "$tag-cli" "$tag-img" >/dev/null 2>&1 || true
  done
done

sent=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); c=d["build"]["context"]; print(c["files"], c["bytes"])' "$work/img-build.out")
echo "context: $files files, $mb MB generated; img-build sent $sent (files bytes); $runs runs each"
python3 - "$work/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, wall, cpu, mem = line.split()
    rows.setdefault(name, []).append((float(wall), float(cpu), float(mem)))
print("%-12s %-26s %-26s %-26s" % ("client", "wall (s) runs | median", "client CPU (s)", "peak RSS (MB)"))
med = {}
for name in ("docker-cli", "img-build"):
    cols = list(zip(*rows[name]))
    med[name] = [statistics.median(c) for c in cols]
    cells = ["%s | %.2f" % (" ".join("%.1f" % x for x in c), m) for c, m in zip(cols, med[name])]
    print("%-12s %-26s %-26s %-26s" % (name, *cells))
r = lambda a, b: a / b if b else float("nan")
c, o = med["docker-cli"], med["img-build"]
print("ratio img-build/docker-cli (medians): wall %.2f, CPU %.2f, peak memory %.2f"
      % (r(o[0], c[0]), r(o[1], c[1]), r(o[2], c[2])))
PY
fi

if [ "$part" = buildkit ] || [ "$part" = all ]; then
  baseline="${IMG_BUILD_BASELINE:-}"
  if [ -z "$baseline" ]; then
    baseline="$(baseline_img_build "$baseline_ref")"
  fi
  printf 'FROM %s\nRUN --mount=type=bind,target=/ctx du -s /ctx > /context-size\n' "$base" >"$work/Dockerfile.buildkit"
  # One kept file, rewritten with new bytes of the same size.
  change() { python3 -c 'import os,sys; p=sys.argv[1]; n=os.path.getsize(p); open(p,"wb").write(os.urandom(n))' "$work/ctx/keep/d000/f00002.bin"; }
  : >"$work/bk-results"
  for i in $(seq 1 "$runs"); do
    if [ $((i % 2)) -eq 1 ]; then order="main new"; else order="new main"; fi
    for who in $order; do
      if [ "$who" = new ]; then exe="$bin"; else exe="$baseline"; fi
      docker builder prune -af >/dev/null 2>&1
      line=$(measure "$who-first" "$exe" --no-input --builder buildkit -f "$work/Dockerfile.buildkit" --tag "$tag-$who" "$work/ctx") || exit 1
      echo "run $i: $line" >&2; echo "$line" >>"$work/bk-results"
      cp "$work/$who-first.err" "$work/$who-first.$i.err"; cp "$work/$who-first.out" "$work/$who-first.$i.out"
      change
      line=$(measure "$who-rebuild" "$exe" --no-input --builder buildkit -f "$work/Dockerfile.buildkit" --tag "$tag-$who" "$work/ctx") || exit 1
      echo "run $i: $line" >&2; echo "$line" >>"$work/bk-results"
      cp "$work/$who-rebuild.err" "$work/$who-rebuild.$i.err"; cp "$work/$who-rebuild.out" "$work/$who-rebuild.$i.out"
    done
  done
  # Flat memory: this img-build's first build of a context a quarter the size.
  generate "$work/small" $((files / 4)) $((mb / 4))
  docker builder prune -af >/dev/null 2>&1
  small=$(measure new-small "$bin" --no-input -q --builder buildkit -f "$work/Dockerfile.buildkit" --tag "$tag-new" "$work/small") || exit 1
  echo "$small" >>"$work/bk-results"

  python3 - "$work" "$files" "$mb" <<'PY'
import json, statistics, sys
work, files, mb = sys.argv[1], sys.argv[2], sys.argv[3]
rows = {}
for line in open(work + "/bk-results"):
    name, wall, cpu, mem = line.split()
    rows.setdefault(name, []).append((float(wall), float(cpu), float(mem)))
def transfer(name, run):
    # The baseline: the daemon's own timing of its context steps, from the progress it prints
    # (docker's plain format, tenths of a second): "[internal] load remote build context" (the
    # tar body fetched) and "copy /context /" (unpacked). This img-build: build.context.sent.seconds,
    # from the daemon's file sync request until it has every file it asked for. (The daemon's
    # "load build context" step is no measure of the session: its timing, as the progress
    # shows it, said 0.0 s for first builds that sent 537 MB.)
    if name.startswith("new"):
        return json.load(open("%s/%s.%d.out" % (work, name, run)))["build"]["context"]["sent"]["seconds"]
    import re
    text = open("%s/%s.%d.err" % (work, name, run)).read()
    names = re.compile(r"\[internal\] load remote build context|copy /context /")
    total, found = 0.0, False
    for vertex in re.finditer(r"#(\d+) (.*)$", text, re.M):
        if names.fullmatch(vertex.group(2).strip()):
            done = re.search(r"#%s DONE ([0-9.]+)s$" % vertex.group(1), text, re.M)
            if done:
                total += float(done.group(1))
                found = True
    if not found:
        sys.exit("no context transfer step in %s.%d.err" % (name, run))
    return total
def doc(name):
    return json.load(open("%s/%s.out" % (work, name)))["build"]["context"]
kept = doc("main-first")
sent = {
    "main-first": kept["bytes"], "main-rebuild": kept["bytes"],
    "new-first": doc("new-first")["sent"]["bytes"], "new-rebuild": doc("new-rebuild")["sent"]["bytes"],
}
print()
print("BuildKit: %s files, %s MB generated, %d files and %.1f MB kept by .dockerignore; %d runs each"
      % (files, mb, kept["files"], kept["bytes"] / 1e6, len(rows["new-first"])))
print("main = the baseline img-build, the context as a tar body; new = this img-build's session")
print("%-13s %-14s %-22s %-22s %-22s" % ("build", "bytes sent", "wall (s) | median", "client CPU (s) | median", "peak RSS (MB) | median"))
med = {}
for name in ("main-first", "new-first", "main-rebuild", "new-rebuild"):
    cols = list(zip(*rows[name]))
    med[name] = [statistics.median(c) for c in cols]
    cells = ["%s | %.2f" % (" ".join("%.2f" % x for x in c), m) for c, m in zip(cols, med[name])]
    print("%-13s %-14s %-22s %-22s %-22s" % (name, "%.1f MB" % (sent[name] / 1e6), *cells))
r = lambda a, b: a / b if b else float("nan")
for kind, target in (("first", "no slower: wall ratio main/new >= 1"), ("rebuild", "the whole build; the target is on the transfer, below")):
    m, n = med["main-" + kind], med["new-" + kind]
    print("%-8s main/new (medians): wall %.1fx, client CPU %.1fx, peak memory %.2fx, bytes %.0fx   target: %s"
          % (kind, r(m[0], n[0]), r(m[1], n[1]), r(m[2], n[2]), r(sent["main-" + kind], max(sent["new-" + kind], 1)), target))
# The context transfer alone, each run's median.
runs = len(rows["new-first"])
took = {name: statistics.median(transfer(name, i) for i in range(1, runs + 1))
        for name in ("main-first", "new-first", "main-rebuild", "new-rebuild")}
print("context transfer, medians: main = the daemon's fetch and unpack of the tar body (its progress, tenths"
      " of a second); new = build.context.sent.seconds (the file sync, until the daemon has its files)")
for kind, target in (("first", "no slower"), ("rebuild", "at least 20x")):
    m, n = took["main-" + kind], took["new-" + kind]
    print("%-8s main %.2f s, new %.3f s: main/new %.1fx   target: %s" % (kind, m, n, r(m, n), target))
small = rows["new-small"][0]
print("flat memory: new peak RSS %.1f MB on the full context, %.1f MB on a quarter of it (ratio %.2f)"
      % (med["new-first"][2], small[2], r(med["new-first"][2], small[2])))
PY
fi
