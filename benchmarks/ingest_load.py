"""Publisher processes for benchmarks/ingest.py: paho (C-free but threaded) QoS 1 at full speed."""

from __future__ import annotations

import threading
import time

from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion


def publish_share(host: str, port: int, user: str, password: str,
                  messages: list[tuple[str, bytes]], inflight: int = 1000) -> float:
    """Publish ``messages`` with QoS 1, wait for every PUBACK; returns seconds taken."""
    done = threading.Event()
    remaining = [len(messages)]
    lock = threading.Lock()

    def on_publish(*_args: object) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.username_pw_set(user, password)
    client.max_inflight_messages_set(inflight)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect(host, port)
    client.loop_start()
    started = time.perf_counter()
    for topic, payload in messages:
        client.publish(topic, payload, qos=1)
    done.wait(600)
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return elapsed
