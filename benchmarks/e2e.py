"""End to end on the dev stack: breach -> signed webhook latency p50/p99 and peak RSS per service.

    uv run python benchmarks/e2e.py [--devices 8] [--cycles 40] [--load-devices 50]
        [--load-rate 10] [--load-seconds 20] [--sample-ms 150] [--baseline old.json] [--save new.json]

Starts a private dev stack, the one ``make dev`` and the fault tests run (``fleetpulse.devstack``):
the five services as real processes, a private Mosquitto, a moto server, the dev OIDC issuer, free
ports, and a fresh database on the local PostgreSQL (FLEETPULSE_TEST_POSTGRES_URL), dropped at the
end. Everything is set up through the API with dev tokens: one tenant, a webhook integration to a
receiver in this process (which verifies every Standard Webhooks signature) and a route for all.

1. latency: ``--devices`` devices, each with its own threshold rule (``temp_c > 50``, selected by a
   device tag), run ``--cycles`` breach/recovery cycles between them, each device one cycle at a
   time over its own MQTT connection (QoS 1). Breach: the time from the device publishing a
   breaching reading to the signed ``alert.opened`` webhook arriving; recovery: from publishing a
   normal reading to ``alert.resolved`` arriving; p50/p99 of each. Then where the time went,
   per stage, from what the services recorded: ingest's receive time (``telemetry.received_at``),
   the alert event and its ``DeliveryScheduled`` event (``events.recorded_at``).
2. load: ``--load-devices`` simulated devices (``fleetpulse.simulator``) publish ``--load-rate``
   messages/s each for ``--load-seconds`` (below ingest's per-device limit of 20/s), matching no
   rule; then the stored rows are counted.
3. memory: every ``--sample-ms`` over the whole run (start-up included), the RSS of each process
   tree the supervisor started (the services, mosquitto, moto, the OIDC issuer); peak per tree.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import uvloop
from _common import parser, percentile, process_tree, report, rss_mib

from fleetpulse.dev_oidc import TokenRequest, mint_token
from fleetpulse.dev_oidc.keys import load_key
from fleetpulse.devstack.layout import SERVICE_NAMES
from fleetpulse.devstack.services import AUDIENCE
from fleetpulse.devstack.stack import DevStack, private_stack
from fleetpulse.simulator.fleet import API, DeviceCredentials, bearer, check, register
from fleetpulse.simulator.runner import Budget, DeviceOptions, Stats, run_device
from fleetpulse.simulator.telemetry import SensorProfile, iso_timestamp
from fleetpulse.smoke.check import SmokeCheck, Tokens
from fleetpulse.smoke.receiver import ReceivedWebhook, WebhookReceiver
from fleetpulse.smoke.steps import Steps
from fleetpulse.testing.postgres import server_url, unique_name

THRESHOLD = 50.0
BREACH = 80.0
NORMAL = 20.0
RULE_PROPAGATION_S = 3.0  # the evaluator's catalog refresh (1 s) with margin, as the fault test
WEBHOOK_TIMEOUT_S = 30.0
PROCESSES = (*SERVICE_NAMES, "mosquitto", "moto", "oidc")


# peak RSS of every process tree the supervisor started -------------------------------------------


class RssSampler(threading.Thread):
    """Every ``interval_s``: per supervisor child, the summed RSS of its process and descendants."""

    def __init__(self, interval_s: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.stack: DevStack | None = None
        self.interval_s = interval_s
        self.peak: dict[str, float] = defaultdict(float)
        self.last: dict[str, float] = {}
        self.samples = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval_s):
            self.sample()

    def watch(self, stack: DevStack) -> None:
        """Sample ``stack``'s processes from now on (before it starts, to see start-up too)."""
        self.stack = stack
        self.start()

    def sample(self) -> None:
        assert self.stack is not None, "watch() a stack first"
        for child in list(self.stack.supervisor.children):
            name = child.name.removeprefix("fleetpulse-")
            rss = rss_mib(process_tree(child.pid))
            if rss:
                self.last[name] = rss
                self.peak[name] = max(self.peak[name], rss)
        self.samples += 1

    def stop(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join(timeout=5)


# the stack ----------------------------------------------------------------------------------------


@contextmanager
def dev_stack(say: Any, sample_s: float) -> Iterator[tuple[DevStack, RssSampler]]:
    """A private dev stack on free ports with its own database, its RSS sampled from the start;
    stopped and dropped on exit."""
    sampler = RssSampler(sample_s)
    with ExitStack() as cleanup, tempfile.TemporaryDirectory(prefix="fp-bench-e2e-") as tmp:
        cleanup.callback(sampler.stop)
        database = unique_name("fp_bench_e2e")
        with private_stack(
            server_url(), database, Path(tmp), say, before_start=sampler.watch
        ) as stack:
            yield stack, sampler


# the receiver: arrival times per device ----------------------------------------------------------


@dataclass
class TimedReceiver(WebhookReceiver):
    """The smoke check's verifying receiver, stamping each webhook as it arrives, per device."""

    by_device: dict[str, asyncio.Queue[tuple[ReceivedWebhook, float]]] = field(
        default_factory=lambda: defaultdict(asyncio.Queue)
    )

    def _check(self, headers: dict[str, str], raw: bytes) -> ReceivedWebhook:
        arrived = time.time()  # wall clock: compared with timestamps PostgreSQL recorded
        webhook = super()._check(headers, raw)
        device = str((webhook.body.get("data") or {}).get("device_id", ""))
        self.by_device[device].put_nowait((webhook, arrived))
        return webhook

    async def next(self, device: str, event_type: str) -> tuple[ReceivedWebhook, float]:
        """The next webhook of ``event_type`` for ``device`` (others are skipped)."""
        queue = self.by_device[device]
        while True:
            webhook, arrived = await asyncio.wait_for(queue.get(), WEBHOOK_TIMEOUT_S)
            if not webhook.verified:
                raise AssertionError(f"webhook for {device} did not verify: {webhook.error}")
            if webhook.type == event_type:
                return webhook, arrived


# the benchmark -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One breach or recovery: published at ``published``, its webhook arrived at ``arrived``."""

    kind: str  # AlertOpened | AlertResolved
    device_id: str
    ts: datetime  # the reading's timestamp (the telemetry row's key)
    alert_id: str
    published: float
    arrived: float

    @property
    def latency(self) -> float:
        return self.arrived - self.published


STAGES = (
    "publish -> ingest received",
    "ingest received -> alert event",
    "alert event -> delivery scheduled",
    "delivery scheduled -> webhook",
)


@dataclass
class Bench:
    stack: DevStack
    api: httpx.AsyncClient
    receiver: TimedReceiver
    tenant: str = field(default_factory=lambda: f"bench-{random.randbytes(3).hex()}")
    samples: list[Sample] = field(default_factory=list)

    def token(self, roles: tuple[str, ...], tenant: str | None = None) -> str:
        key = load_key(self.stack.dev.oidc_key)
        request = TokenRequest(roles=roles, tenant=tenant, subject="bench-e2e")
        return mint_token(key, request, issuer=self.stack.config.issuer, audience=AUDIENCE)

    async def setup(self) -> str:
        """Tenant, webhook integration and route (the smoke check's steps); the admin token."""
        admin = self.token(("tenant-admin",), self.tenant)
        tokens = Tokens(platform_admin=self.token(("platform-admin",)), tenant_admin=admin)
        smoke = SmokeCheck(self.api, tokens, self.tenant, self.receiver, Steps(say=lambda _: None))
        await smoke.create_tenant()
        await self.receiver.start()
        await smoke.create_route(await smoke.create_integration())
        return admin

    async def latency_devices(self, token: str, devices: int) -> list[DeviceCredentials]:
        """``devices`` devices, each with its own rule selecting it by tag."""
        created = []
        for i in range(devices):
            lane = f"lane-{i:03d}"
            device = await register(self.api, token, self.tenant, lane, {"lane": lane})
            rule = {
                "name": f"{lane}: too hot",
                "kind": "threshold",
                "metric": "temp_c",
                "operator": "gt",
                "threshold": THRESHOLD,
                "duration_s": 0,
                "severity": "critical",
                "device_selector": {"tags": {"lane": lane}},
            }
            check(await self.api.post(f"{API}/rules", json=rule, headers=bearer(token)), 201)
            created.append(device)
        return created

    async def cycles(self, device: DeviceCredentials, cycles: int, offset_s: float) -> None:
        """``cycles`` breach/recovery cycles, one at a time, on one MQTT connection."""
        await asyncio.sleep(offset_s)
        seq = 0
        async with device.mqtt_client() as client:
            for _ in range(cycles):
                for value, event_type, kind in (
                    (BREACH, "alert.opened", "AlertOpened"),
                    (NORMAL, "alert.resolved", "AlertResolved"),
                ):
                    seq += 1
                    now = datetime.now(UTC)
                    ts = now.replace(microsecond=now.microsecond // 1000 * 1000)
                    reading = {"ts": iso_timestamp(ts), "seq": seq, "metrics": {"temp_c": value}}
                    published = time.time()
                    await client.publish(device.topic("telemetry"), orjson.dumps(reading), qos=1)
                    try:
                        webhook, arrived = await self.receiver.next(device.device_id, event_type)
                    except TimeoutError:
                        continue  # counted: webhooks received (%)
                    alert_id = str(webhook.body["data"]["alert_id"])
                    self.samples.append(
                        Sample(kind, device.device_id, ts, alert_id, published, arrived)
                    )
                    await asyncio.sleep(random.uniform(0.2, 0.6))

    def latencies(self, kind: str) -> list[float]:
        return [sample.latency for sample in self.samples if sample.kind == kind]

    async def stages(self) -> dict[str, list[float]]:
        """Where the time went, from what the services recorded: the telemetry row's
        ``received_at`` (ingest's receive time), the alert event's and its DeliveryScheduled
        event's ``recorded_at``; seconds per stage, one entry per sample."""
        conn = await asyncpg.connect(self.stack.config.database_url)
        try:
            received = {
                (row["device_id"], row["time"]): row["received_at"].timestamp()
                for row in await conn.fetch(
                    "SELECT device_id, time, received_at FROM telemetry WHERE tenant_id = $1"
                    " AND device_id LIKE 'lane-%'",
                    self.tenant,
                )
            }
            events = {
                (row["alert_id"], row["type"]): (row["alerted"], row["scheduled"])
                for row in await conn.fetch(
                    "SELECT a.data->>'alert_id' AS alert_id, a.type, a.recorded_at AS alerted,"
                    " min(d.recorded_at) AS scheduled FROM events a LEFT JOIN events d"
                    " ON d.tenant_id = a.tenant_id AND d.type = 'DeliveryScheduled'"
                    " AND d.data->>'alert_event_id' = a.event_id::text"
                    " WHERE a.tenant_id = $1 AND a.type IN ('AlertOpened', 'AlertResolved')"
                    " GROUP BY 1, 2, 3",
                    self.tenant,
                )
            }
        finally:
            await conn.close()
        stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
        for sample in self.samples:
            got = received.get((sample.device_id, sample.ts))
            alerted, scheduled = events.get((sample.alert_id, sample.kind), (None, None))
            if got is None or alerted is None or scheduled is None:
                continue
            points = [sample.published, got, alerted.timestamp(), scheduled.timestamp()]
            for stage, start, end in zip(
                STAGES, points, [*points[1:], sample.arrived], strict=True
            ):
                stages[stage].append(end - start)
        return stages

    async def latency(self, token: str, devices: int, cycles: int) -> None:
        lanes = await self.latency_devices(token, devices)
        await asyncio.sleep(RULE_PROPAGATION_S)
        share = [cycles // devices + (i < cycles % devices) for i in range(devices)]
        await asyncio.gather(
            *(
                self.cycles(device, n, i / devices)
                for i, (device, n) in enumerate(zip(lanes, share, strict=True))
                if n
            )
        )

    async def load(self, token: str, devices: int, rate: float, seconds: float) -> Stats:
        fleet = await asyncio.gather(
            *(
                register(self.api, token, self.tenant, f"load-{i:04d}", {"fleet": "load"})
                for i in range(devices)
            )
        )
        options = DeviceOptions(
            interval_s=1 / rate,
            profile=SensorProfile(spike_probability=0.0),
            dropout_probability=0.0,
            seed=7,
        )
        stats = Stats()
        budget = Budget(messages=None, deadline=time.monotonic() + seconds)
        await asyncio.gather(*(run_device(d, options, budget, stats) for d in fleet))
        return stats

    async def stored(self, expected: int, timeout_s: float = 30.0) -> int:
        """Rows of the load devices in ``telemetry``, once all ``expected`` are in (or timed out)."""
        conn = await asyncpg.connect(self.stack.config.database_url)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                rows = int(
                    await conn.fetchval(
                        "SELECT count(*) FROM telemetry WHERE tenant_id = $1"
                        " AND device_id LIKE 'load-%'",
                        self.tenant,
                    )
                )
                if rows >= expected or time.monotonic() > deadline:
                    return rows
                await asyncio.sleep(0.5)
        finally:
            await conn.close()


async def run(stack: DevStack, args: Any) -> dict[str, float]:
    receiver = TimedReceiver()
    try:
        async with httpx.AsyncClient(base_url=stack.config.api_url, timeout=30.0) as api:
            bench = Bench(stack, api, receiver)
            token = await bench.setup()
            started = time.monotonic()
            await bench.latency(token, args.devices, args.cycles)
            print(
                f"  latency: {args.cycles} cycles in {time.monotonic() - started:.1f}s", flush=True
            )
            stages = await bench.stages()
            stats = await bench.load(token, args.load_devices, args.load_rate, args.load_seconds)
            stored = await bench.stored(stats.acknowledged)
            print(f"  load: {stats.line()}; {stored} rows stored", flush=True)
    finally:
        await receiver.stop()
    opened, resolved = bench.latencies("AlertOpened"), bench.latencies("AlertResolved")
    return {
        "breach/recovery cycles": args.cycles,
        "webhooks received (%)": len(bench.samples) / (2 * args.cycles) * 100,
        "breach -> webhook p50 ms": percentile(opened, 0.5) * 1000,
        "breach -> webhook p99 ms": percentile(opened, 0.99) * 1000,
        "breach -> webhook max ms": max(opened, default=float("nan")) * 1000,
        "recovery -> resolved webhook p50 ms": percentile(resolved, 0.5) * 1000,
        "recovery -> resolved webhook p99 ms": percentile(resolved, 0.99) * 1000,
        "recovery -> resolved webhook max ms": max(resolved, default=float("nan")) * 1000,
        **{f"{stage} p50 ms": percentile(stages[stage], 0.5) * 1000 for stage in STAGES},
        **{f"{stage} p99 ms": percentile(stages[stage], 0.99) * 1000 for stage in STAGES},
        "load messages/s acknowledged": stats.acknowledged / args.load_seconds,
        "load readings stored (%)": stored / max(stats.acknowledged, 1) * 100,
    }


def table(figures: dict[str, float], sampler: RssSampler) -> str:
    lines = [
        "",
        f"{'':<28}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}",
    ]
    for label, prefix in (
        ("breach -> alert.opened", "breach -> webhook"),
        ("recovery -> alert.resolved", "recovery -> resolved webhook"),
    ):
        lines.append(
            f"{label:<28}"
            + "".join(f"{figures[f'{prefix} {q} ms']:>10.0f}" for q in ("p50", "p99", "max"))
        )
    for stage in STAGES:
        lines.append(
            f"  {stage:<34}"
            + "".join(f"{figures[f'{stage} {q} ms']:>10.0f}" for q in ("p50", "p99"))
        )
    lines += ["", f"{'process tree':<28}{'peak MiB':>10}{'end MiB':>10}"]
    for name in PROCESSES:
        if name in sampler.peak:
            lines.append(f"{name:<28}{sampler.peak[name]:>10.1f}{sampler.last[name]:>10.1f}")
    lines.append(f"({sampler.samples} samples every {sampler.interval_s * 1000:.0f} ms)")
    return "\n".join(lines)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=8, help="devices with their own rule")
    p.add_argument("--cycles", type=int, default=40, help="breach/recovery cycles in all")
    p.add_argument("--load-devices", type=int, default=50)
    p.add_argument("--load-rate", type=float, default=10.0, help="messages/s per load device")
    p.add_argument("--load-seconds", type=float, default=20.0)
    p.add_argument("--sample-ms", type=float, default=150.0, help="RSS sampling interval")
    p.add_argument("--verbose", action="store_true", help="show the stack's start-up lines")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # cleaned up as after Ctrl-C
    started = time.monotonic()
    say = (lambda line: print(f"  {line}", flush=True)) if args.verbose else (lambda _line: None)
    with dev_stack(say, args.sample_ms / 1000) as (stack, sampler):
        print(f"  dev stack up in {time.monotonic() - started:.1f}s", flush=True)
        figures = uvloop.run(run(stack, args))
    figures |= {f"peak RSS MiB {name}": sampler.peak[name] for name in PROCESSES[:-1]}
    report(
        f"e2e on the dev stack: {args.cycles} breach/recovery cycles over {args.devices} devices;"
        f" load {args.load_devices} devices x {args.load_rate:g} msg/s for {args.load_seconds:g}s",
        figures,
        args.baseline,
        args.save,
    )
    print(table(figures, sampler))
    print(f"\n(total {time.monotonic() - started:.0f}s)")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted (stack stopped, database dropped)")
