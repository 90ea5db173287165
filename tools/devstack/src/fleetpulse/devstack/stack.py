"""Bring the stack up in order, report it, keep it running, bring it down."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Collection, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from fleetpulse.devstack.broker import (
    DELIVERY_ACLS,
    DELIVERY_USER,
    INGEST_ACLS,
    INGEST_USER,
    BrokerFiles,
    dynsec_control,
    user_commands,
)
from fleetpulse.devstack.database import (
    database_url,
    drop_database,
    ensure_database,
    run_migrations,
)
from fleetpulse.devstack.layout import SERVICE_NAMES, DevDir, Ports, StackState, listening
from fleetpulse.devstack.secrets import DevSecrets, write_private
from fleetpulse.devstack.services import (
    SERVICES,
    ServiceSpec,
    StackConfig,
    render_env_file,
    service_env,
    shared_env,
)
from fleetpulse.devstack.supervisor import Child, Supervisor

Say = Callable[[str], None]


class StackError(RuntimeError):
    """The stack could not start; the message names the part that failed."""


def executable(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        raise StackError(f"{name} not found: run `uv sync` first")
    return found


def base_env() -> dict[str, str]:
    """The caller's environment without FLEETPULSE_* leftovers (say, a sourced old .dev/env)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FLEETPULSE_")}


class DevStack:
    def __init__(
        self,
        config: StackConfig,
        dev: DevDir,
        say: Say,
        *,
        reset_broker: bool = False,
        services: Collection[str] = SERVICE_NAMES,
        console_dist: Path | None = None,
    ) -> None:
        self.config = config
        self.console_dist = console_dist
        #: Lifetime of the access tokens of browser logins (the console refreshes before expiry).
        self.oidc_token_lifetime_s = 300
        self.console_running = False
        self.dev = dev
        self.say = say
        self.reset_broker = reset_broker
        self.services = [spec for spec in SERVICES if spec.name in services]
        self.supervisor = Supervisor(dev.logs)
        self.skipped: list[str] = []

    # start ---------------------------------------------------------------------------------

    def start(self, server_url: str, database: str, ready_timeout: float) -> None:
        self._check_ports_free()
        self._prepare_database(server_url, database)
        self._start_broker()
        self._start_moto()
        self._start_oidc()
        write_private(self.dev.env_file, render_env_file(shared_env(self.config)))
        started = [self._start_service(spec) for spec in self.services]
        for spec, child in zip(self.services, started, strict=True):
            if child is not None:
                self._wait_http(child, self.config.ports.health[spec.name], ready_timeout)
            if child is not None and spec.name == "provision-api":
                self._wait_port(child, self.config.ports.api, ready_timeout)
        self._start_console()
        self._write_state()

    def _check_ports_free(self) -> None:
        busy = [port for port in self.config.ports.all() if listening(port)]
        if busy:
            raise StackError(
                f"ports already in use: {busy} (another `make dev`? try `fleetpulse-dev --stop`)"
            )

    def _prepare_database(self, server_url: str, database: str) -> None:
        if asyncio.run(ensure_database(server_url, database)):
            self.say(f"created database {database}")
        env = {**base_env(), "FLEETPULSE_DATABASE_URL": self.config.database_url}
        try:
            self.say(run_migrations(executable("fleetpulse-migrate"), env))
        except RuntimeError as exc:
            raise StackError(str(exc)) from None

    def _start_broker(self) -> None:
        files = BrokerFiles(self.dev.mosquitto)
        secrets = self.config.secrets
        argv = files.prepare(
            self.config.ports.mqtt, secrets.mqtt_admin_password, reset=self.reset_broker
        )
        child = self.supervisor.start("mosquitto", argv, base_env(), infrastructure=True)
        self._wait_port(child, self.config.ports.mqtt, 15)
        commands = user_commands(INGEST_USER, secrets.mqtt_ingest_password, INGEST_ACLS)
        commands += user_commands(DELIVERY_USER, secrets.mqtt_delivery_password, DELIVERY_ACLS)
        dynsec_control(
            self.config.host, self.config.ports.mqtt, secrets.mqtt_admin_password, commands
        )

    def _start_moto(self) -> None:
        argv = [sys.executable, "-m", "moto.server", "-H", self.config.host]
        argv += ["-p", str(self.config.ports.moto)]
        env = {**base_env(), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        child = self.supervisor.start("moto", argv, env, infrastructure=True)
        self._wait_port(child, self.config.ports.moto, 60)

    def _start_oidc(self) -> None:
        argv = [executable("fleetpulse-dev-oidc"), "--host", self.config.host]
        argv += ["--port", str(self.config.ports.oidc), "--key", str(self.dev.oidc_key)]
        argv += ["--issuer", self.config.issuer]
        argv += ["--token-lifetime", str(self.oidc_token_lifetime_s)]
        child = self.supervisor.start("oidc", argv, base_env(), infrastructure=True)
        self._wait_http(child, self.config.ports.oidc, 15)

    def _start_console(self) -> None:
        dist = self.console_dist
        if dist is None or not (dist / "index.html").is_file():
            self.say(f"WARNING: console not built ({dist}/index.html missing): `make console`")
            return
        argv = [sys.executable, "-m", "fleetpulse.devstack.console", "--dist", str(dist)]
        argv += ["--host", self.config.host, "--port", str(self.config.ports.console)]
        argv += ["--issuer", self.config.issuer, "--api-url", self.config.api_url]
        child = self.supervisor.start("console", argv, base_env(), infrastructure=True)
        self._wait_port(child, self.config.ports.console, 15)
        self.console_running = True

    def _start_service(self, spec: ServiceSpec) -> Child | None:
        script = spec.executable()
        if script is None:
            self.skipped.append(spec.script)
            self.say(f"WARNING: skipping {spec.script}: {spec.module} is not there yet")
            return None
        env = {**base_env(), **service_env(self.config, spec)}
        return self.supervisor.start(spec.script, [script], env)

    # readiness -----------------------------------------------------------------------------

    def _wait_port(self, child: Child, port: int, timeout: float) -> None:
        self._wait(child, lambda: listening(port, self.config.host), timeout, f"port {port}")

    def _wait_http(self, child: Child, port: int, timeout: float) -> None:
        url = f"http://{self.config.host}:{port}/healthz"
        self._wait(child, lambda: healthy(url), timeout, url)

    def _wait(self, child: Child, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not child.running():
                raise StackError(
                    f"{child.name} exited with {child.process.returncode} before it was ready;"
                    f" {child.log_file}:\n{child.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise StackError(f"{child.name}: {what} not ready after {timeout:.0f}s")
            time.sleep(0.1)
        self.say(f"{child.name} ready on {what} (pid {child.pid})")

    # fault injection (tests) -------------------------------------------------------------------

    def process_name(self, name: str) -> str:
        """A child's name from a service name (``ingest``) or a child name (``mosquitto``)."""
        return f"fleetpulse-{name}" if name in SERVICE_NAMES else name

    def kill(self, name: str, signum: int = signal.SIGKILL) -> Child:
        """Signal one process (``ingest``, ``mosquitto``, ``moto``, ...) and wait until it exited."""
        return self.supervisor.kill(self.process_name(name), signum)

    def respawn(self, name: str, ready_timeout: float = 60.0) -> Child:
        """Start a killed process again, as it was started, and wait until it is ready."""
        child = self.supervisor.respawn(self.process_name(name))
        if name in SERVICE_NAMES:
            self._wait_http(child, self.config.ports.health[name], ready_timeout)
            if name == "provision-api":
                self._wait_port(child, self.config.ports.api, ready_timeout)
        elif name == "mosquitto":
            self._wait_port(child, self.config.ports.mqtt, ready_timeout)
        elif name == "moto":
            self._wait_port(child, self.config.ports.moto, ready_timeout)
        elif name == "oidc":
            self._wait_http(child, self.config.ports.oidc, ready_timeout)
        elif name == "console":
            self._wait_port(child, self.config.ports.console, ready_timeout)
        self._write_state()
        return child

    def restart(
        self, name: str, signum: int = signal.SIGKILL, ready_timeout: float = 60.0
    ) -> Child:
        """:meth:`kill` then :meth:`respawn`: SIGKILL a service mid-flow, SIGTERM the broker."""
        self.kill(name, signum)
        return self.respawn(name, ready_timeout)

    def _write_state(self) -> None:
        StackState(
            supervisor_pid=os.getpid(),
            ports=self.config.ports.all(),
            pids={child.name: child.pid for child in self.supervisor.children},
            api_url=self.config.api_url,
        ).write(self.dev.state_file)

    # run and stop ----------------------------------------------------------------------------

    def banner(self) -> str:
        ports = self.config.ports
        lines = [
            "",
            "FleetPulse dev stack is up:",
            f"  console      {self.config.console_url}"
            + ("" if self.console_running else "  (NOT RUNNING: `make console` builds it)"),
            f"  API          {self.config.api_url}  (docs {self.config.api_url}/docs)",
            f"  OIDC issuer  {self.config.issuer}",
            f"  MQTT         mqtt://{self.config.host}:{ports.mqtt}  (dynamic security)",
            f"  AWS (moto)   {self.config.moto_url}",
            f"  database     {self.config.database_url}",
            f"  health       {', '.join(f'{n}:{p}' for n, p in ports.health.items())}",
            f"  settings     . {self.dev.env_file}",
            f"  logs         {self.dev.logs}/",
            "  token        uv run fleetpulse-dev-token --tenant acme --roles tenant-admin",
        ]
        if self.skipped:
            lines.append(f"  NOT RUNNING  {', '.join(self.skipped)} (package not there yet)")
        lines.append("Ctrl-C stops everything.")
        return "\n".join(lines)

    def watch(self, interval: float = 0.5) -> Child:
        """Block until a child exits (a signal interrupts this by raising); returns that child."""
        while True:
            exited = self.supervisor.first_exited()
            if exited is not None:
                return exited
            time.sleep(interval)

    def stop(self) -> None:
        killed = self.supervisor.stop_all()
        if killed:
            self.say(f"WARNING: killed after the SIGTERM deadline: {', '.join(killed)}")
        self.dev.state_file.unlink(missing_ok=True)


@contextmanager
def private_stack(
    server_url: str,
    database: str,
    root: Path,
    say: Say,
    *,
    before_start: Callable[[DevStack], None] | None = None,
    ready_timeout: float = 90.0,
    traces_file: Path | None = None,
    console_dist: Path | None = None,
) -> Iterator[DevStack]:
    """A throwaway stack for tests and benchmarks: ``root/.dev``, free ports, its own database
    ``database``, every service running; on exit it is stopped and the database dropped."""
    dev = DevDir(root / ".dev")
    dev.create()
    config = StackConfig(
        dev_dir=dev.root,
        database_url=database_url(server_url, database),
        ports=Ports.free(),
        secrets=DevSecrets.load_or_create(dev.secrets_file),
        traces_file=traces_file,
    )
    stack = DevStack(config, dev, say, console_dist=console_dist)
    with ExitStack() as cleanup:  # each runs, in reverse order, even if one fails
        cleanup.callback(lambda: asyncio.run(drop_database(server_url, database)))
        cleanup.callback(stack.stop)
        if before_start is not None:
            before_start(stack)
        stack.start(server_url, database, ready_timeout)
        if stack.skipped:
            raise StackError(f"not every service runs: {', '.join(stack.skipped)}")
        yield stack


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - loopback http
            return bool(response.status == 200)
    except OSError:
        return False
