"""Where telemetry enters ingest; each entrypoint only decodes and hands envelopes to the
:class:`~fleetpulse.ingest.pipeline.Pipeline`, which acknowledges them once committed.

- MQTT (Mosquitto, shared subscription): :class:`~fleetpulse.ingest.mqtt_source.MqttSource`.
- SQS ``{prefix}ingest`` (AWS IoT Core's topic rule), a handler on the shared consumer:
  :class:`~fleetpulse.ingest.sqs_source.SqsSource`.
"""

from __future__ import annotations

from fleetpulse.ingest.mqtt_source import MqttSource
from fleetpulse.ingest.sqs_source import SqsSource, unwrap

__all__ = ["MqttSource", "SqsSource", "unwrap"]
