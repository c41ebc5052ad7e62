# Sourced by the benchmarks in this folder, from the repository root.
#
# bench_tools TOOL...: starts the local services (scripts/services.sh; their variables are
# exported), builds what ships, the imgpipe binary, unless BENCH_BUILD=0, and sets
#   profile  BENCH_PROFILE: release (the default), or dev for a debug build
#   bin      a folder with a link to imgpipe per tool, as a release installs them (in cargo's
#            target directory, wherever it is set: <profile dir>/imgpipe-links)
# It stops the benchmark when the services do not start or a TOOL is missing.
bench_tools() {
  local services dir target tool
  services="$(scripts/services.sh up)" || { echo "bench: the local services did not start" >&2; exit 1; }
  eval "$services"
  profile="${BENCH_PROFILE:-release}"
  dir="$profile"
  [ "$profile" = dev ] && dir=debug
  target="$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  if [ "${BENCH_BUILD:-1}" != 0 ]; then
    echo "bench: building imgpipe ($profile)" >&2
    cargo build --quiet --profile "$profile" -p imgpipe-multicall --bin imgpipe >&2
  fi
  [ -x "$target/$dir/imgpipe" ] \
    || { echo "bench: $target/$dir/imgpipe is missing (cargo build --profile $profile -p imgpipe-multicall)" >&2; exit 1; }
  bin="$target/$dir/imgpipe-links"
  rm -rf "$bin.new"
  mkdir -p "$bin.new"
  for tool in imgpipe $("$target/$dir/imgpipe" --list); do ln -sf ../imgpipe "$bin.new/$tool"; done
  rm -rf "$bin"
  mv "$bin.new" "$bin"
  for tool in "$@"; do
    [ -x "$bin/$tool" ] || { echo "bench: imgpipe has no tool $tool" >&2; exit 1; }
  done
}

# in_services_namespace "$0" "$@": runs the benchmark again inside the services' private
# namespace (scripts/services.sh run), where ECR's registry host names resolve to the local ECR,
# unless it runs there already.
in_services_namespace() {
  if [ -n "${IMGPIPE_ECR_REGISTRY:-}" ] && grep -q "$IMGPIPE_ECR_REGISTRY" /etc/hosts; then
    return 0
  fi
  scripts/services.sh up >/dev/null || { echo "bench: the local services did not start" >&2; exit 1; }
  exec scripts/services.sh run -- "$@"
}

# baseline_img_build REF: prints the path of the per-tool img-build binary of commit REF (release),
# building it into target/bench-baseline the first time (target/bench-baseline/REF says which
# commit is there). img-build.sh compares against it; sizes.sh times its start-up.
baseline_img_build() {
  local ref="$1" dir
  dir="$(pwd)/target/bench-baseline"
  if [ ! -x "$dir/target/release/img-build" ] || [ "$(cat "$dir/REF" 2>/dev/null)" != "$ref" ]; then
    echo "bench: building the per-tool img-build of $ref (release) in $dir ..." >&2
    rm -rf "$dir/src"
    mkdir -p "$dir"
    git archive --prefix=src/ "$ref" | tar -x -C "$dir"
    CARGO_TARGET_DIR="$dir/target" cargo build --release -p img-build \
      --manifest-path "$dir/src/Cargo.toml" >&2
    echo "$ref" >"$dir/REF"
  fi
  echo "$dir/target/release/img-build"
}
