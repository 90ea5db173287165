"""The platform end to end: start the dev stack, run the smoke check against it, stop it.

The stack gets its own dev directory, free ports and a unique database, so it never collides with
a developer's running ``make dev``. Passes only once all five services work.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetpulse.devstack.database import drop_database
from fleetpulse.devstack.layout import DevDir, StackState, listening

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
BIN = Path(sys.executable).parent


@dataclass(frozen=True, slots=True)
class RunningStack:
    env: dict[str, str]
    state: StackState
    dev: DevDir

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            for log in sorted(self.dev.logs.glob("*.log"))
        )


def run(
    argv: list[str | Path], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def dev_stack(tmp_path: Path) -> Iterator[RunningStack]:
    database = f"fleetpulse_e2e_{uuid.uuid4().hex[:8]}"
    dev = DevDir(tmp_path / ".dev")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETPULSE_")}
    env["FLEETPULSE_DEV_DIR"] = str(dev.root)
    started = run(
        [BIN / "fleetpulse-dev", "--detach", "--free-ports", "--database", database],
        env,
        timeout=300,
    )
    state = StackState.read(dev.state_file)
    try:
        assert started.returncode == 0 and state is not None, started.stdout + started.stderr
        assert "skipping" not in started.stdout, f"not every service runs yet:\n{started.stdout}"
        yield RunningStack(env, state, dev)
    finally:
        stopped = run([BIN / "fleetpulse-dev", "--stop"], env, timeout=120)
        asyncio.run(drop_database(SERVER, database))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        if state is not None:
            still = [port for port in state.ports if listening(port)]
            assert still == [], f"still listening after --stop: {still}"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_dev_stack_passes_the_smoke_check(dev_stack: RunningStack) -> None:
    smoke = run([BIN / "fleetpulse-smoke", "--step-timeout", "90"], dev_stack.env, timeout=800)
    assert smoke.returncode == 0, f"{smoke.stdout}{smoke.stderr}\n{dev_stack.logs()}"
    assert "PASS" in smoke.stdout
