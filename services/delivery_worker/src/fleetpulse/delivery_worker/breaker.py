"""Per-integration circuit breaker and bulkhead, so one dead endpoint cannot slow the others.

After ``failures`` consecutive endpoint failures (no answer, timeout, 5xx) the circuit opens for
``open_s`` (doubling on each failed probe, up to ``max_open_s``): deliveries to that integration
are deferred without an attempt. When the time is up one probe goes through (half-open); its
success closes the circuit. The bulkhead caps attempts in flight per integration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Circuit:
    failures: int = 0
    open_until: float = 0.0
    open_s: float = 0.0
    probing: bool = False
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(8))


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

    async def acquire(self, key: str, wait_s: float = 0.0) -> float:
        """0 if an attempt to ``key`` may start now (then call :meth:`release`), else how many
        seconds to defer it. Waits up to ``wait_s`` for a free slot of the bulkhead."""
        circuit = self._circuit(key)
        deferral = self._deferral(circuit)
        if deferral > 0:
            return deferral
        if not await _take_slot(circuit.slots, wait_s):
            return 1.0
        deferral = self._deferral(circuit)
        if deferral > 0:
            circuit.slots.release()
            return deferral
        if circuit.failures >= self._threshold:
            circuit.probing = True
        return 0.0

    def _circuit(self, key: str) -> _Circuit:
        circuit = self._circuits.get(key)
        if circuit is None:
            circuit = self._circuits[key] = _Circuit(slots=asyncio.Semaphore(self._max_in_flight))
        return circuit

    def _deferral(self, circuit: _Circuit) -> float:
        now = self._clock()
        if circuit.open_until > now:
            return circuit.open_until - now
        if circuit.failures >= self._threshold and circuit.probing:
            return max(1.0, self._open_s / 10)
        return 0.0

    def release(self, key: str, *, endpoint_failure: bool) -> None:
        circuit = self._circuits[key]
        circuit.slots.release()
        if not endpoint_failure:
            circuit.failures, circuit.open_s, circuit.probing = 0, 0.0, False
            return
        circuit.failures += 1
        if circuit.failures >= self._threshold:
            circuit.open_s = min(self._max_open_s, circuit.open_s * 2 or self._open_s)
            circuit.open_until = self._clock() + circuit.open_s
            circuit.probing = False


async def _take_slot(slots: asyncio.Semaphore, wait_s: float) -> bool:
    if wait_s <= 0:
        if slots.locked():
            return False
        await slots.acquire()  # free: returns at once
        return True
    try:
        await asyncio.wait_for(slots.acquire(), wait_s)
    except TimeoutError:
        return False
    return True
