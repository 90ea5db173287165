"""Channels: the ``Channel`` port and one adapter per integration kind."""

from fleetpulse.delivery_worker.channels.base import Channel, Notification

__all__ = ["Channel", "Notification"]
