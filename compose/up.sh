#!/usr/bin/env bash
# Start the local stack (needs a Docker engine) and wait until every service is healthy.
# Usage: compose/up.sh [extra `up` args, e.g. --profile simulator is set via COMPOSE_PROFILES]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
file="$here/docker-compose.yml"
export DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1 # the Dockerfiles use cache mounts

if docker compose version >/dev/null 2>&1; then
    docker compose -f "$file" up -d --build --wait --wait-timeout "${FLEETPULSE_UP_TIMEOUT:-600}" "$@"
elif command -v docker-compose >/dev/null 2>&1; then
    # Compose v1 has no --wait: poll the health of every long-running container instead.
    docker-compose -f "$file" up -d --build "$@"
    deadline=$((SECONDS + ${FLEETPULSE_UP_TIMEOUT:-600}))
    while :; do
        pending=""
        for id in $(docker-compose -f "$file" ps -q); do
            state="$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.ExitCode}} {{.Name}}' "$id")"
            read -r status health code name <<<"$state"
            if [[ "$status" == exited && "$code" != 0 ]]; then
                echo "up: ${name#/} exited with code $code" >&2
                docker logs --tail 50 "$id" >&2 || true
                exit 1
            fi
            if [[ "$status" == running && "$health" != healthy && "$health" != none ]]; then
                pending="$pending ${name#/}"
            fi
        done
        [[ -z "$pending" ]] && break
        if (( SECONDS > deadline )); then
            echo "up: still not healthy:$pending" >&2
            exit 1
        fi
        sleep 3
    done
else
    echo "up: neither 'docker compose' nor 'docker-compose' is installed" >&2
    exit 1
fi

cat <<'URLS'
FleetPulse is up:
  API            http://localhost:8000/api/v1   (OpenAPI: http://localhost:8000/openapi.json)
  Keycloak       http://localhost:8081          (realm fleetpulse; admin/admin; demo-admin/demo-admin, tenant demo)
  Grafana        http://localhost:3000          (admin/admin; folder FleetPulse)
  Jaeger         http://localhost:16686
  MQTT           mqtt://localhost:1883          (no anonymous access; devices get credentials from the API)
  TimescaleDB    postgresql://fleetpulse:fleetpulse@localhost:5433/fleetpulse
  AWS emulator   http://localhost:5000          (moto: SQS, SNS, Secrets Manager)
URLS
