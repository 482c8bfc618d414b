"""Serve one port from several processes (SO_REUSEPORT), and uvloop when it is installed.

A grpclib server is one asyncio loop on one core. ``start_workers(make_services, host, port,
workers)`` starts ``workers`` processes; each builds its own services with ``make_services()``
and its own server (ventros_server.server.build_server), and listens on the same host:port
with SO_REUSEPORT, so the kernel spreads incoming *connections* over the processes. A single
HTTP/2 connection (one client channel) stays on one process: the gain needs several client
connections.

Constraints that follow:

* ``make_services`` is called in each worker, started with the "spawn" method: pass a
  module-level function (picklable), not a lambda or a closure.
* Every worker has its own state. The agent service holds nothing shared and scales this way.
  The memory service cannot simply be copied: a DuckDB file is writable by one process only.
  The options were: the memory service in one process (workers=1); read-only replicas
  (``duckdb.connect(path, read_only=True)``, with StoreMemory sent to a single writer, and
  writes visible to the other workers only after they reopen); ``:memory:`` stores each worker
  fills from the same data set (writes not shared: demo use only); or ONE process that owns
  the store and workers that forward each store call to it. The last is what
  ``serve_app_workers`` does (``ventros_server.memory.remote``): workers do HTTP/2, the codec,
  validation and API keys, the owner runs the store calls (~20 us per IPC round trip; a
  KEYWORD_ONLY search costs ~0.25 ms in-process and ~0.5 ms forwarded, pickling included), so
  read-your-writes holds across workers and status codes are those of one process. The owner
  also serves gRPC itself with the store in-process, so a lone client pays no hop (below).
  ``start_workers`` (tests, benchmarks) leaves the choice to ``make_services``.
* Health is per process: a health check reaches whichever worker the kernel picked.

``ventros serve --workers N`` uses ``serve_app_workers``: each worker is a whole
``ventros_server.app`` server (keys, TLS, rate limit, graceful drain) for the agent service,
the memory service or both; with the memory service one more process owns the store, opened
and loaded before the workers start and closed after they have drained. That owner also serves
the memory port with the store in-process, and alone listens on it: it keeps a lone connection
(no hop to the store: one call at a time is as fast as one process) and hands further
connections to the workers (``ventros_server.handoff``); the agent port is shared with
SO_REUSEPORT by the workers.

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
    handoff: str | None = None,
) -> None:
    """One worker: build the services and a server, listen with SO_REUSEPORT, serve until
    SIGTERM/SIGINT (or ``stop``), then close gracefully. ``coalesce``: build_server's
    ``coalesce_writes``. ``handoff``: also serve the connections a steering process passes
    over this Unix socket (ventros_server.handoff; the benchmark's memory port)."""
    from .server import build_server, tune_gc

    server, statuses = build_server(make_services(), coalesce_writes=coalesce)
    await server.start(sock=reuse_port_socket(host, port))
    handed = None
    if handoff is not None:  # a second source of connections, for the same services
        from .handoff import HandedOff

        handed = HandedOff(handoff, server._protocol_factory)
    tune_gc()
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
        if handed is not None:
            handed.close()
        server.close()
        await server.wait_closed()


def _worker_main(
    make_services: ServicesFactory,
    host: str,
    port: int,
    use_uvloop: bool | None,
    coalesce: bool,
    ready: Any,
    handoff: str | None = None,
) -> None:
    serve = serve_one(make_services, host, port, on_ready=ready.release, coalesce=coalesce, handoff=handoff)
    run(serve, use_uvloop=use_uvloop)


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
    handoff: str | None = None,
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
                args=(make_services, host, port, use_uvloop, coalesce, ready, handoff),
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


# -- `ventros serve --workers N`: whole app servers (auth, TLS, limits, drain) per worker --


def _app_worker_main(config: Any, log_level: int, ready: Any) -> None:
    """One worker: ventros_server.app.run on the shared port(s) (SO_REUSEPORT)."""
    # Own process group: a terminal's Ctrl-C reaches the parent only, which forwards one
    # SIGTERM; a worker that also got SIGINT would count it as a second signal and skip the grace.
    os.setpgrp()
    _configure_logging(log_level)
    from .app import run as run_app

    _stop_with_parent()
    run(run_app(config, announce=log.debug, ready=lambda app: ready.release()), use_uvloop=False)


def _configure_logging(log_level: int) -> None:
    logging.basicConfig(
        level=log_level or logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s[%(process)d]: %(message)s",
        datefmt="%H:%M:%S",
    )
    if log_level > logging.DEBUG:
        for noisy in ("grpclib", "asyncio", "hpack", "h2"):
            logging.getLogger(noisy).setLevel(max(log_level, logging.WARNING))
    logging.getLogger("hpack").setLevel(max(log_level, logging.INFO))  # it logs header values (keys)


def _stop_with_parent(interval: float = 0.5) -> None:
    """SIGTERM ourselves (a graceful drain) once the parent is gone: a parent killed with SIGKILL
    cannot stop its workers, which would otherwise keep the ports for ever (seen: a test runner's
    timeout killed `ventros serve --workers 2`)."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        log.warning("the parent process %d is gone: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _wait_ready(
    processes: list[Any], readies: list[Any], timeout: float, stopping: Callable[[], bool]
) -> None:
    deadline = time.monotonic() + timeout
    for p, ready in zip(processes, readies, strict=True):
        while not ready.acquire(timeout=0.1):
            if stopping():
                return
            if not p.is_alive():
                raise RuntimeError(
                    f"{p.name} exited during start-up (exit code {p.exitcode}); see its log above"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{p.name} did not start listening within {timeout}s")


def serve_app_workers(
    config: Any,
    workers: int,
    *,
    announce: Callable[[str], None],
    log_level: int = logging.INFO,
    ready_timeout: float = 60.0,
) -> None:
    """The services of ``config`` (a ServeConfig: agent, memory or both) in ``workers``
    processes sharing its ports, until SIGINT/SIGTERM (what ``ventros serve --workers N`` runs).

    Each worker is a whole ``ventros_server.app`` server, so API keys, TLS, the rate limit (per
    worker) and the graceful drain behave as with one process. When the memory service runs, one
    more process owns the DuckDB store (``memory.remote``): it opens and loads it before the
    workers start, every worker forwards its store calls to it, and it serves the memory port
    itself, handing connections beyond its share to the workers (``start_owner_process``). A
    first signal is forwarded to every process as SIGTERM (each drains for ``config.grace``), a
    second one ends the grace; once the workers are gone the owner closes the store. Raises
    ConfigurationError for
    a bad config (before any process starts) and RuntimeError when a process fails to start or
    dies (the others are then stopped).
    """
    config.validate()
    host = config.host.strip("[]") or "0.0.0.0"
    reservations = {
        name: reuse_port_socket(host, _port(config, name), listen=False) for name in config.services
    }
    ports = {name: sock.getsockname()[1] for name, sock in reservations.items()}
    processes: list[Any] = []
    store: Any = None
    signals = 0

    owners: list[Any] = []  # the owner drains its gRPC calls with the workers

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal signals
        signals += 1
        for p in [*processes, *owners]:
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    failure: str | None = None
    try:
        internal_key = _internal_key(config)
        if "memory" in ports:
            store = start_owner_process(config, ports["memory"], internal_key, stopping=lambda: signals > 0)
            owners.append(store.process)
        worker_config = _worker_config(config, ports, store, internal_key)
        _start_app_workers(processes, worker_config, workers, log_level, ready_timeout, lambda: signals > 0)
        if not signals:
            _announce_workers(config, ports, processes, store, announce)
        while not signals and all(p.is_alive() for p in processes) and (store is None or store.alive()):
            time.sleep(0.2)
        if not signals:
            failure = (
                "the memory store process exited unexpectedly; the workers were stopped"
                if store is not None and not store.alive()
                else "a worker exited unexpectedly; the others were stopped"
            )
    except RuntimeError as exc:
        failure = None if signals else str(exc)
    finally:
        if processes:
            announce("shutting down: health is NOT_SERVING, no new calls accepted")
        if not signals:
            on_signal(signal.SIGTERM, None)
        for p in processes:
            p.join(config.grace + 15)
            if p.is_alive():
                p.kill()
                p.join(5)
        if store is not None:  # last: the workers' running calls needed it
            store.process.join(config.grace + 15)  # it drains, then waits for the workers to leave
            code = store.stop()
            if code not in (0, None) and failure is None:
                failure = f"the memory store process exited with code {code}"
        for sock in reservations.values():
            sock.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    announce("stopped")
    if failure is not None:
        raise RuntimeError(failure)


def _port(config: Any, name: str) -> int:
    return int(config.agent_port if name == "agent" else config.memory_port)


def _internal_key(config: Any) -> str | None:
    """One key for the agent -> memory calls of every worker (any process may answer them)."""
    import secrets

    return secrets.token_urlsafe(32) if config.only is None and not config.memory_addr else None


def _worker_config(config: Any, ports: dict[str, int], store: Any, internal_key: str | None) -> Any:
    """The config each worker runs: the reserved ports, SO_REUSEPORT, the store owner's sockets
    (store calls, and the memory connections it hands over) and the internal key."""
    import dataclasses

    changes: dict[str, Any] = {"reuse_port": True, "internal_key": internal_key}
    if "agent" in ports:
        changes["agent_port"] = ports["agent"]
    if "memory" in ports:
        changes["memory_port"] = ports["memory"]
        changes["store_address"] = store.address
        changes["store_authkey"] = store.authkey
        changes["memory_handoff"] = _steering_path(store.directory)
        changes["memory_internal"] = _internal_path(store.directory)
    return dataclasses.replace(config, **changes)


def _steering_path(directory: str) -> str:
    return os.path.join(directory, "connections.sock")


def _internal_path(directory: str) -> str:
    return os.path.join(directory, "agents.sock")


# -- the store owner: the memory service with its store in-process, steering connections --


def start_owner_process(
    config: Any,
    port: int,
    internal_key: str | None,
    *,
    stopping: Callable[[], bool],
    ready_timeout: float = 3600,
) -> Any:
    """The memory store's owner: a process that opens and loads the store, serves it to the
    workers (memory.remote) and serves the memory port itself with the store in-process. It alone
    listens on that port, keeps a lone connection and hands others to the workers
    (ventros_server.handoff). Returns a memory.remote.StoreProcess once it serves."""
    import dataclasses

    from .app import open_memory_store
    from .memory.remote import start_store_process

    owner = dataclasses.replace(
        config, only="memory", memory_port=port, reuse_port=True, internal_key=internal_key
    )
    return start_store_process(
        open_memory_store, owner, ready_timeout=ready_timeout, stopping=stopping, main=_owner_main
    )


def _owner_main(
    opener: Callable[..., Any], args: tuple[Any, ...], address: str, authkey: bytes, ready: Any, level: int
) -> None:
    """The owner process (memory.remote's process entry point, see start_owner_process)."""
    os.setpgrp()  # as a worker: the parent forwards one SIGTERM
    _configure_logging(level)
    _stop_with_parent()
    run(_serve_owner(opener, args, address, authkey, ready), use_uvloop=False)


async def _serve_owner(
    opener: Callable[..., Any], args: tuple[Any, ...], address: str, authkey: bytes, ready: Any
) -> None:
    import dataclasses

    from .app import run as run_app
    from .memory import MemoryService
    from .memory.remote import LoopStoreServer

    store = await asyncio.to_thread(opener, *args)
    directory = os.path.dirname(address)
    config = dataclasses.replace(
        args[0], memory_steering=_steering_path(directory), memory_internal=_internal_path(directory)
    )
    try:
        store_server = LoopStoreServer(store, address, authkey).start()
        try:
            await run_app(
                config,
                services={"memory": lambda app: MemoryService(store)},
                announce=log.debug,
                ready=lambda app: ready.release(),
            )
            # Drained: the workers may still be finishing calls that need the store.
            await _until_clients_leave(store_server, config.grace + 15)
        finally:
            store_server.close()
    finally:
        store.close()
        log.info("memory store closed")


async def _until_clients_leave(store_server: Any, timeout: float) -> None:
    """Wait until no worker is connected to the store, a signal says stop, or ``timeout``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    deadline = loop.time() + timeout
    while store_server.clients and not stop.is_set() and loop.time() < deadline:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


def _start_app_workers(
    processes: list[Any],
    config: Any,
    workers: int,
    log_level: int,
    ready_timeout: float,
    stopping: Callable[[], bool],
) -> None:
    ctx = multiprocessing.get_context("spawn")
    readies = []
    for i in range(workers):
        ready = ctx.Semaphore(0)
        p = ctx.Process(target=_app_worker_main, args=(config, log_level, ready), name=f"ventros-worker-{i}")
        p.start()
        processes.append(p)
        readies.append(ready)
    _wait_ready(processes, readies, ready_timeout, stopping=stopping)


def _announce_workers(
    config: Any, ports: dict[str, int], processes: list[Any], store: Any, announce: Callable[[str], None]
) -> None:
    from ventros import _settings

    def address(host: str, port: int) -> str:
        return f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host}:{port}"

    for name in ("memory", "agent"):
        if name in ports:
            announce(f"{name} service listening on {address(config.host, ports[name])}")
    if "agent" in ports:
        if config.memory_addr or "memory" not in ports:
            memory = _settings.memory_address(config.memory_addr)
        else:
            wildcard = config.host in ("", "0.0.0.0", "::", "[::]")
            memory = address("127.0.0.1" if wildcard else config.host, ports["memory"])
        announce(f"agent service uses the memory service at {memory}")
    log.info(
        "%s: %d worker processes (pids %s)%s",
        " and ".join(f"{n} service" for n in ports),
        len(processes),
        " ".join(str(p.pid) for p in processes),
        f"; the memory store and its gRPC server in process {store.pid}" if store is not None else "",
    )
