#!/usr/bin/env bash
# Local stand-ins for the services imgpipe talks to, run as real processes on loopback:
#
#   dockerd        Docker Engine 20.10 (Debian's docker.io) on a private unix socket,
#                  with a private data root; base image local/busybox:1 imported into it, and
#                  local/busybox:1-arm64 (Debian's busybox-static:arm64). Both are published
#                  in the plain registry as one multi-platform image, 127.0.0.1:5000/busybox:1.
#                  arm64 programs run under QEMU (qemu-user-static, registered with
#                  binfmt_misc) where the kernel allows; IMGPIPE_ARM64_EMULATION says which.
#   registry       distribution 2.8 (Debian's docker-registry), plain HTTP, no auth:
#                  the stand-in for the ECR data plane.
#   auth-registry  a second distribution 2.8 behind htpasswd (basic) auth, separate storage:
#                  proves that the credentials the tools hand to the daemon are the ones a
#                  registry accepts.
#   moto           moto's server (PyPI) for the ECR control-plane API, reached by the AWS SDK
#                  through AWS_ENDPOINT_URL_ECR; aws-cli v1 in the same venv as a peer client.
#   namespace      a private mount namespace (a process holding it) whose /etc/hosts maps ECR's
#                  registry host names to loopback addresses and whose CA bundle and
#                  /etc/docker/certs.d trust a local CA. dockerd runs in it, and so must the tools
#                  that talk to the ECR hosts: `scripts/services.sh run -- CMD`. The machine's own
#                  /etc/hosts, trust store and /etc/docker are never touched.
#   ecr-east, ecr-west, ecr-other
#                  one plain distribution 2.8 per ECR host (123456789012 in us-east-1 and
#                  us-west-2, 210987654321 in us-east-1), each behind
#   ecr-data-plane the local ECR data plane (scripts/ecr-data-plane.py): the ECR host names over
#                  TLS on port 443 of 127.0.0.2-4, ECR's Basic auth with the ECR API server's
#                  token, ECR's refusals (missing repository, immutable tag) and every push
#                  registered with the ECR API server (PutImage, scan on push).
#
# Usage: scripts/services.sh up|env|down|status|run -- CMD [ARGS...]
#   up      install what is missing, start what is not running, wait until all are ready,
#           then print the environment (as `env`). Idempotent.
#   env     print `export NAME=value` lines for `eval "$(scripts/services.sh env)"`.
#   down    stop exactly the processes `up` started (by pid file), keep the data. Idempotent.
#   status  one line per service: running or stopped (exit 0 if all run, 3 otherwise).
#   run     run CMD inside the services' namespace (where the ECR host names resolve), with the
#           services' environment added to this one.
#
# State (data, logs, pid files, venv) lives in $IMGPIPE_STATE_DIR, default <repo>/target/services.
# Ports: IMGPIPE_REGISTRY_PORT (5000), IMGPIPE_AUTH_REGISTRY_PORT (5001), IMGPIPE_ECR_PORT (5055).
# Only stdout of `env`/`up`/`status` is meant for machines; progress goes to stderr as "services: ...".
# Needs root for apt-get and dockerd.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${IMGPIPE_STATE_DIR:-$REPO_ROOT/target/services}"

REGISTRY_PORT="${IMGPIPE_REGISTRY_PORT:-5000}"
AUTH_REGISTRY_PORT="${IMGPIPE_AUTH_REGISTRY_PORT:-5001}"
ECR_PORT="${IMGPIPE_ECR_PORT:-5055}"
HOST=127.0.0.1

BASE_IMAGE=local/busybox:1
ARM64_BASE_IMAGE=local/busybox:1-arm64
# skopeo: a second registry client the tests read images with. gcc-aarch64-linux-gnu: the C
# compiler the buildspec runner gives an ARM_CONTAINER build, as an ARM host has its own.
APT_PACKAGES=(docker.io docker-registry apache2-utils python3-venv busybox-static curl openssl util-linux openssh-client skopeo gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
# A set checked to work together (moto's server + aws-cli v1 in one venv, `pip check` clean).
# awscli 1.46 carries its own copy of botocore (awscli/botocore); boto3/botocore are moto's,
# pinned to the pair pip resolved for it.
PIP_PINS=('moto[server]==5.2.5' 'awscli==1.46.3' 'boto3==1.44.8' 'botocore==1.44.8')

# moto's GetAuthorizationToken returns base64("AWS:<registryId>-auth-token") with registryId
# defaulting to the account id, 123456789012 unless MOTO_ACCOUNT_ID is set (we unset it when
# starting moto). It is the same on every call and in every region (moto/ecr/responses.py,
# get_authorization_token; checked against moto 5.2.5), so it is hard-coded here and checked
# against the running server by `up`. Note moto's expiresAt is fixed at 2015-01-01 (in the past).
MOTO_ACCOUNT=123456789012
AWS_USER=AWS
AWS_PASSWORD="${MOTO_ACCOUNT}-auth-token"

# Second user of the auth registry. Regression test for the X-Registry-Auth header, which the
# Docker Engine API wants as base64url (RFC 4648 §5, '-' and '_'): the standard base64 of
#   {"username":"special","password":"Sp3cial-???~~~"}
# is eyJ1c2VybmFtZSI6InNwZWNpYWwiLCJwYXNzd29yZCI6IlNwM2NpYWwtPz8/fn5+In0= , which contains both
# '+' and '/', so a client that sends standard base64 gets rejected. "???" and "~~~" yield '/' and
# '+' at any byte alignment, so this holds whatever JSON surrounds the password (field order,
# spaces, extra fields such as serveraddress; checked). '?' and '~' need no JSON escaping.
SPECIAL_USER=special
SPECIAL_PASSWORD='Sp3cial-???~~~'

# The ECR hosts: name, loopback address (port 443), account, region, backend registry port.
ECR_HOSTS=(
  "123456789012.dkr.ecr.us-east-1.amazonaws.com 127.0.0.2 123456789012 us-east-1 5002 ecr-east"
  "123456789012.dkr.ecr.us-west-2.amazonaws.com 127.0.0.3 123456789012 us-west-2 5003 ecr-west"
  "210987654321.dkr.ecr.us-east-1.amazonaws.com 127.0.0.4 210987654321 us-east-1 5004 ecr-other"
)

READY_TIMEOUT=30 # seconds a service gets to become ready
STOP_TIMEOUT=15  # seconds between SIGTERM and SIGKILL in `down`

# --- layout under $STATE --------------------------------------------------------------------
set_paths() {
  mkdir -p "$STATE"
  STATE="$(cd "$STATE" && pwd)" # absolute, so printed paths work from anywhere
  PIDS="$STATE/pids"
  LOGS="$STATE/logs"
  VENV="$STATE/venv"
  DOCKER_DIR="$STATE/docker"
  DOCKER_SOCK="$STATE/docker.sock"
  DOCKER_DATA="$DOCKER_DIR/data"
  # dockerd's exec root holds containerd's sockets (…/containerd/containerd.sock.ttrpc); unix
  # socket paths are limited to 107 bytes, so a deep $STATE falls back to a short path under /run
  # that is still private to this $STATE.
  DOCKER_EXEC="$DOCKER_DIR/run"
  if ((${#DOCKER_EXEC} + 32 > 107)); then
    DOCKER_EXEC="/run/imgpipe-$(printf '%s' "$STATE" | cksum | cut -d' ' -f1)"
  fi
  if ((${#DOCKER_SOCK} > 107)); then
    die "state dir path too long for a unix socket ($DOCKER_SOCK); set IMGPIPE_STATE_DIR to a shorter path"
  fi
  REGISTRY_DIR="$STATE/registry"
  AUTH_REGISTRY_DIR="$STATE/auth-registry"
  MOTO_DIR="$STATE/moto"
  NS_DIR="$STATE/namespace"
  TLS_DIR="$STATE/tls"
  ECR_DIR="$STATE/ecr"
}

# --- output helpers -------------------------------------------------------------------------
say() { printf 'services: %s\n' "$*" >&2; }
die() {
  printf 'services: error: %s\n' "$*" >&2
  exit 1
}

# Quote a value for a POSIX shell: bare if it is made of safe characters only, else in single
# quotes (with embedded single quotes as '\''). '~' is never left bare (tilde expansion).
shell_quote() {
  local v="$1"
  if [[ -n "$v" && "$v" =~ ^[A-Za-z0-9_./:@%+=,-]+$ ]]; then
    printf '%s' "$v"
  else
    printf "'%s'" "${v//\'/\'\\\'\'}"
  fi
}

# AWS_DEFAULT_REGION is there for aws-cli v1, which ignores AWS_REGION ("You must specify a
# region"); the Rust SDK reads AWS_REGION. Both the SDK and aws-cli v1 honour AWS_ENDPOINT_URL_ECR.
# The same server answers STS (GetCallerIdentity, which ecr-login's credential helper asks).
print_env() {
  local name value
  while IFS='=' read -r name value; do
    printf 'export %s=%s\n' "$name" "$(shell_quote "$value")"
  done <<EOF
DOCKER_HOST=unix://$DOCKER_SOCK
AWS_ENDPOINT_URL_ECR=http://$HOST:$ECR_PORT
AWS_ENDPOINT_URL_STS=http://$HOST:$ECR_PORT
AWS_ACCESS_KEY_ID=testing
AWS_SECRET_ACCESS_KEY=testing
AWS_REGION=us-east-1
AWS_DEFAULT_REGION=us-east-1
IMGPIPE_REGISTRY=$HOST:$REGISTRY_PORT
IMGPIPE_AUTH_REGISTRY=$HOST:$AUTH_REGISTRY_PORT
IMGPIPE_AUTH_REGISTRY_USER=$AWS_USER
IMGPIPE_AUTH_REGISTRY_PASSWORD=$AWS_PASSWORD
IMGPIPE_SPECIAL_USER=$SPECIAL_USER
IMGPIPE_SPECIAL_PASSWORD=$SPECIAL_PASSWORD
IMGPIPE_ECR_API=http://$HOST:$ECR_PORT
IMGPIPE_ECR_REGISTRY=${ECR_HOSTS[0]%% *}
IMGPIPE_ECR_REGISTRY_WEST=${ECR_HOSTS[1]%% *}
IMGPIPE_ECR_REGISTRY_OTHER=${ECR_HOSTS[2]%% *}
IMGPIPE_ECR_CA=$TLS_DIR/ca.crt
IMGPIPE_AWS_CLI=$VENV/bin/aws
IMGPIPE_STATE_DIR=$STATE
IMGPIPE_BASE_IMAGE=$BASE_IMAGE
IMGPIPE_ARM64_BASE_IMAGE=$ARM64_BASE_IMAGE
IMGPIPE_MULTI_BASE_IMAGE=$HOST:$REGISTRY_PORT/busybox:1
IMGPIPE_ARM64_EMULATION=$(cat "$STATE/arm64-emulation" 2>/dev/null || printf 'not checked: run scripts/services.sh up')
EOF
}

# --- process bookkeeping --------------------------------------------------------------------
# Every service has a pid file $PIDS/<name>.pid and a marker: a string that must appear in the
# process's command line (a path inside $STATE), so a recycled pid is never taken for ours.
marker_of() {
  case "$1" in
  dockerd) printf '%s' "$DOCKER_DATA" ;;
  registry) printf '%s' "$REGISTRY_DIR/config.yml" ;;
  auth-registry) printf '%s' "$AUTH_REGISTRY_DIR/config.yml" ;;
  moto) printf '%s' "$VENV/bin/moto_server" ;;
  namespace) printf '%s' "imgpipe-namespace $NS_DIR" ;;
  ecr-east | ecr-west | ecr-other) printf '%s' "$ECR_DIR/$1/config.yml" ;;
  ecr-data-plane) printf '%s' "$ECR_DIR/data-plane.json" ;;
  *) die "unknown service $1" ;;
  esac
}

# True if pid is a live (non-zombie) process whose command line contains the marker.
pid_matches() {
  local pid="$1" marker="$2" cmdline
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  pid_alive "$pid" || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$marker"* ]]
}

# Prints the pid of a running service of ours, or fails.
service_pid() {
  local name="$1" pid
  [[ -f "$PIDS/$name.pid" ]] || return 1
  pid="$(cat "$PIDS/$name.pid" 2>/dev/null)" || return 1
  pid_matches "$pid" "$(marker_of "$name")" || return 1
  printf '%s' "$pid"
}

is_running() { service_pid "$1" >/dev/null; }

# Start a command in its own session, detached from this script: stdin from /dev/null, output to
# $LOGS/<name>.log, the lock descriptor closed (else the daemon would hold `up`'s lock forever).
# The wrapper shell writes its own pid and then execs the command, so the pid file holds the
# service's real pid whether or not setsid had to fork.
# Usage: launch NAME WORKDIR COMMAND [ARGS...]
launch() {
  local name="$1" workdir="$2"
  shift 2
  local pidfile="$PIDS/$name.pid" log="$LOGS/$name.log"
  rm -f "$pidfile"
  printf '\n=== %s: starting %s\n' "$(date -u +%FT%TZ)" "$*" >>"$log"
  # shellcheck disable=SC2016 # $$, $0 and $1 are the inner shell's
  setsid bash -c 'cd "$1" && echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && shift && exec "$@"' \
    "$pidfile" "$workdir" "$@" </dev/null >>"$log" 2>&1 9>&- &
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s "$pidfile" ]] && return 0
    sleep 0.1
  done
  fail_service "$name" "did not start"
}

# Print the last lines of a service's log and exit non-zero, after stopping the half-started
# process (so the next `up` does not take it for a healthy one).
fail_service() {
  local name="$1" why="$2" pid
  printf 'services: error: %s %s; last lines of %s:\n' "$name" "$why" "$LOGS/$name.log" >&2
  tail -n 30 "$LOGS/$name.log" >&2 || true
  if pid="$(service_pid "$name")"; then
    stop_pid "$name" "$pid"
  fi
  rm -f "$PIDS/$name.pid"
  exit 1
}

# Poll `check_<name>` until it succeeds; fail loudly on timeout or if the process dies.
wait_ready() {
  local name="$1" check="$2" deadline=$((SECONDS + READY_TIMEOUT))
  while ! "$check"; do
    is_running "$name" || fail_service "$name" "exited before it was ready"
    ((SECONDS < deadline)) || fail_service "$name" "not ready after ${READY_TIMEOUT}s"
    sleep 0.2
  done
}

# A TCP port on $HOST that answers a connect, i.e. someone listens there.
port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

ensure_port_free() {
  local name="$1" port="$2"
  if port_in_use "$port"; then
    local who=""
    if command -v ss >/dev/null; then who="$(ss -ltnpH "sport = :$port" 2>/dev/null | head -n 3)"; fi
    die "port $HOST:$port (for $name) is taken by a process this script did not start${who:+: $who}"
  fi
}

# SIGTERM, wait up to STOP_TIMEOUT s, then SIGKILL.
stop_pid() {
  local name="$1" pid="$2" marker i
  marker="$(marker_of "$name")"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
    pid_matches "$pid" "$marker" || return 0
    sleep 0.2
  done
  say "$name (pid $pid) still running after ${STOP_TIMEOUT}s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 25; i++)); do
    pid_matches "$pid" "$marker" || return 0
    sleep 0.2
  done
  die "could not stop $name (pid $pid)"
}

# --- installation ---------------------------------------------------------------------------
need_root() {
  [[ "$(id -u)" == 0 ]] || die "must run as root (apt-get, dockerd)"
}

install_packages() {
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
      missing+=("$pkg")
    fi
  done
  ((${#missing[@]} == 0)) && return 0
  say "installing Debian packages: ${missing[*]}"
  local log="$LOGS/apt.log"
  if ! {
    DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  } >"$log" 2>&1 </dev/null; then
    tail -n 30 "$log" >&2
    die "apt-get failed (log: $log)"
  fi
}

venv_ok() {
  [[ -x "$VENV/bin/python" && -x "$VENV/bin/moto_server" && -x "$VENV/bin/aws" ]] || return 1
  local pin name version checks=""
  for pin in "${PIP_PINS[@]}"; do
    name="${pin%%==*}"
    name="${name%%\[*}"
    version="${pin##*==}"
    checks+="assert m.version('$name') == '$version', '$name';"
  done
  "$VENV/bin/python" -c "import importlib.metadata as m; $checks" 2>/dev/null
}

install_venv() {
  venv_ok && return 0
  say "installing moto and awscli into $VENV"
  local log="$LOGS/pip.log"
  # Debian's python3 (the one python3-venv is for), not whatever `python3` is first on PATH.
  if ! {
    /usr/bin/python3 -m venv --clear "$VENV" &&
      "$VENV/bin/pip" install -q --disable-pip-version-check "${PIP_PINS[@]}"
  } >"$log" 2>&1 </dev/null; then
    tail -n 30 "$log" >&2
    die "creating the venv failed (log: $log)"
  fi
  venv_ok || die "venv at $VENV lacks ${PIP_PINS[*]} after install (log: $log)"
}

# --- dockerd --------------------------------------------------------------------------------
check_dockerd() {
  [[ "$(curl -sf --max-time 2 --unix-socket "$DOCKER_SOCK" http://localhost/_ping 2>/dev/null)" == OK ]]
}

# Flags, each checked on these machines (Debian 12, docker.io 20.10, no systemd, no internet):
#   --config-file      an empty private one, so a host /etc/docker/daemon.json does not leak in.
#   --data-root, --exec-root, --host, --pidfile
#                      everything private; /var/lib/docker and /var/run/docker.sock stay
#                      untouched (dockerd itself still creates an empty /run/docker/plugins and
#                      containerd's shims use /run/containerd/s; both are hard-coded upstream).
#   --iptables=false --ip-forward=false --ip-masq=false
#                      leave the host firewall and sysctls alone (by default dockerd adds DOCKER
#                      chains, NAT rules, turns on net.ipv4.ip_forward and sets the FORWARD
#                      policy to DROP). Containers get no route out, which is moot offline; the
#                      daemon's own pushes to 127.0.0.1 registries don't go through containers.
#                      Side effect: classic builds print "[Warning] IPv4 forwarding is disabled.
#                      Networking will not work." once per RUN step.
#   NOT --bridge none: the classic builder copes, but BuildKit RUN steps then fail with
#                      "network bridge not found". So the default docker0 bridge is created
#                      (172.17.0.1/16, no NAT) and, like dockerd always does, left in place.
#   --shutdown-timeout 5
#                      containers get 5 s on shutdown, so dockerd exits within `down`'s 15 s.
start_dockerd() {
  local pid
  if pid="$(service_pid dockerd)" && ! pid_in_namespace "$pid"; then
    say "dockerd (pid $pid) runs outside the services' namespace; restarting it there"
    stop_pid dockerd "$pid"
    rm -f "$PIDS/dockerd.pid"
    sweep_docker_children
    unmount_docker_leftovers
  fi
  if is_running dockerd; then
    wait_ready dockerd check_dockerd
    return 0
  fi
  if check_dockerd; then
    die "something not started by this script answers on $DOCKER_SOCK"
  fi
  mkdir -p "$DOCKER_DATA" "$DOCKER_EXEC"
  [[ -f "$DOCKER_DIR/daemon.json" ]] || printf '{}\n' >"$DOCKER_DIR/daemon.json"
  rm -f "$DOCKER_DIR/dockerd.pid" # dockerd's own; a stale one with a recycled pid blocks it
  say "starting dockerd on unix://$DOCKER_SOCK"
  # In the namespace, so that it resolves the ECR host names and trusts the local CA.
  launch dockerd "$DOCKER_DIR" nsenter --mount="/proc/$(service_pid namespace)/ns/mnt" -- dockerd \
    --config-file "$DOCKER_DIR/daemon.json" \
    --data-root "$DOCKER_DATA" \
    --exec-root "$DOCKER_EXEC" \
    --host "unix://$DOCKER_SOCK" \
    --pidfile "$DOCKER_DIR/dockerd.pid" \
    --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    --shutdown-timeout 5
  wait_ready dockerd check_dockerd
}

# The docker client on PATH (28.x, or docker.io's 20.10), talking to our daemon only.
dockercli() { DOCKER_HOST="unix://$DOCKER_SOCK" docker "$@"; }

# busybox_rootfs DIR BUSYBOX: a minimal root in DIR around the static BUSYBOX (of any CPU): a
# link per applet at its canonical path (this host's busybox-static lists them: bin/sh,
# usr/bin/env, sbin/ip, ...), root and nobody, a sticky /tmp.
busybox_rootfs() {
  local rootfs="$1" p
  mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/root" "$rootfs/tmp"
  chmod 1777 "$rootfs/tmp"
  cp "$2" "$rootfs/bin/busybox"
  while read -r p; do
    case "$p" in bin/busybox | linuxrc | '') continue ;; esac
    mkdir -p "$rootfs/$(dirname "$p")"
    ln -sf /bin/busybox "$rootfs/$p"
  done < <(/bin/busybox --list-full)
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
}

# Import $BASE_IMAGE (busybox-static plus a symlink per applet) unless the daemon has it.
ensure_base_image() {
  if dockercli image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    return 0
  fi
  say "importing $BASE_IMAGE from /bin/busybox"
  local rootfs
  rootfs="$(mktemp -d "$STATE/rootfs.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: the path is fixed
  trap "rm -rf '$rootfs'" EXIT
  busybox_rootfs "$rootfs" /bin/busybox
  tar -C "$rootfs" -c . | dockercli import -c 'CMD ["/bin/sh"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  dockercli image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "importing $BASE_IMAGE failed"
}

# --- other architectures ----------------------------------------------------------------------
# arm64 under QEMU: binfmt_misc mounted, qemu-user-static registered for aarch64 (the F flag, so
# it runs inside containers too). Prints "ready" or the reason it cannot be had; never fails `up`:
# the tests that need emulation fail loudly with that reason instead.
ensure_emulation() {
  if [[ ! -e /proc/sys/fs/binfmt_misc/status ]] &&
    ! mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null; then
    printf 'binfmt_misc cannot be mounted here (needs root and a kernel with binfmt_misc)'
    return 0
  fi
  if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
    say "installing qemu-user-static to run arm64 programs under emulation"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static binfmt-support \
      >"$LOGS/apt-qemu.log" 2>&1 </dev/null; then
      printf 'apt-get install qemu-user-static failed (log: %s)' "$LOGS/apt-qemu.log"
      return 0
    fi
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  fi
  if ! grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
    printf 'qemu-aarch64 is not registered with binfmt_misc'
    return 0
  fi
  printf 'ready'
}

# A real arm64 busybox image, $ARM64_BASE_IMAGE: Debian's busybox-static:arm64 with the same
# applet links as $BASE_IMAGE, its config saying arm64/v8 (Engine 20.10's import records the
# host's platform, so the config is rewritten through save and load).
ensure_arm64_base_image() {
  if dockercli image inspect "$ARM64_BASE_IMAGE" >/dev/null 2>&1; then
    return 0
  fi
  say "importing $ARM64_BASE_IMAGE from Debian's busybox-static:arm64"
  local work deb
  work="$(mktemp -d "$STATE/arm64.XXXXXX")"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
  fi
  if ! (cd "$work" && apt-get download -q busybox-static:arm64 >"$LOGS/apt-arm64.log" 2>&1); then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$LOGS/apt-arm64.log" 2>&1 </dev/null || true
    (cd "$work" && apt-get download -q busybox-static:arm64 >>"$LOGS/apt-arm64.log" 2>&1) || {
      rm -rf "$work"
      die "could not download busybox-static:arm64 (log: $LOGS/apt-arm64.log)"
    }
  fi
  deb="$(ls "$work"/busybox-static_*_arm64.deb)"
  dpkg-deb -x "$deb" "$work/pkg"
  local rootfs="$work/rootfs"
  # The same package version as the host's busybox-static: the same applets.
  busybox_rootfs "$rootfs" "$work/pkg/bin/busybox"
  tar -C "$rootfs" -c . | dockercli import -c 'CMD ["/bin/sh"]' - "$ARM64_BASE_IMAGE.import" >/dev/null
  mkdir -p "$work/saved"
  dockercli save "$ARM64_BASE_IMAGE.import" | tar -x -C "$work/saved"
  python3 - "$work/saved" "$ARM64_BASE_IMAGE" <<'PY'
import json, os, sys
saved, tag = sys.argv[1], sys.argv[2]
manifest = json.load(open(os.path.join(saved, "manifest.json")))
config_path = os.path.join(saved, manifest[0]["Config"])
config = json.load(open(config_path))
config["architecture"], config["variant"] = "arm64", "v8"
json.dump(config, open(config_path, "w"))
manifest[0]["RepoTags"] = [tag]
json.dump(manifest, open(os.path.join(saved, "manifest.json"), "w"))
PY
  tar -C "$work/saved" -c . | dockercli load >/dev/null
  dockercli image rm "$ARM64_BASE_IMAGE.import" >/dev/null 2>&1 || true
  rm -rf "$work"
  [[ "$(dockercli image inspect --format '{{.Architecture}}/{{.Variant}}' "$ARM64_BASE_IMAGE" 2>/dev/null)" == arm64/v8 ]] ||
    die "importing $ARM64_BASE_IMAGE failed"
}

# Both bases as one multi-platform image in the plain local registry, busybox:1, the way
# node:20-alpine is on Docker Hub: each child pushed under its own tag, then a manifest list.
publish_multi_base() {
  local repo="$HOST:$REGISTRY_PORT/busybox" arch
  if curl -sf -o /dev/null --max-time 5 -H 'Accept: application/vnd.docker.distribution.manifest.list.v2+json' \
    "http://$HOST:$REGISTRY_PORT/v2/busybox/manifests/1"; then
    return 0
  fi
  say "publishing $repo:1 (linux/amd64 and linux/arm64/v8)"
  for arch in amd64 arm64; do
    local image="$BASE_IMAGE"
    [[ "$arch" == arm64 ]] && image="$ARM64_BASE_IMAGE"
    dockercli tag "$image" "$repo:1-$arch"
    dockercli push -q "$repo:1-$arch" >/dev/null || die "pushing $repo:1-$arch failed"
    dockercli image rm "$repo:1-$arch" >/dev/null 2>&1 || true
  done
  python3 - "http://$HOST:$REGISTRY_PORT/v2/busybox" <<'PY' || die "publishing $repo:1 failed"
import json, sys, urllib.request
base = sys.argv[1]
child = "application/vnd.docker.distribution.manifest.v2+json"
entries = []
for arch, variant in (("amd64", None), ("arm64", "v8")):
    req = urllib.request.Request("%s/manifests/1-%s" % (base, arch), method="HEAD", headers={"Accept": child})
    with urllib.request.urlopen(req, timeout=10) as r:
        platform = {"architecture": arch, "os": "linux"}
        if variant:
            platform["variant"] = variant
        entries.append({"mediaType": child, "digest": r.headers["Docker-Content-Digest"],
                        "size": int(r.headers["Content-Length"]), "platform": platform})
kind = "application/vnd.docker.distribution.manifest.list.v2+json"
body = json.dumps({"schemaVersion": 2, "mediaType": kind, "manifests": entries}).encode()
req = urllib.request.Request("%s/manifests/1" % base, data=body, method="PUT", headers={"Content-Type": kind})
urllib.request.urlopen(req, timeout=10).close()
PY
}

# --- registries -----------------------------------------------------------------------------
registry_answers() {
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$HOST:$1/v2/" 2>/dev/null)" || true
  [[ "$code" == 200 || "$code" == 401 ]]
}
check_registry() { registry_answers "$REGISTRY_PORT"; }
check_auth_registry() { registry_answers "$AUTH_REGISTRY_PORT"; }

# write_registry_config DIR PORT [HTPASSWD [EXTERNAL_URL]]
write_registry_config() {
  local dir="$1" port="$2" htpasswd="${3:-}" external="${4:-}"
  mkdir -p "$dir/data"
  {
    cat <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: true # the "response completed" lines say the same
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $HOST:$port
  secret: imgpipe-local-only # signs upload state; fixed so no warning, nothing to protect here
EOF
    # The URL clients reach it by, for the Location headers it writes (behind the data plane).
    if [[ -n "$external" ]]; then printf '  host: %s\n' "$external"; fi
    if [[ -n "$htpasswd" ]]; then
      cat <<EOF
auth:
  htpasswd:
    realm: imgpipe-local
    path: $htpasswd
EOF
    fi
  } >"$dir/config.yml"
}

start_registry() {
  if is_running registry; then
    wait_ready registry check_registry
    return 0
  fi
  ensure_port_free registry "$REGISTRY_PORT"
  write_registry_config "$REGISTRY_DIR" "$REGISTRY_PORT"
  say "starting registry on $HOST:$REGISTRY_PORT"
  launch registry "$REGISTRY_DIR" docker-registry serve "$REGISTRY_DIR/config.yml"
  wait_ready registry check_registry
}

start_auth_registry() {
  if is_running auth-registry; then
    wait_ready auth-registry check_auth_registry
    return 0
  fi
  ensure_port_free auth-registry "$AUTH_REGISTRY_PORT"
  mkdir -p "$AUTH_REGISTRY_DIR"
  local htpasswd="$AUTH_REGISTRY_DIR/htpasswd"
  # bcrypt entries (the only kind distribution accepts); rewritten on each start.
  if ! { htpasswd -B -b -c "$htpasswd.tmp" "$AWS_USER" "$AWS_PASSWORD" &&
    htpasswd -B -b "$htpasswd.tmp" "$SPECIAL_USER" "$SPECIAL_PASSWORD"; } 2>/dev/null; then
    die "htpasswd failed writing $htpasswd.tmp"
  fi
  mv "$htpasswd.tmp" "$htpasswd"
  write_registry_config "$AUTH_REGISTRY_DIR" "$AUTH_REGISTRY_PORT" "$htpasswd"
  say "starting auth-registry (htpasswd) on $HOST:$AUTH_REGISTRY_PORT"
  launch auth-registry "$AUTH_REGISTRY_DIR" docker-registry serve "$AUTH_REGISTRY_DIR/config.yml"
  wait_ready auth-registry check_auth_registry
}

# --- the namespace, TLS and the ECR hosts ---------------------------------------------------
# A local CA and one server certificate for every ECR host name, made once.
make_tls() {
  [[ -s "$TLS_DIR/server.crt" && -s "$TLS_DIR/ca.crt" ]] && return 0
  mkdir -p "$TLS_DIR"
  say "making a local CA and a certificate for the ECR host names in $TLS_DIR"
  local san="" entry name
  for entry in "${ECR_HOSTS[@]}"; do
    name="${entry%% *}"
    san+="${san:+,}DNS:$name"
  done
  if ! {
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=imgpipe local CA" \
      -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.crt" &&
      openssl req -newkey rsa:2048 -nodes -subj "/CN=${ECR_HOSTS[0]%% *}" \
        -keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr" &&
      printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$san" \
        >"$TLS_DIR/server.ext" &&
      openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" \
        -CAcreateserial -days 3650 -extfile "$TLS_DIR/server.ext" -out "$TLS_DIR/server.crt"
  } >"$LOGS/tls.log" 2>&1; then
    tail -n 20 "$LOGS/tls.log" >&2
    rm -f "$TLS_DIR/server.crt"
    die "openssl failed (log: $LOGS/tls.log)"
  fi
}

# The files the namespace binds over the machine's: /etc/hosts with the ECR names, the CA bundle
# with the local CA, and an /etc/docker whose certs.d trusts it for each ECR host.
write_namespace_files() {
  mkdir -p "$NS_DIR/etc-docker/certs.d"
  local entry name address
  {
    grep -v 'dkr\.ecr\.' /etc/hosts || true
    for entry in "${ECR_HOSTS[@]}"; do
      read -r name address _ <<<"$entry"
      printf '%s %s\n' "$address" "$name"
    done
  } >"$NS_DIR/hosts"
  cat /etc/ssl/certs/ca-certificates.crt "$TLS_DIR/ca.crt" >"$NS_DIR/ca-certificates.crt"
  if [[ -d /etc/docker ]]; then
    cp -a /etc/docker/. "$NS_DIR/etc-docker/" 2>/dev/null || true
  fi
  for entry in "${ECR_HOSTS[@]}"; do
    name="${entry%% *}"
    mkdir -p "$NS_DIR/etc-docker/certs.d/$name"
    cp "$TLS_DIR/ca.crt" "$NS_DIR/etc-docker/certs.d/$name/ca.crt"
  done
}

check_namespace() {
  local pid
  pid="$(service_pid namespace)" || return 1
  nsenter --mount="/proc/$pid/ns/mnt" -- grep -q "${ECR_HOSTS[0]%% *}" /etc/hosts
}

# The holder: a process in a new mount namespace that binds the files above and then sleeps,
# keeping the namespace for the services and `run` to enter. /etc/docker is bound only where
# the machine has one (the CA bundle alone makes dockerd trust the local CA).
start_namespace() {
  if is_running namespace; then
    wait_ready namespace check_namespace
    return 0
  fi
  make_tls
  write_namespace_files
  say "starting the private namespace (ECR host names, local CA)"
  local docker_bind=""
  if [[ -d /etc/docker ]]; then docker_bind='mount --bind "$0/etc-docker" /etc/docker &&'; fi
  # shellcheck disable=SC2016 # $0 is the inner shell's
  launch namespace "$NS_DIR" unshare --mount --propagation private -- bash -c \
    "mount --bind \"\$0/hosts\" /etc/hosts &&
     mount --bind \"\$0/ca-certificates.crt\" /etc/ssl/certs/ca-certificates.crt &&
     $docker_bind
     exec -a 'imgpipe-namespace $NS_DIR' sleep infinity" "$NS_DIR"
  wait_ready namespace check_namespace
}

# Runs a command in the services' namespace.
in_namespace() {
  local pid
  pid="$(service_pid namespace)" || die "the services' namespace is not running: scripts/services.sh up"
  nsenter --mount="/proc/$pid/ns/mnt" --wd="$PWD" -- "$@"
}

# Whether a running process is in the services' namespace.
pid_in_namespace() {
  local ns
  ns="$(service_pid namespace)" || return 1
  [[ "$(readlink "/proc/$1/ns/mnt")" == "$(readlink "/proc/$ns/ns/mnt")" ]]
}

check_ecr_registry() { # PORT
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$HOST:$1/v2/" 2>/dev/null)" || true
  [[ "$code" == 200 ]]
}
check_ecr_east() { check_ecr_registry 5002; }
check_ecr_west() { check_ecr_registry 5003; }
check_ecr_other() { check_ecr_registry 5004; }

start_ecr_registries() {
  local entry name address account region port service
  for entry in "${ECR_HOSTS[@]}"; do
    read -r name address account region port service <<<"$entry"
    if ! is_running "$service"; then
      ensure_port_free "$service" "$port"
      write_registry_config "$ECR_DIR/$service" "$port" "" "https://$name"
      say "starting $service (the registry behind $name) on $HOST:$port"
      launch "$service" "$ECR_DIR/$service" docker-registry serve "$ECR_DIR/$service/config.yml"
    fi
    wait_ready "$service" "check_${service//-/_}"
  done
}

check_data_plane() {
  local entry name address
  for entry in "${ECR_HOSTS[@]}"; do
    read -r name address _ <<<"$entry"
    [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$TLS_DIR/ca.crt" \
      --resolve "$name:443:$address" "https://$name/v2/" 2>/dev/null)" == 401 ]] || return 1
  done
}

start_data_plane() {
  if is_running ecr-data-plane; then
    wait_ready ecr-data-plane check_data_plane
    return 0
  fi
  local entry name address account region port service hosts=""
  for entry in "${ECR_HOSTS[@]}"; do
    read -r name address account region port service <<<"$entry"
    if (exec 3<>"/dev/tcp/$address/443") 2>/dev/null; then
      die "port $address:443 (for $name) is taken by a process this script did not start"
    fi
    hosts+="${hosts:+,}{\"name\":\"$name\",\"listen\":\"$address\",\"port\":443,\"account\":\"$account\",\"region\":\"$region\",\"password\":\"$account-auth-token\",\"backend\":\"$HOST:$port\"}"
  done
  mkdir -p "$ECR_DIR"
  printf '{"endpoint":"http://%s:%s","cert":"%s","key":"%s","hosts":[%s]}\n' \
    "$HOST" "$ECR_PORT" "$TLS_DIR/server.crt" "$TLS_DIR/server.key" "$hosts" >"$ECR_DIR/data-plane.json"
  say "starting the ECR data plane (scripts/ecr-data-plane.py) on 127.0.0.2-4:443"
  launch ecr-data-plane "$ECR_DIR" "$VENV/bin/python" "$REPO_ROOT/scripts/ecr-data-plane.py" \
    "$ECR_DIR/data-plane.json"
  wait_ready ecr-data-plane check_data_plane
}

# --- moto -----------------------------------------------------------------------------------
# Calls ECR GetAuthorizationToken (moto does not check signatures, only reads the service name
# from the credential scope) and prints the decoded token, e.g. AWS:123456789012-auth-token.
moto_token() {
  local body token
  body="$(curl -sf --max-time 2 -X POST "http://$HOST:$ECR_PORT/" \
    -H 'Content-Type: application/x-amz-json-1.1' \
    -H 'X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken' \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/ecr/aws4_request, SignedHeaders=host, Signature=0' \
    -d '{}' 2>/dev/null)" || return 1
  token="$(sed -nE 's/.*"authorizationToken": *"([^"]*)".*/\1/p' <<<"$body")"
  [[ -n "$token" ]] || return 1
  base64 -d <<<"$token"
}
check_moto() { moto_token >/dev/null; }

start_moto() {
  if ! is_running moto; then
    ensure_port_free moto "$ECR_PORT"
    mkdir -p "$MOTO_DIR"
    say "starting moto (ECR API) on $HOST:$ECR_PORT"
    # MOTO_ACCOUNT_ID unset so the account, hence the registry password, is the default one.
    launch moto "$MOTO_DIR" env -u MOTO_ACCOUNT_ID "$VENV/bin/moto_server" -H "$HOST" -p "$ECR_PORT"
  fi
  wait_ready moto check_moto
  local got
  got="$(moto_token)" || die "moto stopped answering GetAuthorizationToken"
  [[ "$got" == "$AWS_USER:$AWS_PASSWORD" ]] ||
    die "moto's ECR token decodes to '$got', expected '$AWS_USER:$AWS_PASSWORD' (update AWS_PASSWORD)"
}

# --- subcommands ----------------------------------------------------------------------------
# In the order `down` stops them: dockerd first, the namespace last.
SERVICES=(dockerd ecr-data-plane ecr-east ecr-west ecr-other registry auth-registry moto namespace)

lock() {
  exec 9>"$STATE/.lock"
  flock 9
}

cmd_up() {
  need_root
  mkdir -p "$PIDS" "$LOGS"
  lock
  install_packages
  install_venv
  # Fail before starting anything if a port we need is held by someone else.
  is_running registry || ensure_port_free registry "$REGISTRY_PORT"
  is_running auth-registry || ensure_port_free auth-registry "$AUTH_REGISTRY_PORT"
  is_running moto || ensure_port_free moto "$ECR_PORT"
  # Before the namespace: binfmt_misc mounted here is mounted there too.
  ensure_emulation >"$STATE/arm64-emulation"
  if [[ "$(cat "$STATE/arm64-emulation")" != ready ]]; then
    say "no arm64 emulation: $(cat "$STATE/arm64-emulation"); tests that build for arm64 will fail"
  fi
  start_namespace
  in_namespace sh -c '[ -e /proc/sys/fs/binfmt_misc/status ] ||
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true'
  start_dockerd
  ensure_base_image
  start_registry
  ensure_arm64_base_image
  publish_multi_base
  start_moto # before the auth registry: it confirms the password the htpasswd file gets
  start_auth_registry
  start_ecr_registries
  start_data_plane
  say "all services ready"
  print_env
}

cmd_down() {
  mkdir -p "$PIDS"
  lock
  local name pid
  # dockerd first: nothing can push to the registries or call moto through it while they stop,
  # and it gets to stop its containers and its containerd cleanly.
  for name in "${SERVICES[@]}"; do
    if pid="$(service_pid "$name")"; then
      say "stopping $name (pid $pid)"
      stop_pid "$name" "$pid"
    fi
    rm -f "$PIDS/$name.pid"
    if [[ "$name" == dockerd ]]; then
      sweep_docker_children
      unmount_docker_leftovers
    fi
  done
}

# If dockerd had to be killed, what it started outlives it: its containerd, one shim per running
# container, and the containers' processes. The first two are ours for sure: containerd binaries
# whose command line names our private exec root. The containers' processes are the shims' direct
# children (each container's init; SIGKILL to it ends its whole pid namespace), which is what
# dockerd itself does to containers at the end of its shutdown timeout.
sweep_docker_children() {
  local shims=() daemons=() inits=() p s exe cmdline ppid
  for p in /proc/[0-9]*; do
    p="${p#/proc/}"
    exe="$(readlink "/proc/$p/exe" 2>/dev/null)" || continue
    exe="${exe##*/}"
    [[ "$exe" == containerd* ]] || continue
    cmdline="$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" || continue
    [[ "$cmdline" == *"$DOCKER_EXEC/"* ]] || continue
    if [[ "$exe" == containerd-shim* ]]; then shims+=("$p"); else daemons+=("$p"); fi
  done
  if ((${#shims[@]} > 0)); then
    for p in /proc/[0-9]*; do
      p="${p#/proc/}"
      ppid="$(sed -E 's/^.*\) . ([0-9]+) .*$/\1/' "/proc/$p/stat" 2>/dev/null)" || continue
      for s in "${shims[@]}"; do
        if [[ "$ppid" == "$s" ]]; then inits+=("$p"); fi
      done
    done
  fi
  if ((${#inits[@]} > 0)); then
    say "killing leftover container processes: ${inits[*]}"
    kill -KILL "${inits[@]}" 2>/dev/null || true
    wait_gone "${inits[@]}" || true
  fi
  local rest=("${shims[@]}" "${daemons[@]}")
  ((${#rest[@]} == 0)) && return 0
  say "stopping leftover containerd processes: ${rest[*]}"
  kill -TERM "${rest[@]}" 2>/dev/null || true
  if ! wait_gone "${rest[@]}"; then
    kill -KILL "${rest[@]}" 2>/dev/null || true
    wait_gone "${rest[@]}" || die "could not stop containerd processes ${rest[*]}"
  fi
}

# dockerd bind-mounts its data root onto itself (to make it a shared mount) and mounts overlays
# and network namespaces under its roots; a clean shutdown undoes that, a SIGKILL does not, and a
# leftover mount makes removing $STATE (e.g. `cargo clean`) fail with "Device or resource busy".
# Only called once dockerd is gone. Deepest mount points first.
unmount_docker_leftovers() {
  local mp
  while read -r mp; do
    mp="$(printf '%b' "$mp")" # mountinfo escapes space, tab, newline, backslash as \ooo
    say "unmounting leftover $mp"
    umount "$mp" 2>/dev/null || umount -l "$mp" || say "could not unmount $mp"
  done < <(awk -v a="$DOCKER_DATA" -v b="$DOCKER_EXEC" '
      { p = $5; q = p; gsub(/\\040/, " ", q) }
      q == a || index(q, a "/") == 1 || q == b || index(q, b "/") == 1 { print length(q) "\t" p }
    ' /proc/self/mountinfo | sort -rn | cut -f2-)
}

# True if the pid is a live process (zombies count as gone: they wait only for init to reap them).
pid_alive() {
  local state
  state="$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# Wait up to STOP_TIMEOUT s until none of the pids is alive.
wait_gone() {
  local i p alive
  for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
    alive=0
    for p in "$@"; do
      if pid_alive "$p"; then alive=1; fi
    done
    ((alive)) || return 0
    sleep 0.2
  done
  return 1
}

cmd_status() {
  local name pid all=0
  for name in "${SERVICES[@]}"; do
    if pid="$(service_pid "$name")"; then
      printf '%s: running (pid %s)\n' "$name" "$pid"
    else
      printf '%s: stopped\n' "$name"
      all=3
    fi
  done
  return "$all"
}

main() {
  local cmd="${1:-}"
  case "$cmd" in
  up | env | down | status | run) ;;
  *)
    printf 'usage: %s up|env|down|status|run -- CMD [ARGS...]\n' "$0" >&2
    exit 2
    ;;
  esac
  set_paths
  case "$cmd" in
  up) cmd_up ;;
  env) print_env ;;
  down) cmd_down ;;
  status) cmd_status ;;
  run)
    shift
    [[ "${1:-}" == -- ]] && shift
    (($# > 0)) || die "usage: $0 run -- CMD [ARGS...]"
    eval "$(print_env)"
    in_namespace "$@"
    ;;
  esac
}

main "$@"
