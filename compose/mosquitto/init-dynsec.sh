#!/bin/sh
# One-shot: create the dynamic-security file with the admin client on first start only, so
# device credentials created later survive `make down` / `make up`.
set -eu
file=/mosquitto/data/dynamic-security.json
: "${MQTT_ADMIN_USER:?MQTT_ADMIN_USER is required}"
: "${MQTT_ADMIN_PASSWORD:?MQTT_ADMIN_PASSWORD is required}"
if [ -s "$file" ]; then
    echo "mosquitto-init: $file exists, keeping it"
else
    mosquitto_ctrl dynsec init "$file" "$MQTT_ADMIN_USER" "$MQTT_ADMIN_PASSWORD"
    echo "mosquitto-init: created $file with admin $MQTT_ADMIN_USER"
fi
chown -R mosquitto:mosquitto /mosquitto/data
chmod 0700 /mosquitto/data
chmod 0600 "$file"
