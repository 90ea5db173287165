"""Errors of the shared library, so callers never catch a driver's exception type."""

from __future__ import annotations


class FleetPulseError(Exception):
    """Base of every error raised by fleetpulse.common."""


class ConfigurationError(FleetPulseError):
    """A setting is missing or invalid; ``setting`` names the environment variable."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


class ConcurrencyError(FleetPulseError):
    """An append stated an expected version that is no longer the stream's version."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id!r}: expected version {expected}, found {actual}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
