#!/usr/bin/env bash
# Stop the local stack. Data volumes are kept; pass -v (or set FLEETPULSE_DOWN_VOLUMES=1) to drop them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
file="$here/docker-compose.yml"
rm -f "$(dirname "$here")/.compose/env" # make smoke / make simulate go back to .dev/env
args=(--remove-orphans)
[[ "${FLEETPULSE_DOWN_VOLUMES:-0}" == 1 ]] && args+=(--volumes)

if docker compose version >/dev/null 2>&1; then
    docker compose -f "$file" --profile simulator down "${args[@]}" "$@"
elif command -v docker-compose >/dev/null 2>&1; then
    docker-compose -f "$file" --profile simulator down "${args[@]}" "$@"
else
    echo "down: neither 'docker compose' nor 'docker-compose' is installed" >&2
    exit 1
fi
