# Sourced by the benchmarks in this folder, from the repository root.
#
# bench_tools TOOL...: starts the local services (scripts/services.sh; their variables are
# exported), builds the TOOLs unless BENCH_BUILD=0, and sets
#   profile  BENCH_PROFILE: release (the default), or dev for a debug build
#   bin      the folder holding the binaries (in cargo's target directory, wherever it is set)
# It stops the benchmark when the services do not start or a TOOL's binary is missing.
bench_tools() {
  local services dir target tool packages=()
  services="$(scripts/services.sh up)" || { echo "bench: the local services did not start" >&2; exit 1; }
  eval "$services"
  profile="${BENCH_PROFILE:-release}"
  dir="$profile"
  [ "$profile" = dev ] && dir=debug
  target="$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  bin="$target/$dir"
  for tool in "$@"; do packages+=(-p "$tool"); done
  if [ "${BENCH_BUILD:-1}" != 0 ]; then
    echo "bench: building ${*} ($profile)" >&2
    cargo build --quiet --profile "$profile" "${packages[@]}" >&2
  fi
  for tool in "$@"; do
    [ -x "$bin/$tool" ] || { echo "bench: $bin/$tool is missing (cargo build --profile $profile -p $tool)" >&2; exit 1; }
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
