"""Run a service: uvloop, settings, logging, telemetry, health probes and graceful shutdown.

A service's console script calls ``run("fleetpulse-x", Settings, main)``. ``main(context)`` gets the
validated settings, a ``shutdown`` event set on SIGTERM/SIGINT and a :class:`Health` registry; it
must stop taking new work once ``shutdown`` is set, finish what is in flight and return. If it has
not returned ``grace_s`` seconds after the signal it is cancelled; a second signal cancels at once.

Two helpers every service's loops share: :func:`sleep_until_stopped` (a pause that ends early at
shutdown) and :func:`run_loops` (a service's loops as one task group: the first to fail cancels
the others and fails the service, fast).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import uvloop

from fleetpulse.common.errors import ConfigurationError
from fleetpulse.common.health import Health, HealthServer
from fleetpulse.common.observability import (
    configure_logging,
    configure_telemetry,
    shutdown_telemetry,
)
from fleetpulse.common.settings import ServiceSettings, load_settings

S = TypeVar("S", bound=ServiceSettings)
log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


@dataclass(slots=True)
class ServiceContext(Generic[S]):
    name: str
    settings: S
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)
    health: Health = field(default_factory=Health)


async def sleep_until_stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile; True when stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def run_loops(loops: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run a service's loops under one :class:`asyncio.TaskGroup`: returns when all returned;
    the first that raises cancels the others and its error fails the service."""
    async with asyncio.TaskGroup() as group:
        for loop in loops:
            group.create_task(loop)


def run(
    name: str,
    settings_cls: type[S],
    main: Callable[[ServiceContext[S]], Coroutine[Any, Any, None]],
    *,
    grace_s: float = 25.0,
) -> None:
    """Run ``main`` to completion on uvloop and exit the process with its status."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        code = runner.run(serve(name, settings_cls, main, grace_s=grace_s))
    sys.exit(code)


async def serve(
    name: str,
    settings_cls: type[S],
    main: Callable[[ServiceContext[S]], Coroutine[Any, Any, None]],
    *,
    grace_s: float = 25.0,
) -> int:
    try:
        settings = await load_settings(settings_cls)
    except ConfigurationError as exc:
        return _configuration_failed(name, exc)
    configure_logging(name, settings.log_level)
    configure_telemetry(name, settings.otlp_endpoint, settings.traces_file)
    context = ServiceContext(name=name, settings=settings)
    try:
        return await _supervise(context, main, grace_s)
    finally:
        shutdown_telemetry()


def _configuration_failed(name: str, exc: ConfigurationError) -> int:
    print(f"{name}: configuration error: {exc}", file=sys.stderr, flush=True)
    return EXIT_CONFIG


async def _supervise(
    context: ServiceContext[S],
    main: Callable[[ServiceContext[S]], Coroutine[Any, Any, None]],
    grace_s: float,
) -> int:
    task = asyncio.create_task(main(context), name=f"{context.name}-main")
    _install_signal_handlers(context, task)
    server = await _start_health(context)
    log.info("service started", extra={"health_port": context.settings.health_port})
    try:
        await _wait_with_deadline(context, task, grace_s)
        return _outcome(context, task)
    finally:
        if server is not None:
            await server.stop()


async def _start_health(context: ServiceContext[S]) -> HealthServer | None:
    if context.settings.health_port == 0:
        return None
    server = HealthServer(context.health, port=context.settings.health_port)
    await server.start()
    return server


def _install_signal_handlers(context: ServiceContext[S], task: asyncio.Task[None]) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if context.shutdown.is_set():
            log.warning("second signal: cancelling now", extra={"signal": signum})
            task.cancel()
            return
        log.info("shutdown requested", extra={"signal": signum})
        context.shutdown.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


async def _wait_with_deadline(
    context: ServiceContext[S], task: asyncio.Task[None], grace_s: float
) -> None:
    stop = asyncio.ensure_future(context.shutdown.wait())
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if task.done():
        return
    _, pending = await asyncio.wait({task}, timeout=grace_s)
    if pending:
        log.error("shutdown deadline passed: cancelling in-flight work", extra={"grace_s": grace_s})
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _outcome(context: ServiceContext[S], task: asyncio.Task[None]) -> int:
    if task.cancelled():
        return EXIT_OK if context.shutdown.is_set() else EXIT_FAILED
    exc = _sole(task.exception())
    if exc is None:
        log.info("service stopped")
        return EXIT_OK
    if isinstance(exc, ConfigurationError):
        return _configuration_failed(context.name, exc)
    log.error("service failed", exc_info=exc)
    return EXIT_FAILED


def _sole(exc: BaseException | None) -> BaseException | None:
    """The one error inside the (nested) groups a task group raises, else ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
