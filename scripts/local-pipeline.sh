#!/usr/bin/env bash
# The main job on the local default: installs what it needs, starts the local services
# (Docker Engine, registries, ECR API server), builds the tools in release mode, and runs the
# pipeline on the sample application against those services, printing each step's result.
#
# Usage: scripts/local-pipeline.sh
# Running it again is safe: every step is idempotent.
#
# The pipeline grows with the tools; today it runs the steps whose tools exist.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { echo "==> $*" >&2; }

say "starting the local services"
eval "$(scripts/services.sh up)"

say "building the tools (release)"
cargo build --release --workspace --bins --locked
export PATH="$root/target/release:$PATH"

repository="${IMGPIPE_SAMPLE_REPOSITORY:-imgpipe-sample}"

say "ecr-repo: ensure repository $repository exists (scan on push, AES256)"
doc=$(ecr-repo --repository "$repository" --scan-on-push --tag project=imgpipe-sample)
echo "$doc"

say "summary"
python3 - "$doc" >&2 <<'PY'
import json, sys
doc = json.loads(sys.argv[1])
settings = doc.get("repository_settings", {})
print(f"  repository      {doc['repository']}")
print(f"  repository uri  {doc['repository_uri']}")
print(f"  scan on push    {settings.get('scan_on_push')}")
print(f"  created now     {settings.get('created')}")
PY
