"""compose/mosquitto/service-users.sh against a real Mosquitto with dynamic security: the broker
users of ingest and the delivery worker get exactly the ACLs `make dev` gives them, re-runs are
idempotent, and what the ACLs forbid is refused."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from fleetpulse.devstack.broker import DELIVERY_ACLS, DELIVERY_USER, INGEST_ACLS, INGEST_USER, Acl
from fleetpulse.testing.mosquitto import Acl as BrokerAcl
from fleetpulse.testing.mosquitto import MosquittoBroker

SCRIPT = Path(__file__).resolve().parents[2] / "compose" / "mosquitto" / "service-users.sh"


def run_script(broker: MosquittoBroker, ingest_pw: str, delivery_pw: str) -> None:
    env = {
        **os.environ,
        "MQTT_HOST": broker.host,
        "MQTT_PORT": str(broker.port),
        "MQTT_ADMIN_USER": broker.admin_username,
        "MQTT_ADMIN_PASSWORD": broker.admin_password,
        "MQTT_INGEST_PASSWORD": ingest_pw,
        "MQTT_DELIVERY_PASSWORD": delivery_pw,
    }
    done = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def role_acls(broker: MosquittoBroker, role: str) -> set[Acl]:
    [answer] = broker.control([{"command": "getRole", "rolename": role}])
    return {
        Acl(a["acltype"], a["topic"], a["allow"], a["priority"])
        for a in answer["data"]["role"]["acls"]
    }


def connect(broker: MosquittoBroker, user: str, password: str) -> tuple[paho.Client, list[Any]]:
    received: list[Any] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-{time.monotonic_ns()}")
    client.username_pw_set(user, password)
    client.on_message = lambda _c, _u, message: received.append(message)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client, received


def connack(broker: MosquittoBroker, user: str, password: str) -> int:
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.username_pw_set(user, password)
    codes: list[int] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: codes.append(reason.value)
    client.connect(broker.host, broker.port)
    client.loop_start()
    deadline = time.monotonic() + 5
    while not codes and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()
    assert codes, "no CONNACK"
    return codes[0]


def test_users_get_the_dev_stack_acls_and_reruns_replace_passwords(
    mosquitto_broker: MosquittoBroker,
) -> None:
    run_script(mosquitto_broker, "ingest-1", "delivery-1")
    run_script(mosquitto_broker, "ingest-2", "delivery-2")
    assert role_acls(mosquitto_broker, INGEST_USER) == set(INGEST_ACLS)
    assert role_acls(mosquitto_broker, DELIVERY_USER) == set(DELIVERY_ACLS)
    assert connack(mosquitto_broker, INGEST_USER, "ingest-2") == 0
    assert connack(mosquitto_broker, DELIVERY_USER, "delivery-2") == 0
    assert connack(mosquitto_broker, INGEST_USER, "ingest-1") != 0


def test_the_acls_let_each_do_its_job_and_nothing_else(mosquitto_broker: MosquittoBroker) -> None:
    run_script(mosquitto_broker, "ingest-pw", "delivery-pw")
    device = mosquitto_broker.add_client(
        "dev-1", "pw", [BrokerAcl("publishClientSend", "tenant/t1/device/d1/#")]
    )
    ingest, to_ingest = connect(mosquitto_broker, INGEST_USER, "ingest-pw")
    delivery, _ = connect(mosquitto_broker, DELIVERY_USER, "delivery-pw")
    watcher_name = mosquitto_broker.add_client(
        "watcher",
        "pw",
        [BrokerAcl("subscribePattern", "#"), BrokerAcl("publishClientReceive", "#")],
    )
    watcher, to_watcher = connect(mosquitto_broker, watcher_name, "pw")
    device_client, _ = connect(mosquitto_broker, device, "pw")
    try:
        granted = ingest.subscribe("tenant/+/device/+/+", qos=1)
        watcher.subscribe([("tenant/#", 1), ("alerts/#", 1), ("fleetpulse/#", 1)])
        time.sleep(0.5)
        device_client.publish("tenant/t1/device/d1/telemetry", b"reading", qos=1).wait_for_publish(
            5
        )
        ingest.publish("tenant/t1/device/d1/telemetry", b"forged by ingest", qos=1)
        delivery.publish("tenant/t2/device/d9/telemetry", b"forged by delivery", qos=1)
        delivery.publish("alerts/ops", b"outside the namespace", qos=1).wait_for_publish(5)
        delivery.publish("fleetpulse/t1/alerts", b"alert", qos=1).wait_for_publish(5)
        time.sleep(1.0)
        assert granted[0] == paho.MQTT_ERR_SUCCESS
        assert [m.payload for m in to_ingest] == [b"reading"]
        assert sorted(m.payload for m in to_watcher) == [b"alert", b"reading"]
    finally:
        for client in (ingest, delivery, watcher, device_client):
            client.loop_stop()
            client.disconnect()
