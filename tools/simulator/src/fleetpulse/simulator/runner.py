"""Run the fleet: one task per device, each with its own MQTT identity, QoS 1, paced."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiomqtt

from fleetpulse.simulator.fleet import DeviceCredentials
from fleetpulse.simulator.telemetry import (
    ConnectionBehaviour,
    Dropout,
    SensorModel,
    SensorProfile,
)


@dataclass
class Stats:
    """Counters shared by every device task (one event loop: no locks needed)."""

    sent: int = 0
    acknowledged: int = 0
    errors: int = 0
    dropouts: int = 0
    reconnects: int = 0
    started: float = field(default_factory=time.monotonic)
    last_error: str = ""

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.acknowledged / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        return (
            f"sent {self.sent}  acked {self.acknowledged}  {self.rate():.1f} msg/s  "
            f"errors {self.errors}  dropouts {self.dropouts}  reconnects {self.reconnects}"
        )


@dataclass
class Budget:
    """What is left to send: ``messages`` in total (None: unbounded) until ``deadline``."""

    messages: int | None
    deadline: float | None

    def exhausted(self) -> bool:
        out_of_time = self.deadline is not None and time.monotonic() >= self.deadline
        return out_of_time or (self.messages is not None and self.messages <= 0)

    def take(self) -> bool:
        """Reserve one message; False once the budget is spent."""
        if self.exhausted():
            return False
        if self.messages is not None:
            self.messages -= 1
        return True

    def sleep_s(self, wanted: float) -> float:
        """``wanted``, cut short at the deadline."""
        if self.deadline is None:
            return wanted
        return max(0.0, min(wanted, self.deadline - time.monotonic()))

    def give_back(self) -> None:
        if self.messages is not None:
            self.messages += 1


@dataclass(frozen=True, slots=True)
class DeviceOptions:
    interval_s: float
    profile: SensorProfile
    dropout_probability: float
    seed: int | None


async def run_device(
    device: DeviceCredentials, options: DeviceOptions, budget: Budget, stats: Stats
) -> None:
    """Connect, publish, drop out now and then, reconnect: until the budget is spent."""
    rng = random.Random(f"{options.seed}:{device.device_id}" if options.seed is not None else None)
    model = SensorModel(rng, options.profile)
    behaviour = ConnectionBehaviour(rng, options.dropout_probability)
    await asyncio.sleep(budget.sleep_s(rng.uniform(0, options.interval_s)))  # spread the fleet
    seq, sessions = 0, 0
    while not budget.exhausted():
        try:
            async with connect(device) as client:
                stats.reconnects += int(sessions > 0)
                sessions += 1
                offline_s, seq = await publish_session(
                    client, device, model, behaviour, options, budget, stats, seq
                )
        except aiomqtt.MqttError as exc:
            stats.errors += 1
            stats.last_error = f"{device.device_id}: {exc}"
            offline_s = min(5.0, max(1.0, options.interval_s))
        if offline_s:
            await asyncio.sleep(budget.sleep_s(offline_s))


async def publish_session(
    client: aiomqtt.Client,
    device: DeviceCredentials,
    model: SensorModel,
    behaviour: ConnectionBehaviour,
    options: DeviceOptions,
    budget: Budget,
    stats: Stats,
    seq: int,
) -> tuple[float, int]:
    """Publish at the device's pace until the budget is spent (0 s offline) or a dropout
    (its offline seconds); returns those and the last sequence number used."""
    topic = device.topic("telemetry")
    next_at = time.monotonic()
    while budget.take():
        action = behaviour.next_action()
        if isinstance(action, Dropout):
            budget.give_back()
            stats.dropouts += 1
            return action.seconds, seq
        seq += 1
        stats.sent += 1
        await client.publish(topic, json.dumps(model.reading(datetime.now(UTC), seq)), qos=1)
        stats.acknowledged += 1
        next_at += options.interval_s
        await asyncio.sleep(budget.sleep_s(max(0.0, next_at - time.monotonic())))
    return 0.0, seq


def connect(device: DeviceCredentials) -> aiomqtt.Client:
    return device.mqtt_client(keepalive=30)
