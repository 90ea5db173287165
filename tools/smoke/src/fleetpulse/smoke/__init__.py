"""``fleetpulse-smoke`` (``make smoke``): one alert end to end against a running stack.

A fresh tenant, a device, a threshold rule, a webhook integration pointing at a receiver this
check runs itself, and a route; then the device publishes a breach with its own credentials, and
the check waits for the stored reading, the open alert and a Standard Webhooks signed
``alert.opened``; then a recovery, the resolved alert and ``alert.resolved``. Every step has a
timeout; the first failing step is named and the exit status is 1.
"""
