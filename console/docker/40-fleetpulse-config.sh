#!/bin/sh
# Write the console's runtime config from the container's environment (nginx entrypoint hook).
set -eu
: "${CONSOLE_OIDC_ISSUER:?CONSOLE_OIDC_ISSUER must be the OIDC issuer URL}"
: "${CONSOLE_API_URL:?CONSOLE_API_URL must be the API base URL}"
mkdir -p /tmp/fleetpulse-console
printf '{"issuer": "%s", "apiUrl": "%s", "clientId": "%s"}\n' \
    "$CONSOLE_OIDC_ISSUER" "$CONSOLE_API_URL" "${CONSOLE_CLIENT_ID:-fleetpulse-console}" \
    > /tmp/fleetpulse-console/config.json
