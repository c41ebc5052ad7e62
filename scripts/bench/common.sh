# Sourced by the benchmarks in this folder, from the repository root.
#
# bench_tools TOOL...: starts the local services (scripts/services.sh; their variables are
# exported), builds the TOOLs unless BENCH_BUILD=0, and sets
#   profile  BENCH_PROFILE: release (the default), or dev for a debug build
#   bin      the folder holding the binaries (under CARGO_TARGET_DIR, else target/)
# It stops the benchmark when a TOOL's binary is missing.
bench_tools() {
  eval "$(scripts/services.sh up)"
  profile="${BENCH_PROFILE:-release}"
  local dir="$profile" tool packages=()
  [ "$profile" = dev ] && dir=debug
  bin="${CARGO_TARGET_DIR:-$PWD/target}/$dir"
  for tool in "$@"; do packages+=(-p "$tool"); done
  if [ "${BENCH_BUILD:-1}" != 0 ]; then
    echo "bench: building ${*} ($profile)" >&2
    cargo build --quiet --profile "$profile" "${packages[@]}" >&2
  fi
  for tool in "$@"; do
    [ -x "$bin/$tool" ] || { echo "bench: $bin/$tool is missing (cargo build --profile $profile -p $tool)" >&2; exit 1; }
  done
}
