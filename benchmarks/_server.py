"""One benchmark server process: ``python -m benchmarks._server KIND PORT STUBS_DIR READY_FILE HANDLERS``.

KIND is one of the keys of ``KINDS``; HANDLERS is "real" or "same-shape" (benchmarks._peers).
The process writes "PID PID..." (the processes that do the serving, for CPU accounting) to
READY_FILE once it listens, followed by ";MEMORY_PORT" when the memory service has a port of its
own ("ours x2"), and serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _peers

# kind -> (stack, options). Our variants run build_server as `ventros serve` does (fast codec,
# coalesced writes); "x2" is two worker processes. With real handlers "ours x2" serves both
# services as `ventros serve --workers 2` serves the memory port: one more process owns the DuckDB
# store, serves gRPC itself with the store in-process and alone listens, keeping a lone connection
# and handing further ones to the two workers (ventros_server.handoff), which forward their store
# calls to it (ventros_server.memory.remote). "ours x2 reuseport" is the topology before that: the
# workers share the port with SO_REUSEPORT and every store call is forwarded to an owner that
# serves no gRPC. "grpcio x2" serves the agent service only (two grpc.aio processes cannot share
# one DuckDB store either, and grpc.aio has no such forwarding).
KINDS: dict[str, dict[str, Any]] = {
    "ours": {"stack": "grpclib"},
    "ours+uvloop": {"stack": "grpclib", "uvloop": True},
    "ours x2": {"stack": "grpclib", "workers": 2, "steered": True},
    "ours x2 reuseport": {"stack": "grpclib", "workers": 2},
    # grpc.aio: upb messages (its own stack), and our betterproto2 messages/codec (transport only).
    "grpcio": {"stack": "grpcio", "codec": "upb"},
    "grpcio+betterproto2": {"stack": "grpcio", "codec": "betterproto2"},
    "grpcio x2": {"stack": "grpcio", "codec": "upb", "workers": 2},
}
#: What ``python -m benchmarks.serving`` runs unless told otherwise.
DEFAULT_KINDS = ["ours", "ours x2", "ours x2 reuseport", "grpcio", "grpcio+betterproto2", "grpcio x2"]
#: Environment variable telling a grpc.aio child of "grpcio x2" that it is one of several workers.
_WORKERS_ENV = "VENTROS_BENCH_WORKERS"


def serves(kind: str, rpc: str, handlers: str) -> bool:
    """Whether ``kind`` serves ``rpc``: real multi-process grpcio serves the agent service only."""
    spec = KINDS[kind]
    multi = spec.get("workers", 1) > 1
    return not (handlers == "real" and multi and spec["stack"] == "grpcio" and rpc != "ListAvailableAgents")


def services_factory(handlers: str, workers: int, store: Any = None) -> Callable[[], list[Any]]:
    """A picklable factory of the servicers a server process runs. ``store``: the store-owner
    process (memory.remote.StoreProcess) our real multi-process variant forwards to."""
    if handlers == "same-shape":
        return _peers.betterproto_services
    if workers == 1:
        return _peers.real_services
    if store is not None:
        return functools.partial(_peers.real_forwarding_services, store.address, store.authkey)
    return _peers.real_agent_services


def _grpcio_handlers(handlers: str, codec: str, stubs: Path, workers: int) -> list[Any]:
    pb = _peers.grpcio_modules(stubs) if codec == "upb" or handlers == "real" else {}
    if handlers == "same-shape":
        return _peers.grpcio_handlers(pb, codec)
    services = services_factory(handlers, workers)()
    if codec == "upb":
        return _peers.grpcio_real_handlers(pb, services)
    return _peers.grpcio_real_betterproto_handlers(services)


async def _grpcio(port: int, stubs: Path, codec: str, handlers: str, workers: int, ready: Path) -> None:
    import grpc

    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    server.add_generic_rpc_handlers(_grpcio_handlers(handlers, codec, stubs, workers))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    _announce(ready, [os.getpid()])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


def _announce(ready: Path, pids: list[int], memory_port: int | None = None) -> None:
    tmp = ready.with_name(ready.name + ".tmp")  # not with_suffix: "ready-5.0" and "ready-5.1" share it
    tmp.write_text(" ".join(map(str, pids)) + (f";{memory_port}" if memory_port else ""))
    tmp.rename(ready)


def main(argv: list[str]) -> None:
    kind, port_text, stubs, ready_path, handlers = argv
    port, ready = int(port_text), Path(ready_path)
    spec = KINDS[kind]
    workers = spec.get("workers", 1)
    if spec["stack"] == "grpcio" and workers > 1:
        _grpcio_workers(workers, port, stubs, handlers, ready)
    elif spec["stack"] == "grpcio":
        siblings = int(os.environ.get(_WORKERS_ENV, "1"))
        asyncio.run(_grpcio(port, Path(stubs), spec["codec"], handlers, siblings, ready))
    elif workers > 1 and spec.get("steered") and handlers == "real":
        _our_steered_workers(workers, port, ready)
    elif workers > 1:
        _our_workers(workers, port, handlers, ready, spec.get("uvloop", False))
    else:
        from ventros_server import multiproc

        serve = multiproc.serve_one(
            services_factory(handlers, workers),
            "127.0.0.1",
            port,
            on_ready=lambda: _announce(ready, [os.getpid()]),
        )
        multiproc.run(serve, use_uvloop=spec.get("uvloop", False))


def _our_workers(workers: int, port: int, handlers: str, ready: Path, use_uvloop: bool) -> None:
    """Our worker processes on one port; with real handlers, plus the store-owner process (its
    CPU is counted with the workers')."""
    from ventros_server import multiproc
    from ventros_server.memory.remote import start_store_process

    store = start_store_process(_peers.real_memory_store) if handlers == "real" else None
    try:
        group = multiproc.start_workers(
            services_factory(handlers, workers, store), "127.0.0.1", port, workers, use_uvloop=use_uvloop
        )
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # after the workers started
        _announce(ready, group.pids + ([store.pid] if store is not None else []))
        signal.sigwait([signal.SIGTERM])
        group.stop()
    finally:
        if store is not None:
            store.stop()


def _our_steered_workers(workers: int, port: int, ready: Path) -> None:
    """`ventros serve --workers N` with both services: ``workers`` processes share the agent port
    (SO_REUSEPORT) and serve the memory connections the store owner hands them; the owner keeps
    the store in-process, serves the memory port itself and alone listens there
    (ventros_server.handoff), and answers the workers' store calls (memory.remote)."""
    import multiprocessing
    import secrets
    import shutil
    import tempfile
    import types

    from ventros_server import multiproc

    directory = tempfile.mkdtemp(prefix="ventros-bench-")
    authkey = secrets.token_bytes(32)
    ctx = multiprocessing.get_context("spawn")
    owner_ready = ctx.Semaphore(0)
    memory_port = ctx.Value("i", 0)
    owner = ctx.Process(target=_steered_owner_main, args=(directory, authkey, owner_ready, memory_port))
    owner.start()
    try:
        if not owner_ready.acquire(timeout=60):
            raise RuntimeError("the owner did not start")
        store = types.SimpleNamespace(address=os.path.join(directory, "store.sock"), authkey=authkey)
        group = multiproc.start_workers(
            services_factory("real", workers, store), "127.0.0.1", port, workers,
            handoff=os.path.join(directory, "conns.sock"),
        )  # fmt: skip
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        _announce(ready, [*group.pids, owner.pid], memory_port.value)
        signal.sigwait([signal.SIGTERM])
        group.stop()
    finally:
        owner.terminate()
        owner.join(10)
        shutil.rmtree(directory, ignore_errors=True)


def _steered_owner_main(directory: str, authkey: bytes, ready: Any, memory_port: Any) -> None:
    from ventros_server import multiproc

    multiproc.run(_steered_owner(directory, authkey, ready, memory_port), use_uvloop=False)


async def _steered_owner(directory: str, authkey: bytes, ready: Any, memory_port: Any) -> None:
    """The store owner of "ours x2": the store in-process, served to the workers on the loop
    (LoopStoreServer) and over gRPC on the memory port, steering its connections."""
    from ventros_server.handoff import Steering
    from ventros_server.memory import MemoryService
    from ventros_server.memory.remote import LoopStoreServer
    from ventros_server.server import build_server, listen_socket, tune_gc

    store = _peers.real_memory_store()
    server, statuses = build_server([MemoryService(store)])
    store_server = LoopStoreServer(store, os.path.join(directory, "store.sock"), authkey).start()
    listener = listen_socket("127.0.0.1", 0)
    memory_port.value = listener.getsockname()[1]
    server.serve_from(Steering(listener, os.path.join(directory, "conns.sock"), server._protocol_factory))
    tune_gc()
    for status in statuses.values():
        status.set(True)
    ready.release()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()
    store_server.close()
    store.close()


def _grpcio_workers(workers: int, port: int, stubs: str, handlers: str, ready: Path) -> None:
    """grpc.aio processes sharing the port (grpc.so_reuseport), like multiproc does for ours."""
    children = []
    try:
        for i in range(workers):
            child_ready = ready.with_name(f"{ready.name}.{i}")
            cmd = [
                sys.executable,
                "-m",
                "benchmarks._server",
                "grpcio",
                str(port),
                stubs,
                str(child_ready),
                handlers,
            ]
            env = {**os.environ, _WORKERS_ENV: str(workers)}
            children.append((subprocess.Popen(cmd, cwd=_peers.ROOT, env=env), child_ready))
        deadline = time.monotonic() + 60
        while not all(r.exists() for _, r in children):
            if time.monotonic() > deadline or any(p.poll() is not None for p, _ in children):
                raise RuntimeError("grpcio workers did not start")
            time.sleep(0.05)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # children keep their own mask
        _announce(ready, [p.pid for p, _ in children])
        signal.sigwait([signal.SIGTERM])
    finally:
        for p, _ in children:
            p.terminate()
        for p, _ in children:
            p.wait(10)


if __name__ == "__main__":
    main(sys.argv[1:])
