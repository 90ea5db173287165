"""The service runtime: health probes, SIGTERM drains in-flight work, a deadline bounds it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from fleetpulse.testing.ports import free_port, wait_for_port

SERVICE = """
import asyncio, sys
from fleetpulse.common.runtime import run
from fleetpulse.common.settings import ServiceSettings

async def serve(ctx):
    ready = asyncio.Event()
    async def check():
        return ready.is_set()
    ctx.health.add_check("warmed-up", check)
    await asyncio.sleep(0.3)
    ready.set()
    await ctx.shutdown.wait()
    print("draining", flush=True)
    await asyncio.sleep(float(sys.argv[1]))
    print("drained", flush=True)

run("fleetpulse-demo", ServiceSettings, serve, grace_s=float(sys.argv[2]))
"""


def _start(port: int, work_s: float, grace_s: float) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "FLEETPULSE_DATABASE_URL": "postgresql://h/db",
        "FLEETPULSE_HEALTH_PORT": str(port),
    }
    return subprocess.Popen(
        [sys.executable, "-c", SERVICE, str(work_s), str(grace_s)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 10
    while _get(port, "/readyz")[0] != 200:
        assert time.monotonic() < deadline, "never became ready"
        time.sleep(0.05)


def test_probes_and_graceful_shutdown() -> None:
    port = free_port()
    proc = _start(port, work_s=0.5, grace_s=10)
    try:
        wait_for_port(port)
        assert _get(port, "/healthz") == (200, {"status": "ok"})
        status, body = _get(port, "/readyz")
        assert status in (200, 503)
        if status == 503:
            assert body["failing"] == ["warmed-up"]
        _wait_ready(port)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "drained" in out


def test_shutdown_deadline_cancels_stuck_work() -> None:
    port = free_port()
    proc = _start(port, work_s=60, grace_s=1)
    try:
        wait_for_port(port)
        _wait_ready(port)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        elapsed = time.monotonic() - started
    finally:
        proc.kill()
    assert "draining" in out and "drained" not in out
    assert elapsed < 10
    assert "shutdown deadline passed" in out
