"""Start child processes in their own process groups and stop every one of them.

Each child gets its own session, so a terminal's Ctrl-C reaches only the supervisor, which then
stops the services first (they flush to the broker, moto and the database) and the
infrastructure last: SIGTERM to the whole group, SIGKILL after a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

SIGNALS = {signal.SIGINT, signal.SIGTERM}


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_file: Path
    infrastructure: bool
    argv: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class StopRequested(Exception):  # noqa: N818 - a control-flow signal, not an error
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)


class SignalGate:
    """Turns SIGINT/SIGTERM into :class:`StopRequested`, but never while a child is being forked
    and recorded (so none is orphaned). Blocking the signals instead would not do: children
    inherit the signal mask and would then ignore our SIGTERM."""

    def __init__(self) -> None:
        self._held = 0
        self._pending: int | None = None

    def install(self) -> None:
        for signum in SIGNALS:
            signal.signal(signum, self._on_signal)

    def ignore(self) -> None:
        for signum in SIGNALS:
            signal.signal(signum, signal.SIG_IGN)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._held:
            self._pending = signum
            return
        raise StopRequested(signum)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        if not self._held and self._pending is not None:
            raise StopRequested(self._pending)


GATE = SignalGate()


class Supervisor:
    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self.children: list[Child] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        infrastructure: bool = False,
    ) -> Child:
        log_file = self._logs / f"{name}.log"
        with GATE.hold(), log_file.open("ab") as log:
            process = subprocess.Popen(
                list(argv),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            child = Child(name, process, log_file, infrastructure, tuple(argv), dict(env))
            self.children.append(child)
        return child

    # fault injection (tests): kill one child, start it again as it was -----------------------

    def child(self, name: str) -> Child:
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(f"no child process named {name!r}")

    def kill(self, name: str, signum: int = signal.SIGKILL, grace_s: float = 10.0) -> Child:
        """Send ``signum`` to ``name``'s process group and wait until it exited (SIGKILL after
        ``grace_s``); the dead child stays in place until :meth:`respawn`."""
        child = self.child(name)
        signal_group(child.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=grace_s)
        signal_group(child.pid, signal.SIGKILL)  # and whatever it forked
        child.process.wait()
        return child

    def respawn(self, name: str) -> Child:
        """Start ``name`` again with its command line and environment, in its place (so the stop
        order stays); its log is appended to. A running child is killed first."""
        old = self.child(name)
        if old.running():
            self.kill(name)
        index = self.children.index(old)
        self.children.remove(old)
        new = self.start(name, old.argv, old.env, infrastructure=old.infrastructure)
        self.children.remove(new)
        self.children.insert(index, new)
        return new

    def first_exited(self) -> Child | None:
        return next((child for child in self.children if not child.running()), None)

    def stop_all(
        self, service_grace_s: float = 30.0, infrastructure_grace_s: float = 10.0
    ) -> list[str]:
        """Services first, then infrastructure; each group SIGTERM, then SIGKILL at its deadline.
        Returns the names of the children that had to be killed."""
        services = [c for c in self.children if not c.infrastructure]
        infrastructure = [c for c in self.children if c.infrastructure]
        killed = terminate(services, service_grace_s)
        return killed + terminate(list(reversed(infrastructure)), infrastructure_grace_s)


def terminate(children: Sequence[Child], grace_s: float) -> list[str]:
    for child in children:
        signal_group(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    killed = []
    for child in children:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed.append(child.name)
    for child in children:
        # the group too: a child's own children (workers, reloaders) must not outlive it
        signal_group(child.pid, signal.SIGKILL)
        child.process.wait()
    return killed


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
