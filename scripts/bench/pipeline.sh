#!/usr/bin/env bash
# End to end and per step: the seed's pipeline as a user writes it (aws-cli, docker CLI, the
# python snippet of the CodeBuild guide imgpipe grew from) against the imgpipe pipeline
# (ecr-login | img-tag | img-build | img-push | scan-gate, then lifecycle-set), on the sample
# application (examples/sample-app), against the local services, in one run, alternating.
#
# Three pipelines are timed in every round, in a rotating order:
#   seed             the buildspec's commands, step by step:
#                      login      aws ecr get-login-password | docker login --username AWS --password-stdin
#                      tag        git rev-parse --short=7 HEAD (the seed cuts CODEBUILD_RESOLVED_SOURCE_VERSION;
#                                 locally there is none, so the tag comes from git)
#                      build      DOCKER_BUILDKIT=0 docker build -t REF:TAG . ; docker tag REF:TAG REF:latest
#                                 (the docker CLI here has no buildx plugin, so the seed's `docker build`
#                                 can only use the classic builder)
#                      push       docker push REF:TAG ; docker push REF:latest ; echo REF:TAG > image_uri.txt
#                      scan       aws ecr wait image-scan-complete ; aws ecr describe-image-scan-findings
#                                 --query imageScanFindings.findingSeverityCounts | python3 -c '<CRITICAL count>'
#                      lifecycle  aws ecr put-lifecycle-policy --lifecycle-policy-text '<the seed's two rules>'
#   imgpipe-classic  ecr-login | img-tag --tag sha --tag latest | img-build --builder classic
#                    | img-push --image-uri-file | scan-gate --fail-on critical, then
#                    lifecycle-set --keep-last 20 --tag-prefix v --expire-untagged-after 7 (the same
#                    policy): the same builder as the seed, for a like-for-like build step
#   imgpipe          the same with img-build's default builder (auto: the daemon's BuildKit)
#
# Equal work: each pipeline has its own ECR repository (moto) and registry repository, its own
# Docker config (so each login really stores credentials) and its own git copy of the sample
# application. Before every timed run, app.sh gets a new line (a comment naming the pipeline and
# the round) and is committed: the tag is a new commit, the app layers (COPY app.sh, the RUN
# step, the final COPY) are really rebuilt and pushed, while the base image and WORKDIR layers
# are cached (and already in the registry) for every pipeline alike. One untimed warm-up run per
# pipeline comes first, so caches, the registry and the daemon start in the same state.
#
# The local ECR (scripts/services.sh): the account's registry host name over TLS, which
# registers every push with the ECR API server and starts its scan, as ECR does. The benchmark
# runs in the services' namespace, where that host name resolves.
#
# Usage: scripts/bench/pipeline.sh              BENCH_RUNS rounds (default 3)
# BENCH_PROFILE=dev times a debug build instead of a release build; BENCH_BUILD=0 skips the
# cargo build (times the binaries already in target/).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
runs="${BENCH_RUNS:-3}"
cd "$root"
. scripts/bench/common.sh
in_services_namespace "$0" "$@"
bench_tools ecr-repo ecr-login img-tag img-build img-push scan-gate lifecycle-set

reg="$IMGPIPE_ECR_REGISTRY"
ep="$AWS_ENDPOINT_URL_ECR"
aws="$IMGPIPE_AWS_CLI"
work="$(mktemp -d /tmp/bench-pipeline.XXXXXX)"
stamp="$$-$(date +%s)"
sides=(seed imgpipe-classic imgpipe)
declare -A repo
for side in "${sides[@]}"; do repo[$side]="bench-pipeline-$side-$stamp"; done
cleanup() {
  for side in "${sides[@]}"; do
    "$aws" ecr delete-repository --endpoint-url "$ep" --repository-name "${repo[$side]}" --force >/dev/null 2>&1 || true
    docker image ls -q "$reg/${repo[$side]}" 2>/dev/null | sort -u | xargs -r docker image rm -f >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# The seed's lifecycle policy, verbatim.
policy='{
    "rules": [
      {
        "rulePriority": 1,
        "description": "Keep only last 20 images",
        "selection": {
          "tagStatus": "tagged",
          "tagPrefixList": ["v"],
          "countType": "imageCountMoreThan",
          "countNumber": 20
        },
        "action": {"type": "expire"}
      },
      {
        "rulePriority": 2,
        "description": "Remove untagged images after 7 days",
        "selection": {
          "tagStatus": "untagged",
          "countType": "sinceImagePushed",
          "countUnit": "days",
          "countNumber": 7
        },
        "action": {"type": "expire"}
      }
    ]
  }'

# Setup (untimed): a repository per pipeline, scanning on push, as the seed creates it; a git
# copy of the sample application per pipeline; a Docker config per pipeline.
for side in "${sides[@]}"; do
  "$aws" ecr create-repository --endpoint-url "$ep" --repository-name "${repo[$side]}" \
    --image-scanning-configuration scanOnPush=true --encryption-configuration encryptionType=AES256 >/dev/null
  mkdir -p "$work/$side/docker"
  cp -r examples/sample-app "$work/$side/app"
  git -C "$work/$side/app" init -q -b main
  git -C "$work/$side/app" -c user.name=bench -c user.email=bench@localhost add -A
  git -C "$work/$side/app" -c user.name=bench -c user.email=bench@localhost commit -q -m "sample app"
done
# The imgpipe pipelines start from ecr-repo's document, as in scripts/local-pipeline.sh.
for side in imgpipe-classic imgpipe; do
  "$bin/ecr-repo" -q --no-input --repository "${repo[$side]}" >"$work/$side/00.json"
done

now_ns() { date +%s%N; }
results="$work/results"
: >"$results"
record() { # side round step start_ns
  echo "$1 $2 $3 $(( ($(now_ns) - $4) / 1000000 ))" >>"$results"
}

# A new commit that changes app.sh: the app layers must be rebuilt, the base stays cached.
change_app() { # side round
  local app="$work/$1/app"
  printf '# bench %s round %s\n' "$1" "$2" >>"$app/app.sh"
  git -C "$app" -c user.name=bench -c user.email=bench@localhost commit -q -am "bench $1 $2"
}

run_seed() { # round
  local round=$1 r="${repo[seed]}" log="$work/seed/log" t rc
  # errexit is off in a subshell that is the left side of ||: take the status afterwards instead.
  set +e
  (
    set -e
    export DOCKER_CONFIG="$work/seed/docker"
    cd "$work/seed/app"
    ECR_REGISTRY="$reg"; IMAGE_REPO="$r"

    t=$(now_ns)
    "$aws" ecr get-login-password --endpoint-url "$ep" | docker login --username AWS --password-stdin "$ECR_REGISTRY"
    record seed "$round" login "$t"

    t=$(now_ns)
    COMMIT_HASH=$(git rev-parse --short=7 HEAD)
    IMAGE_TAG=${COMMIT_HASH:=latest}
    echo "Image tag will be $IMAGE_TAG"
    record seed "$round" tag "$t"

    t=$(now_ns)
    DOCKER_BUILDKIT=0 docker build -t "$ECR_REGISTRY/$IMAGE_REPO:$IMAGE_TAG" .
    docker tag "$ECR_REGISTRY/$IMAGE_REPO:$IMAGE_TAG" "$ECR_REGISTRY/$IMAGE_REPO:latest"
    record seed "$round" build "$t"

    t=$(now_ns)
    docker push "$ECR_REGISTRY/$IMAGE_REPO:$IMAGE_TAG"
    docker push "$ECR_REGISTRY/$IMAGE_REPO:latest"
    echo "$ECR_REGISTRY/$IMAGE_REPO:$IMAGE_TAG" > image_uri.txt
    record seed "$round" push "$t"

    t=$(now_ns)
    aws_ecr() { "$aws" ecr --endpoint-url "$ep" "$@"; }
    aws_ecr wait image-scan-complete --repository-name "$IMAGE_REPO" --image-id "imageTag=$IMAGE_TAG"
    SCAN_FINDINGS=$(aws_ecr describe-image-scan-findings --repository-name "$IMAGE_REPO" \
      --image-id "imageTag=$IMAGE_TAG" --query 'imageScanFindings.findingSeverityCounts')
    echo "Scan findings: $SCAN_FINDINGS"
    CRITICAL=$(echo $SCAN_FINDINGS | python3 -c "import sys,json; d=json.load(sys.stdin); print(d.get('CRITICAL', 0))")
    if [ "$CRITICAL" -gt 0 ]; then
      echo "CRITICAL vulnerabilities found! Failing build."
      exit 1
    fi
    record seed "$round" scan "$t"

    t=$(now_ns)
    aws_ecr put-lifecycle-policy --repository-name "$IMAGE_REPO" --lifecycle-policy-text "$policy"
    record seed "$round" lifecycle "$t"
  ) >"$log" 2>&1
  rc=$?; set -e
  [ "$rc" = 0 ] || { echo "bench: the seed pipeline failed (round $round):" >&2; tail -20 "$log" >&2; exit 1; }
}

run_imgpipe() { # side round
  local side=$1 round=$2 builder=() log="$work/$1/log" w="$work/$1" t rc
  [ "$side" = imgpipe-classic ] && builder=(--builder classic)
  set +e
  (
    set -e
    export DOCKER_CONFIG="$w/docker"
    unset DOCKER_BUILDKIT
    cd "$w/app"

    t=$(now_ns)
    "$bin/ecr-login" --registry "$reg" <"$w/00.json" >"$w/02.json"
    record "$side" "$round" login "$t"

    t=$(now_ns)
    "$bin/img-tag" --registry "$reg" --context . --tag sha --tag latest <"$w/02.json" >"$w/03.json"
    record "$side" "$round" tag "$t"

    t=$(now_ns)
    "$bin/img-build" "${builder[@]}" . <"$w/03.json" >"$w/04.json"
    record "$side" "$round" build "$t"

    t=$(now_ns)
    "$bin/img-push" --image-uri-file image_uri.txt <"$w/04.json" >"$w/05.json"
    record "$side" "$round" push "$t"

    t=$(now_ns)
    "$bin/scan-gate" --fail-on critical <"$w/05.json" >"$w/06.json"
    record "$side" "$round" scan "$t"

    t=$(now_ns)
    "$bin/lifecycle-set" --keep-last 20 --tag-prefix v --expire-untagged-after 7 <"$w/06.json" >"$w/07.json"
    record "$side" "$round" lifecycle "$t"
  ) >"$log" 2>&1
  rc=$?; set -e
  [ "$rc" = 0 ] || { echo "bench: the $side pipeline failed (round $round):" >&2; tail -20 "$log" >&2; exit 1; }
}

run_side() { # side round
  change_app "$1" "$2"
  if [ "$1" = seed ]; then run_seed "$2"; else run_imgpipe "$1" "$2"; fi
}

echo "warm-up (untimed): one run of each pipeline" >&2
for side in "${sides[@]}"; do run_side "$side" 0; done
: >"$results"

for round in $(seq 1 "$runs"); do
  # Rotate the order: seed first, then second, then third, ...
  shift_by=$(( (round - 1) % ${#sides[@]} ))
  order=("${sides[@]:shift_by}" "${sides[@]:0:shift_by}")
  echo "round $round/$runs: ${order[*]}" >&2
  for side in "${order[@]}"; do run_side "$side" "$round"; done
done

# What the last round did, to show the pipelines did the same work: tags, cache hits, verdict.
echo "last round: seed tags $(git -C "$work/seed/app" rev-parse --short=7 HEAD), latest;" \
  "seed build steps from cache: $(grep -c 'Using cache' "$work/seed/log" || true)" >&2
for side in imgpipe-classic imgpipe; do
  python3 - "$side" "$work/$side/04.json" "$work/$side/07.json" <<'PY' >&2
import json, sys
build, doc = json.load(open(sys.argv[2])).get("build", {}), json.load(open(sys.argv[3]))
print(f"last round: {sys.argv[1]} tags {', '.join(doc['tags'])}; builder {build.get('builder')}, "
      f"steps {build.get('steps')}, from cache {build.get('cached_steps')}; "
      f"scan verdict {doc.get('scan', {}).get('verdict')}")
PY
done

# Every pipeline's last image must hold its own last change (a real rebuild, not a cached layer).
for side in "${sides[@]}"; do
  last=$(docker run --rm "$reg/${repo[$side]}:latest" cat /usr/local/bin/app | tail -1)
  if [ "$last" != "# bench $side round $runs" ]; then
    echo "bench: $side's last image does not hold its last change (its app ends with: $last)" >&2
    exit 1
  fi
done
echo "checked: each pipeline's last image holds its own last change to app.sh" >&2

uptime_load=$(cut -d' ' -f1-3 /proc/loadavg)
echo "sample application, $runs rounds of each pipeline ($profile build), load average at the end: $uptime_load"
python3 - "$results" <<'PY'
import statistics, sys
steps = ["login", "tag", "build", "push", "scan", "lifecycle"]
sides = ["seed", "imgpipe-classic", "imgpipe"]
ms = {}
for line in open(sys.argv[1]):
    side, rnd, step, v = line.split()
    ms.setdefault((side, step), []).append(int(v))
    ms.setdefault((side, "total"), {}).setdefault(rnd, 0)
    ms[(side, "total")][rnd] += int(v)
for side in sides:
    ms[(side, "total")] = list(ms[(side, "total")].values())
med = {k: statistics.median(v) for k, v in ms.items()}
print("median wall time in ms (runs in brackets); ratio = seed / imgpipe")
head = f"{'step':<10} {'seed':>22} {'imgpipe (classic)':>26} {'ratio':>6} {'imgpipe (default)':>26} {'ratio':>6}"
print(head)
for step in steps + ["total"]:
    cells = []
    for side in sides:
        runs = " ".join(str(x) for x in ms[(side, step)])
        cells.append(f"{med[(side, step)]:7.0f} [{runs}]")
    r1 = med[("seed", step)] / max(med[("imgpipe-classic", step)], 1)
    r2 = med[("seed", step)] / max(med[("imgpipe", step)], 1)
    print(f"{step:<10} {cells[0]:>22} {cells[1]:>26} {r1:5.1f}x {cells[2]:>26} {r2:5.1f}x")
PY
