"""Serve one port from several processes (SO_REUSEPORT), and uvloop when it is installed.

A grpclib server is one asyncio loop on one core. ``serve_workers(make_services, host, port,
workers)`` starts ``workers`` processes; each builds its own services with ``make_services()``
and its own server (ventros_server.server.build_server), and listens on the same host:port
with SO_REUSEPORT, so the kernel spreads incoming *connections* over the processes. A single
HTTP/2 connection (one client channel) stays on one process: the gain needs several client
connections.

Constraints that follow:

* ``make_services`` is called in each worker, started with the "spawn" method: pass a
  module-level function (picklable), not a lambda or a closure.
* Every worker has its own state. The agent service holds nothing shared and scales this way.
  The memory service does not, as is: a DuckDB file can be opened read-write by one process
  only, so several workers cannot share one writable store. Options: run the memory service in
  one process (workers=1), or give workers read-only replicas (``duckdb.connect(path,
  read_only=True)``; StoreMemory must then go to a single writer), or ``:memory:`` stores that
  each worker fills from the same data set (demo/benchmark use only: writes are not shared).
* Health is per process: a health check reaches whichever worker the kernel picked.

``uvloop`` is used when it is installed (``use_uvloop=None``), else asyncio's default loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

from .server import listen_socket

log = logging.getLogger("ventros.multiproc")

ServicesFactory = Callable[[], list[Any]]


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(main: Coroutine[Any, Any, Any], *, use_uvloop: bool | None = None) -> Any:
    """asyncio.run(main), on uvloop when ``use_uvloop`` is True, or None and uvloop is installed."""
    if use_uvloop is None:
        use_uvloop = uvloop_available()
    if use_uvloop:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    return asyncio.run(main)


def reuse_port_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT (listening unless ``listen=False``)."""
    if listen:
        return listen_socket(host, port, reuse_port=True)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), port))
    except BaseException:
        sock.close()
        raise
    return sock


async def serve_one(
    make_services: ServicesFactory,
    host: str,
    port: int,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[], Any] | None = None,
    coalesce: bool = True,
) -> None:
    """One worker: build the services and a server, listen with SO_REUSEPORT, serve until
    SIGTERM/SIGINT (or ``stop``), then close gracefully. ``coalesce``: build_server's
    ``coalesce_writes``."""
    from .server import build_server

    server, statuses = build_server(make_services(), coalesce_writes=coalesce)
    sock = reuse_port_socket(host, port)
    await server.start(sock=sock)
    for status in statuses.values():
        status.set(True)
    if on_ready is not None:
        on_ready()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for status in statuses.values():
            status.set(False)
        server.close()
        await server.wait_closed()


def _worker_main(
    make_services: ServicesFactory, host: str, port: int, use_uvloop: bool | None, coalesce: bool, ready: Any
) -> None:
    run(
        serve_one(make_services, host, port, on_ready=ready.release, coalesce=coalesce), use_uvloop=use_uvloop
    )


class WorkerGroup:
    """Worker processes sharing one port; ``stop()`` ends them (SIGTERM, then SIGKILL)."""

    def __init__(self, processes: list[Any], host: str, port: int, reservation: socket.socket) -> None:
        self.processes = processes
        self.host = host
        self.port = port
        self._reservation = reservation

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def alive(self) -> bool:
        return all(p.is_alive() for p in self.processes)

    def stop(self, timeout: float = 10.0) -> None:
        for p in self.processes:
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGTERM)
        for p in self.processes:
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join(1)
        self._reservation.close()

    def wait(self) -> None:
        for p in self.processes:
            p.join()

    def __enter__(self) -> WorkerGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_workers(
    make_services: ServicesFactory,
    host: str = "127.0.0.1",
    port: int = 0,
    workers: int | None = None,
    *,
    use_uvloop: bool | None = None,
    coalesce: bool = True,
    ready_timeout: float = 30.0,
) -> WorkerGroup:
    """Start ``workers`` serving processes (default: one per CPU) and return once all listen.

    Port 0 picks a free port: this process binds it (SO_REUSEPORT, not listening, so it gets no
    connections) to hold it for the workers until ``stop()``.
    """
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    reservation = reuse_port_socket(host, port, listen=False)
    port = reservation.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    processes = []
    readies = []
    try:
        for i in range(workers):
            ready = ctx.Semaphore(0)
            p = ctx.Process(
                target=_worker_main,
                args=(make_services, host, port, use_uvloop, coalesce, ready),
                name=f"ventros-worker-{i}",
                daemon=True,
            )
            p.start()
            processes.append(p)
            readies.append(ready)
        for p, ready in zip(processes, readies, strict=True):
            if not ready.acquire(timeout=ready_timeout):
                raise RuntimeError(f"worker {p.name} did not start listening within {ready_timeout}s")
    except BaseException:
        WorkerGroup(processes, host, port, reservation).stop(timeout=2)
        raise
    return WorkerGroup(processes, host, port, reservation)


def serve_workers(
    make_services: ServicesFactory,
    host: str = "127.0.0.1",
    port: int = 50051,
    workers: int | None = None,
    *,
    use_uvloop: bool | None = None,
    coalesce: bool = True,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM with ``workers`` processes on host:port (what a CLI calls)."""
    group = start_workers(make_services, host, port, workers, use_uvloop=use_uvloop, coalesce=coalesce)
    (announce or log.info)(f"{len(group.processes)} workers listening on {group.address}")
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping:
            if not group.alive():
                log.error("a worker exited unexpectedly; stopping the others")
                break
            time.sleep(0.2)
    finally:
        group.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
