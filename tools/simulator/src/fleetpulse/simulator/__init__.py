"""``fleetpulse-simulate``: a fleet of simulated devices publishing telemetry over MQTT.

- :mod:`.telemetry` (pure, no I/O): sensor models with noise, drift, daily cycles and spikes, and
  the connection behaviour (dropouts and reconnects) of one device.
- :mod:`.fleet`: registers devices through the API (or claims them with a provisioning profile).
- :mod:`.runner`: one task per device, its own MQTT credentials, QoS 1 publishes at a given rate.
- :mod:`.cli`: arguments, the live progress line and the summary.
"""
