"""Issue 13 item 2 against the real API process: eight concurrent unauthenticated 64 MiB bodies
(four declared with Content-Length, four streamed chunked) and a 32 MiB header. Each is refused
before anything parses it, and the process's peak RSS (psutil) stays far below the 1 GiB task;
before the fix it grew from about 150 to over 850 MiB."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest
import pytest_asyncio

from fleetpulse.common.crypto import SecretBox
from fleetpulse.testing.mosquitto import MosquittoBroker
from fleetpulse.testing.ports import free_port

from .conftest import TestIssuer

pytestmark = pytest.mark.security
MIB = 1024 * 1024
BODY_MIB = 64
PEAK_GROWTH_LIMIT_MIB = 96


@pytest_asyncio.fixture
async def api_process(
    database_url: str, oidc: TestIssuer, mosquitto: MosquittoBroker, tmp_path: Path
) -> AsyncIterator[tuple[psutil.Process, int]]:
    port = free_port()
    env = {
        **os.environ,
        "FLEETPULSE_DATABASE_URL": database_url,
        "FLEETPULSE_OIDC_ISSUER": oidc.url,
        "FLEETPULSE_WEBHOOK_ENCRYPTION_KEY": SecretBox.generate_key(),
        "FLEETPULSE_MQTT_URL": mosquitto.admin_url,
        "FLEETPULSE_API_HOST": "127.0.0.1",
        "FLEETPULSE_API_PORT": str(port),
        "FLEETPULSE_HEALTH_PORT": "0",
        "FLEETPULSE_OUTBOX_RELAY": "false",
        "FLEETPULSE_LOG_LEVEL": "WARNING",
    }
    log = (tmp_path / "api.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from fleetpulse.provision_api.main import main; main()",
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                pytest.fail((tmp_path / "api.log").read_text())
        yield psutil.Process(process.pid), port
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
        log.close()


class PeakRss:
    def __init__(self, process: psutil.Process) -> None:
        self.process, self.peak = process, process.memory_info().rss
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.process.memory_info().rss)
            await asyncio.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self._task = asyncio.create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def send_body(port: int, *, chunked: bool) -> int | None:
    """POST a 64 MiB JSON body without a token; the status the server answered, if any."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BODY_MIB * MIB}"
    writer.write(
        f"POST /api/v1/devices HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n\r\n".encode()
    )
    chunk = b'{"device_id": "' + b"a" * (MIB - 32) + b'"}'
    chunk = chunk[:MIB]
    answer = asyncio.create_task(reader.readline())
    try:
        for _ in range(BODY_MIB):
            if answer.done():
                break
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            await writer.drain()
        if chunked and not answer.done():
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    try:
        line = await asyncio.wait_for(answer, 30)
    except (ConnectionError, OSError, asyncio.IncompleteReadError):
        return None
    finally:
        writer.close()
    return int(line.split()[1]) if line else None


async def send_header(port: int, size: int) -> int | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /api/v1/devices HTTP/1.1\r\nHost: api\r\nX-Big: ")
        for _ in range(size // MIB):
            writer.write(b"a" * MIB)
            await writer.drain()
        writer.write(b"\r\n\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 30)
    except (ConnectionError, OSError):
        return None
    finally:
        writer.close()
    return int(line.split()[1]) if line else None


async def test_large_unauthenticated_bodies_and_headers_do_not_take_the_memory(
    api_process: tuple[psutil.Process, int],
) -> None:
    process, port = api_process
    baseline = process.memory_info().rss
    with PeakRss(process) as rss:
        statuses = await asyncio.gather(
            *(send_body(port, chunked=n % 2 == 1) for n in range(8)),
            send_header(port, 32 * MIB),
        )
    growth_mib = (rss.peak - baseline) / MIB
    print(f"baseline {baseline / MIB:.0f} MiB, peak {rss.peak / MIB:.0f} MiB, statuses {statuses}")
    assert growth_mib < PEAK_GROWTH_LIMIT_MIB, f"RSS grew by {growth_mib:.0f} MiB"
    assert rss.peak < 512 * MIB
    bodies, header = statuses[:8], statuses[8]
    assert all(s in (413, None) for s in bodies), statuses
    assert bodies.count(413) >= 4, statuses  # every declared 64 MiB body is answered 413
    assert header in (400, 413, 431, None), statuses  # h11 refuses the header; nothing kept
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        assert (await client.get("/healthz")).status_code == 200  # positive control
        small = await client.post("/api/v1/devices", json={"device_id": "d1"})
        assert small.status_code == 401  # an ordinary body still reaches the auth check
