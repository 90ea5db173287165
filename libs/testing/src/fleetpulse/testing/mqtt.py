"""MQTT clients for tests only, kept out of the service images.

:func:`acking_client` (zmqtt, the client under FastStream's MQTT broker) lets a consumer
acknowledge a QoS 1 message only after its work: subscribe with ``auto_ack=False`` and call
``await message.ack()``; the broker redelivers what was not acknowledged when a persistent session
reconnects (``clean_session=False``). ``libs/common/tests/test_mqtt_ack.py`` proves that and holds
ingest's own :class:`fleetpulse.common.mqtt_subscriber.MqttSubscriber` to the same behaviour.
"""

from __future__ import annotations

import ssl

import zmqtt

from fleetpulse.common.mqtt import MqttEndpoint

__all__ = ["acking_client"]


def acking_client(
    endpoint: MqttEndpoint,
    *,
    client_id: str,
    clean_session: bool = False,
    keepalive: int = 30,
    reconnect_attempts: int | None = None,
) -> zmqtt.MQTTClient:
    """A zmqtt client for consumers that acknowledge after their work (MQTT 3.1.1).

    ``clean_session=False`` (the default) keeps the broker session, so unacknowledged QoS 1
    messages are redelivered when the same ``client_id`` reconnects; zmqtt reconnects by itself
    with exponential backoff (``reconnect_attempts=None``: forever). The broker's
    ``max_inflight_messages`` bounds how many messages wait for an ack on one connection.
    """
    tls: ssl.SSLContext | bool = endpoint.ssl_context() or False
    return zmqtt.MQTTClient(
        endpoint.host,
        endpoint.port,
        client_id=client_id,
        keepalive=keepalive,
        clean_session=clean_session,
        username=endpoint.username,
        password=endpoint.password_value,
        tls=tls,
        reconnect=zmqtt.ReconnectConfig(
            initial_delay=0.2, max_delay=10.0, max_attempts=reconnect_attempts
        ),
    )
