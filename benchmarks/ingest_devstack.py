"""Batched readings/s through the dev stack's own ingest (the shipped single-ingest setup).

A private dev stack (``fleetpulse.devstack.stack.private_stack``: every service, its broker
config, one ingest with one plain persistent subscription, forwarding to the evaluator on),
``--devices`` devices registered, a publisher user added to its broker, then ``--batched``
100-reading messages published by ``--publishers`` raw QoS 1 publishers; readings/s = stored
readings / time from the first publish until the last row is in ``telemetry``; with forwarding
on, also stored *and evaluated* readings/s: until the evaluator queue is seen empty (nothing
waiting or in flight), with the evaluator's and moto's CPU per reading until then.
``--max-inflight`` overrides ingest's ``FLEETPULSE_MQTT_MAX_INFLIGHT`` (0: the behaviour before
the window flush) and ``--env NAME=value`` any other ingest setting, so variants run back to back
on the same machine. Prints where the CPU went (each stack process, and the database backends of
ingest and the evaluator) per stored reading, and the load average: on a shared machine the
CPU figures are the comparable ones.

    uv run python benchmarks/ingest_devstack.py [--batched 3000] [--max-inflight 1000]
        [--no-forward] [--env FLEETPULSE_COMMITTED_BATCHES=4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, process_tree, report
from ingest import DEVICES, TENANT, CpuMeter, batched_messages, publish_all, wait_rows

from fleetpulse.common.aws import AwsConfig, aws_client
from fleetpulse.common.messaging import queue_names
from fleetpulse.devstack import services
from fleetpulse.devstack.broker import Acl, dynsec_control, user_commands
from fleetpulse.devstack.stack import private_stack
from fleetpulse.testing.postgres import server_url, unique_name

PUBLISHER = "bench-publisher"
QUEUE_PREFIX = "fleetpulse-"  # the dev stack's FLEETPULSE_QUEUE_PREFIX


def _stack_cpu() -> dict[str, float]:
    """CPU seconds so far of each process the stack runs (this script's descendants), by name."""
    out: dict[str, float] = {}
    for process in process_tree(os.getpid())[1:]:
        try:
            cmd = process.cmdline()
            times = process.cpu_times()
        except psutil.Error:
            continue
        name = next((Path(a).name for a in cmd if "fleetpulse-" in a or "mosquitto" in a), None)
        if name is None:
            name = "moto" if any("moto" in a for a in cmd) else Path(cmd[0]).name if cmd else "?"
        out[name] = out.get(name, 0.0) + times.user + times.system
    return out


class _Broker:
    """What ``publish_all`` needs of a broker."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port


async def measure(stack: services.StackConfig, args: argparse.Namespace) -> dict[str, float]:
    db_url = stack.database_url
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    try:
        await pool.executemany(
            "INSERT INTO devices (tenant_id, device_id, status, registered_at, updated_at, "
            "version) VALUES ($1, $2, 'active', now(), now(), 1) ON CONFLICT DO NOTHING",
            [(TENANT, f"d{i}") for i in range(DEVICES)],
        )
        await asyncio.sleep(2.5)  # ingest's registry poll (1 s) sees them
        messages = batched_messages(args.batched, int(time.time() * 1000) - 3_600_000)
        broker = _Broker(stack.host, stack.ports.mqtt)
        meters = {
            app: CpuMeter(pool, app, None) for app in ("fleetpulse-ingest", "fleetpulse-evaluator")
        }
        for meter in meters.values():
            await meter.start()
        before = _stack_cpu()
        started = time.perf_counter()
        await publish_all(broker, PUBLISHER, messages, args.publishers)
        ended = await wait_rows(pool, args.batched * 100)
        after = _stack_cpu()
        backends = {app: (await meter.stop())[0] for app, meter in meters.items()}
        evaluated = None if args.no_forward else await wait_evaluated(stack)
        drained = _stack_cpu()
    finally:
        await pool.close()
    seconds = ended - started
    readings = args.batched * 100
    figures = _evaluated_figures(readings, started, evaluated, before, drained)
    spent = {name: after[name] - before.get(name, 0.0) for name in after}
    print(f"  wall {seconds:.1f}s; load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    for name, cpu in sorted(spent.items(), key=lambda kv: -kv[1]):
        if cpu >= 0.05:
            print(
                f"  CPU {name}: {cpu:.1f}s ({cpu / readings * 1e6:.1f} us/reading)", file=sys.stderr
            )
    for app, cpu in backends.items():
        print(
            f"  CPU database backends of {app}: {cpu:.1f}s ({cpu / readings * 1e6:.1f} us/reading)",
            file=sys.stderr,
        )
    return {
        **figures,
        "dev stack batched(100): readings/s": readings / seconds,
        "dev stack batched(100): messages/s": args.batched / seconds,
        "dev stack: ingest CPU us/reading": spent.get("fleetpulse-ingest", 0.0) / readings * 1e6,
        "dev stack: ingest's database CPU us/reading": backends["fleetpulse-ingest"]
        / readings
        * 1e6,
    }


async def wait_evaluated(stack: services.StackConfig, timeout_s: float = 300) -> float:
    """When the evaluator queue was first seen empty (nothing waiting, nothing in flight) twice
    in a row, 250 ms apart, after the rows are in: every forwarded reading evaluated."""
    config = AwsConfig(endpoint_url=stack.moto_url, region=services.REGION)
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    deadline = time.perf_counter() + timeout_s
    async with aws_client("sqs", config) as sqs:
        url = (await sqs.get_queue_url(QueueName=queue_names(QUEUE_PREFIX).evaluator))["QueueUrl"]
        empty_since = None
        while time.perf_counter() < deadline:
            attributes = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names))[
                "Attributes"
            ]
            if any(int(attributes[name]) for name in names):
                empty_since = None
            elif empty_since is not None:
                return empty_since
            else:
                empty_since = time.perf_counter()
            await asyncio.sleep(0.25)
    raise TimeoutError("the evaluator queue did not drain")


def _evaluated_figures(
    readings: int,
    started: float,
    evaluated: float | None,
    before: dict[str, float],
    drained: dict[str, float],
) -> dict[str, float]:
    """Stored and evaluated readings/s, and each process's CPU per reading until then."""
    if evaluated is None:
        return {}
    spent = {name: drained[name] - before.get(name, 0.0) for name in drained}
    for name in ("fleetpulse-evaluator", "moto"):
        print(
            f"  CPU {name} until the evaluator queue drained: {spent.get(name, 0.0):.1f}s"
            f" ({spent.get(name, 0.0) / readings * 1e6:.1f} us/reading)",
            file=sys.stderr,
        )
    return {
        "dev stack batched(100): stored and evaluated readings/s": readings / (evaluated - started),
        "dev stack: evaluator CPU us/reading": spent.get("fleetpulse-evaluator", 0.0)
        / readings
        * 1e6,
        "dev stack: moto CPU us/reading": spent.get("moto", 0.0) / readings * 1e6,
    }


def _say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--batched", type=int, default=3000, help="100-reading messages")
    p.add_argument("--publishers", type=int, default=3)
    p.add_argument("--max-inflight", type=int, default=None)
    p.add_argument("--no-forward", action="store_true", help="ingest does not feed the evaluator")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="FLEETPULSE_X=value",
        help="another ingest setting for this run (repeatable)",
    )
    args = p.parse_args()
    for assignment in args.env:
        name, _, value = assignment.partition("=")
        services.SINGLE_INGEST_ENV[name] = value
    if args.no_forward:
        services.SINGLE_INGEST_ENV["FLEETPULSE_FORWARD_TO_EVALUATOR"] = "false"
    if args.max_inflight is not None:
        services.SINGLE_INGEST_ENV["FLEETPULSE_MQTT_MAX_INFLIGHT"] = str(args.max_inflight)
    print(f"ingest env: {services.SINGLE_INGEST_ENV}", file=sys.stderr, flush=True)
    print(f"load average before: {os.getloadavg()}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="fp-bench-dev-") as tmp:
        database = unique_name("fp_bench_dev_ingest")
        with private_stack(server_url(), database, Path(tmp), _say) as stack:
            config = stack.config
            dynsec_control(
                config.host,
                config.ports.mqtt,
                config.secrets.mqtt_admin_password,
                user_commands(PUBLISHER, "pw", [Acl("publishClientSend", "tenant/#")]),
            )
            figures = asyncio.run(measure(config, args))
    print(f"load average after: {os.getloadavg()}", file=sys.stderr, flush=True)
    report(
        "ingest through the dev stack (one ingest, plain subscription)",
        figures,
        args.baseline,
        args.save,
    )


if __name__ == "__main__":
    main()
