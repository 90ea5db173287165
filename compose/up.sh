#!/usr/bin/env bash
# Start the local stack (needs a Docker engine) and wait until every service is healthy.
# Usage: compose/up.sh [extra `up` args, e.g. --profile simulator is set via COMPOSE_PROFILES]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
file="$here/docker-compose.yml"
root="$(dirname "$here")"

# Host ports (overridable in the environment or compose/.env, which docker compose also reads).
if [[ -f "$here/.env" ]]; then
    set -a
    # shellcheck disable=SC1091
    . "$here/.env"
    set +a
fi
: "${API_HOST_PORT:=18000}" "${KEYCLOAK_HOST_PORT:=18081}" "${MQTT_HOST_PORT:=11883}"
: "${AWS_HOST_PORT:=15000}" "${TIMESCALE_HOST_PORT:=15432}" "${GRAFANA_HOST_PORT:=13000}"
: "${JAEGER_HOST_PORT:=16686}" "${PROMETHEUS_HOST_PORT:=19090}" "${MAILPIT_HOST_PORT:=18025}"
: "${OTLP_GRPC_HOST_PORT:=14317}" "${OTLP_HTTP_HOST_PORT:=14318}"
export API_HOST_PORT KEYCLOAK_HOST_PORT MQTT_HOST_PORT AWS_HOST_PORT TIMESCALE_HOST_PORT \
    GRAFANA_HOST_PORT JAEGER_HOST_PORT PROMETHEUS_HOST_PORT MAILPIT_HOST_PORT \
    OTLP_GRPC_HOST_PORT OTLP_HTTP_HOST_PORT
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

# What `make smoke` and `make simulate` read (fleetpulse.simulator.stack): the API, Keycloak's
# token endpoint and the realm's machine clients; the smoke's webhook receiver listens on all
# interfaces for its run and the delivery worker reaches it as host.docker.internal.
mkdir -p "$root/.compose"
cat >"$root/.compose/env" <<ENV
# written by compose/up.sh (make up); removed by make down
export FLEETPULSE_API_URL=http://127.0.0.1:$API_HOST_PORT
export FLEETPULSE_TOKEN_URL=http://127.0.0.1:$KEYCLOAK_HOST_PORT/realms/fleetpulse/protocol/openid-connect/token
export FLEETPULSE_CLIENT_ID=fleetpulse-demo-bot
export FLEETPULSE_CLIENT_SECRET=${DEMO_BOT_SECRET:-fleetpulse-demo-bot-dev-secret}
export FLEETPULSE_PLATFORM_CLIENT_ID=fleetpulse-platform-bot
export FLEETPULSE_PLATFORM_CLIENT_SECRET=${PLATFORM_BOT_SECRET:-fleetpulse-platform-bot-dev-secret}
export FLEETPULSE_TENANT=demo
export FLEETPULSE_RECEIVER_BIND=0.0.0.0
export FLEETPULSE_RECEIVER_HOST=host.docker.internal
ENV

cat <<URLS
FleetPulse is up (host ports; change them in compose/.env):
  API            http://localhost:$API_HOST_PORT/api/v1   (OpenAPI: http://localhost:$API_HOST_PORT/openapi.json)
  Keycloak       http://localhost:$KEYCLOAK_HOST_PORT          (realm fleetpulse; admin/admin; demo-admin/demo-admin, tenant demo)
  Grafana        http://localhost:$GRAFANA_HOST_PORT          (admin/admin; folder FleetPulse; data sources TimescaleDB, Prometheus)
  Jaeger         http://localhost:$JAEGER_HOST_PORT
  Prometheus     http://localhost:$PROMETHEUS_HOST_PORT
  Mailpit        http://localhost:$MAILPIT_HOST_PORT          (every email the delivery worker sends)
  MQTT           mqtt://localhost:$MQTT_HOST_PORT          (no anonymous access; devices get credentials from the API)
  TimescaleDB    postgresql://fleetpulse:fleetpulse@localhost:$TIMESCALE_HOST_PORT/fleetpulse
  AWS emulator   http://localhost:$AWS_HOST_PORT          (moto: SQS, SNS, Secrets Manager)
  OTLP           grpc localhost:$OTLP_GRPC_HOST_PORT, http localhost:$OTLP_HTTP_HOST_PORT
Next: make smoke; make simulate (both read .compose/env); make down
URLS
