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
