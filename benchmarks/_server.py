"""One benchmark server process: ``python -m benchmarks._server KIND PORT STUBS_DIR READY_FILE``.

KIND is one of the keys of ``KINDS``. The process writes "PID PID..." (the processes that do
the serving, for CPU accounting) to READY_FILE once it listens, and serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _peers

# kind -> (stack, options)
KINDS: dict[str, dict[str, Any]] = {
    # Our grpclib server, one step at a time.
    "ours": {"stack": "grpclib"},
    "ours+uvloop": {"stack": "grpclib", "uvloop": True},
    "ours+uvloop+fastcodec": {"stack": "grpclib", "uvloop": True, "fast": True},
    "ours+uvloop+fastcodec+coalesce": {"stack": "grpclib", "uvloop": True, "fast": True, "coalesce": True},
    "ours+all x2": {"stack": "grpclib", "uvloop": True, "fast": True, "coalesce": True, "workers": 2},
    # grpc.aio serving the same handlers: upb messages (its own stack), and betterproto2 ones.
    "grpcio": {"stack": "grpcio", "codec": "upb"},
    "grpcio x2": {"stack": "grpcio", "codec": "upb", "workers": 2},
    "grpcio+betterproto2": {"stack": "grpcio", "codec": "betterproto2"},
}
#: What ``python -m benchmarks.serving`` runs unless told otherwise (under ~5 minutes).
DEFAULT_KINDS = [k for k in KINDS if k != "grpcio+betterproto2"]


def use_codec(fast: bool) -> None:
    """VentrosCodec encodes betterproto2 messages with ventros._fastcodec (the _wire hook);
    ``fast=False`` puts betterproto2's own bytes()/parse back in this process, i.e. the codec
    as it was before the hook."""
    from ventros import _fastcodec, _wire

    assert "_fastcodec" in _wire.VentrosCodec.encode.__code__.co_names, "the _wire hook is missing"
    if not fast:
        _fastcodec.encode = bytes  # type: ignore[assignment]
        _fastcodec.decode = lambda cls, data: cls.parse(data)  # type: ignore[assignment]


def services_plain() -> list[Any]:
    use_codec(fast=False)
    return _peers.betterproto_services()


def services_fast() -> list[Any]:
    use_codec(fast=True)
    return _peers.betterproto_services()


async def _grpcio(port: int, stubs: Path, codec: str, ready: Path) -> None:
    import grpc

    pb = _peers.grpcio_modules(stubs) if codec == "upb" else {}
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    server.add_generic_rpc_handlers(_peers.grpcio_handlers(pb, codec))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    _announce(ready, [os.getpid()])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


def _announce(ready: Path, pids: list[int]) -> None:
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(" ".join(map(str, pids)))
    tmp.rename(ready)


def main(argv: list[str]) -> None:
    kind, port_text, stubs, ready_path = argv
    port, ready = int(port_text), Path(ready_path)
    spec = KINDS[kind]
    workers = spec.get("workers", 1)
    if spec["stack"] == "grpcio" and workers > 1:
        _grpcio_workers(workers, port, stubs, ready)
    elif spec["stack"] == "grpcio":
        asyncio.run(_grpcio(port, Path(stubs), spec["codec"], ready))
    elif workers > 1:
        from ventros_server import multiproc

        group = multiproc.start_workers(
            services_fast if spec.get("fast") else services_plain,
            "127.0.0.1",
            port,
            workers,
            use_uvloop=spec.get("uvloop", False),
            coalesce=spec.get("coalesce", False),
        )
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # after the workers started
        _announce(ready, group.pids)
        signal.sigwait([signal.SIGTERM])
        group.stop()
    else:
        from ventros_server import multiproc

        serve = multiproc.serve_one(
            services_fast if spec.get("fast") else services_plain,
            "127.0.0.1",
            port,
            on_ready=lambda: _announce(ready, [os.getpid()]),
            coalesce=spec.get("coalesce", False),
        )
        multiproc.run(serve, use_uvloop=spec.get("uvloop", False))


def _grpcio_workers(workers: int, port: int, stubs: str, ready: Path) -> None:
    """grpc.aio processes sharing the port (grpc.so_reuseport), like multiproc does for ours."""
    children = []
    try:
        for i in range(workers):
            child_ready = ready.with_name(f"{ready.name}.{i}")
            cmd = [sys.executable, "-m", "benchmarks._server", "grpcio", str(port), stubs, str(child_ready)]
            children.append((subprocess.Popen(cmd, cwd=_peers.ROOT), child_ready))
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
