"""``fleetpulse-dev``: run the dev stack in the foreground, detached, or stop a detached one.

- ``fleetpulse-dev`` (``make dev``): start everything, print the URLs, run until Ctrl-C
  (SIGINT/SIGTERM), then stop every process it started.
- ``fleetpulse-dev --detach``: the same in the background; returns once every service answers
  ``/healthz`` (exit 1 with the log tail if the stack did not come up). Its log is
  ``.dev/logs/devstack.log``; ``.dev/devstack.pid`` holds the supervisor's pid.
- ``fleetpulse-dev --stop``: SIGTERM the detached supervisor and wait until everything is down.
- ``fleetpulse-dev --status``: is a stack running, and on which ports.

``--free-ports`` and ``--database`` give a second stack that never collides with a developer's
``make dev`` (the end-to-end test uses them with its own ``FLEETPULSE_DEV_DIR``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fleetpulse.dev_oidc.config import dev_dir
from fleetpulse.devstack.database import database_url
from fleetpulse.devstack.layout import SERVICE_NAMES, DevDir, Ports, StackState, listening
from fleetpulse.devstack.secrets import DevSecrets
from fleetpulse.devstack.services import StackConfig
from fleetpulse.devstack.stack import DevStack, StackError
from fleetpulse.devstack.supervisor import GATE, StopRequested, process_alive, signal_group

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
EXIT_FAILED = 1
EXIT_USAGE = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fleetpulse-dev", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--detach", action="store_true", help="run in the background")
    mode.add_argument("--stop", action="store_true", help="stop a detached stack")
    mode.add_argument("--status", action="store_true", help="is a stack running")
    parser.add_argument("--dev-dir", type=Path, help="state directory (FLEETPULSE_DEV_DIR, .dev)")
    parser.add_argument("--database", default="fleetpulse_dev", help="database (fleetpulse_dev)")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("FLEETPULSE_DEV_POSTGRES", DEFAULT_SERVER),
        help="URL of the PostgreSQL server to create the database on (FLEETPULSE_DEV_POSTGRES)",
    )
    parser.add_argument("--free-ports", action="store_true", help="pick every port free")
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--mqtt-port", type=int, default=1884)
    parser.add_argument("--oidc-port", type=int, default=8081)
    parser.add_argument("--moto-port", type=int, default=5000)
    parser.add_argument(
        "--services",
        default=",".join(SERVICE_NAMES),
        help="comma-separated services to run (default all; '' for infrastructure only)",
    )
    parser.add_argument(
        "--console-dist",
        type=Path,
        default=Path("console/dist"),
        help="the built console to serve (console/dist; `make console` builds it)",
    )
    parser.add_argument("--console-port", type=int, default=5173)
    parser.add_argument("--reset-broker", action="store_true", help="new dynsec file and sessions")
    parser.add_argument(
        "--traces-file",
        type=Path,
        help="every service appends its finished spans to this file, one JSON object a line",
    )
    parser.add_argument("--ready-timeout", type=float, default=90.0, help="seconds per service")
    return parser.parse_args(argv)


def ports_from(args: argparse.Namespace) -> Ports:
    if args.free_ports:
        return Ports.free()
    return Ports(
        api=args.api_port,
        oidc=args.oidc_port,
        mqtt=args.mqtt_port,
        moto=args.moto_port,
        console=args.console_port,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    dev = DevDir((args.dev_dir or dev_dir()).resolve())
    if args.stop:
        sys.exit(stop_detached(dev))
    if args.status:
        sys.exit(status(dev))
    if args.detach:
        sys.exit(detach(dev, argv if argv is not None else sys.argv[1:]))
    sys.exit(run_foreground(args, dev))


# foreground -------------------------------------------------------------------------------------


def run_foreground(args: argparse.Namespace, dev: DevDir) -> int:
    dev.create()
    if (running := running_pid(dev)) is not None:
        print(f"fleetpulse-dev: a stack is already running (pid {running}); --stop it first")
        return EXIT_FAILED
    dev.pid_file.write_text(str(os.getpid()))
    try:
        return _run(args, dev)
    finally:
        dev.pid_file.unlink(missing_ok=True)


def _run(args: argparse.Namespace, dev: DevDir) -> int:
    config = StackConfig(
        dev_dir=dev.root,
        database_url=database_url(args.postgres, args.database),
        ports=ports_from(args),
        secrets=DevSecrets.load_or_create(dev.secrets_file),
        traces_file=args.traces_file.resolve() if args.traces_file else None,
    )
    wanted = {name.strip() for name in args.services.split(",") if name.strip()}
    if unknown := wanted - set(SERVICE_NAMES):
        say(f"ERROR: unknown services {sorted(unknown)}; choose from {', '.join(SERVICE_NAMES)}")
        return EXIT_USAGE
    stack = DevStack(
        config,
        dev,
        say,
        reset_broker=args.reset_broker,
        services=wanted,
        console_dist=args.console_dist.resolve(),
    )
    GATE.install()
    try:
        stack.start(args.postgres, args.database, args.ready_timeout)
        say(stack.banner())
        exited = stack.watch()
        say(
            f"{exited.name} exited ({exited.process.returncode}); stopping the stack\n"
            f"{exited.log_tail()}"
        )
        return EXIT_FAILED
    except StopRequested as stop:
        say(f"{stop}: stopping the stack")
        return 0
    except StackError as exc:
        say(f"ERROR: {exc}")
        return EXIT_FAILED
    finally:
        GATE.ignore()
        stack.stop()
        say("stopped")


def say(message: str) -> None:
    print(f"fleetpulse-dev: {message}" if "\n" not in message else message, flush=True)


# detached ---------------------------------------------------------------------------------------


def detach(dev: DevDir, argv: list[str], timeout: float = 600.0) -> int:
    dev.create()
    dev.state_file.unlink(missing_ok=True)
    forwarded = [a for a in argv if a != "--detach"] + ["--dev-dir", str(dev.root)]
    log_path = dev.logs / "devstack.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fleetpulse.devstack.cli", *forwarded],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while StackState.read(dev.state_file) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            print(log_path.read_text(errors="replace"), end="")
            return EXIT_FAILED
        time.sleep(0.2)
    print(log_path.read_text(errors="replace"), end="")
    print(f"fleetpulse-dev: detached (pid {process.pid}); stop it with: fleetpulse-dev --stop")
    return 0


def running_pid(dev: DevDir) -> int | None:
    try:
        pid = int(dev.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if process_alive(pid) else None


def stop_detached(dev: DevDir, timeout: float = 60.0) -> int:
    pid = running_pid(dev)
    state = StackState.read(dev.state_file)
    if pid is None:
        print("fleetpulse-dev: no stack running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if process_alive(pid) and state is not None:
        # the supervisor is stuck: kill what it started, then the supervisor itself
        for child_pid in state.pids.values():
            signal_group(child_pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    print(f"fleetpulse-dev: stopped (pid {pid})")
    return 0


def status(dev: DevDir) -> int:
    pid = running_pid(dev)
    state = StackState.read(dev.state_file)
    if pid is None or state is None:
        print("fleetpulse-dev: not running")
        return 1
    listening_ports = [port for port in state.ports if listening(port)]
    print(f"fleetpulse-dev: running (pid {pid}), API {state.api_url}, listening {listening_ports}")
    return 0


if __name__ == "__main__":
    main()
