"""The fault-injection hooks: kill one child and start it again as it was started."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from fleetpulse.devstack.supervisor import Supervisor

SLEEPER = [
    sys.executable,
    "-c",
    "import os, time; print(os.environ['MARK'], flush=True); time.sleep(60)",
]


def test_kill_then_respawn_keeps_command_environment_and_place(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    first = supervisor.start("first", SLEEPER, {"MARK": "one"})
    target = supervisor.start("target", SLEEPER, {"MARK": "two"}, infrastructure=True)
    try:
        dead = supervisor.kill("target", signal.SIGKILL)
        assert not dead.running() and dead.process.returncode == -signal.SIGKILL
        again = supervisor.respawn("target")
        assert again.running() and again.pid != target.pid
        assert (again.argv, dict(again.env), again.infrastructure) == (
            target.argv,
            {"MARK": "two"},
            True,
        )
        assert [c.name for c in supervisor.children] == ["first", "target"]
        assert supervisor.child("target") is again and supervisor.child("first") is first
    finally:
        assert supervisor.stop_all(service_grace_s=5, infrastructure_grace_s=5) == []
    assert not again.running() and not first.running()
