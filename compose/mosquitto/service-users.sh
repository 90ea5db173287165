#!/bin/sh
# One-shot, once the broker is up: the broker users ingest and the delivery worker connect as,
# each with a role holding only what it needs (the same ACLs as `make dev`:
# tools/devstack/src/fleetpulse/devstack/broker.py INGEST_ACLS / DELIVERY_ACLS; a test checks).
# Deleting first makes a re-run idempotent and applies changed passwords.
set -eu
: "${MQTT_ADMIN_USER:?MQTT_ADMIN_USER is required}"
: "${MQTT_ADMIN_PASSWORD:?MQTT_ADMIN_PASSWORD is required}"
: "${MQTT_INGEST_PASSWORD:?MQTT_INGEST_PASSWORD is required}"
: "${MQTT_DELIVERY_PASSWORD:?MQTT_DELIVERY_PASSWORD is required}"
MQTT_HOST="${MQTT_HOST:-mosquitto}"
MQTT_PORT="${MQTT_PORT:-1883}"

dynsec() {
    mosquitto_ctrl -h "$MQTT_HOST" -p "$MQTT_PORT" -u "$MQTT_ADMIN_USER" -P "$MQTT_ADMIN_PASSWORD" dynsec "$@"
}

# user <name> <password>: (re)create the client and its same-named, empty role
user() {
    dynsec deleteClient "$1" >/dev/null 2>&1 || true
    dynsec deleteRole "$1" >/dev/null 2>&1 || true
    dynsec createRole "$1"
    dynsec createClient "$1" -p "$2"
    dynsec addClientRole "$1" "$1"
}

user fleetpulse-ingest "$MQTT_INGEST_PASSWORD"
dynsec addRoleACL fleetpulse-ingest subscribePattern '$share/ingest/tenant/+/device/+/#' allow 0
dynsec addRoleACL fleetpulse-ingest unsubscribePattern '$share/ingest/tenant/+/device/+/#' allow 0
dynsec addRoleACL fleetpulse-ingest subscribePattern 'tenant/+/device/+/#' allow 0
dynsec addRoleACL fleetpulse-ingest publishClientReceive 'tenant/#' allow 0

# The MQTT channel publishes only into the integrations' namespace fleetpulse/{tenant}/...
# (the API keeps each tenant under its own fleetpulse/{tenant}/), never as a device.
user fleetpulse-delivery "$MQTT_DELIVERY_PASSWORD"
dynsec addRoleACL fleetpulse-delivery publishClientSend 'fleetpulse/#' allow 0
dynsec addRoleACL fleetpulse-delivery publishClientSend 'tenant/#' deny 10

echo "mosquitto-users: fleetpulse-ingest and fleetpulse-delivery are in place"
