"""TimescaleDB for tests: PGlite with the timescaledb extension behind a wire-protocol server.

``timescale_url`` (session scope) starts ``libs/testing/timescale/server.mjs`` with Node on a free
loopback port and yields its DSN (``sslmode=disable``, any password). The server holds ONE
in-memory database and serves ONE client at a time (the next connection waits until the current
one closes), so tests use a single connection or a pool of size 1, close it before another part
connects, and keep their rows apart by tenant id. The npm packages are pinned in
``libs/testing/timescale/package-lock.json`` and installed with ``npm ci`` (``.ci/run`` and
``make test`` do it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetpulse.testing.ports import free_port

HARNESS_DIR = Path(__file__).resolve().parents[3] / "timescale"
START_TIMEOUT_S = 90.0


class TimescaleServer:
    """One ``node server.mjs`` process; :meth:`stop` ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.url = f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres?sslmode=disable"
        self._log_path = log_path
        self._log = log_path.open("wb")
        self._proc = subprocess.Popen(
            [_node(), str(HARNESS_DIR / "server.mjs"), str(port)],
            cwd=HARNESS_DIR,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if f"ready {self.port}" in self.log():
                return
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"timescale harness exited {self._proc.returncode}: {self.log()}"
                )
            time.sleep(0.1)
        raise TimeoutError(f"timescale harness not ready after {timeout}s: {self.log()}")

    def log(self) -> str:
        return self._log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        self._log.close()
        shutil.rmtree(self._log_path.parent, ignore_errors=True)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("the Timescale harness needs Node.js 20+ (`node` on PATH)")
    if not (HARNESS_DIR / "node_modules" / "@unni-craftsman" / "pglite").is_dir():
        raise RuntimeError(f"the Timescale harness is not installed: run `npm ci` in {HARNESS_DIR}")
    return node


def start_timescale() -> TimescaleServer:
    """Start a harness server and wait until it accepts connections."""
    log_dir = Path(tempfile.mkdtemp(prefix="fp-timescale-"))
    server = TimescaleServer(free_port(), log_dir / "server.log")
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def timescale_url() -> Iterator[str]:
    """DSN of a fresh TimescaleDB (PGlite) server: one database, one client at a time.

    ``FLEETPULSE_TEST_TIMESCALE_URL`` points the suite at an empty TimescaleDB database instead.
    """
    if os.environ.get("FLEETPULSE_TEST_TIMESCALE_URL"):
        yield os.environ["FLEETPULSE_TEST_TIMESCALE_URL"]
        return
    server = start_timescale()
    try:
        yield server.url
    finally:
        server.stop()
