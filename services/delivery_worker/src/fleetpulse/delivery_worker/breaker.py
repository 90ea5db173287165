"""Per-integration circuit breaker and bulkhead, so one dead endpoint cannot slow the others.

After ``failures`` consecutive endpoint failures (no answer, timeout, 5xx) the circuit opens for
``open_s`` (doubling on each failed probe, up to ``max_open_s``): deliveries to that integration
are deferred without an attempt. When the time is up one probe goes through (half-open); its
success closes the circuit. The bulkhead caps attempts in flight per integration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Circuit:
    failures: int = 0
    open_until: float = 0.0
    open_s: float = 0.0
    probing: bool = False
    in_flight: int = 0


class CircuitBreakers:
    def __init__(
        self,
        *,
        failures: int = 5,
        open_s: float = 30.0,
        max_open_s: float = 600.0,
        max_in_flight: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failures
        self._open_s = open_s
        self._max_open_s = max_open_s
        self._max_in_flight = max_in_flight
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def acquire(self, key: str) -> float:
        """0 if an attempt to ``key`` may start now (then call :meth:`release`), else how many
        seconds to defer it."""
        circuit = self._circuits.setdefault(key, _Circuit())
        now = self._clock()
        if circuit.open_until > now:
            return circuit.open_until - now
        if circuit.in_flight >= self._max_in_flight:
            return 1.0
        if circuit.failures >= self._threshold:
            if circuit.probing:
                return max(1.0, self._open_s / 10)
            circuit.probing = True
        circuit.in_flight += 1
        return 0.0

    def release(self, key: str, *, endpoint_failure: bool) -> None:
        circuit = self._circuits[key]
        circuit.in_flight -= 1
        if not endpoint_failure:
            circuit.failures, circuit.open_s, circuit.probing = 0, 0.0, False
            return
        circuit.failures += 1
        if circuit.failures >= self._threshold:
            circuit.open_s = min(self._max_open_s, circuit.open_s * 2 or self._open_s)
            circuit.open_until = self._clock() + circuit.open_s
            circuit.probing = False

    def is_open(self, key: str) -> bool:
        circuit = self._circuits.get(key)
        return circuit is not None and circuit.open_until > self._clock()
