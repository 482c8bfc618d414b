"""Run services on a real socket for tests and tools: ``async with running(services) as address``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from .server import build_server


@asynccontextmanager
async def running(services: Iterable[Any], *, host: str = "127.0.0.1", **options: Any) -> AsyncIterator[str]:
    """Serve ``services`` on a random port of ``host``; yields "host:port"; closes on exit."""
    server, statuses = build_server(services, **options)
    for status in statuses.values():
        status.set(True)
    await server.start(host, 0)
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"{host}:{port}"
    finally:
        server.close()
        await server.wait_closed()
