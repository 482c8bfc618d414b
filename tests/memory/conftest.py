"""Fixtures: an in-memory store, and a real gRPC server on 127.0.0.1 (random port) around it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
import ventros
from ventros_server.memory import DuckDBStore, MemoryService, make_embedder
from ventros_server.memory.embedders.offline import OfflineEmbedder
from ventros_server.server import build_server

#: The "now" of the demo data set, so churn and recency are deterministic in tests.
AS_OF = datetime(2024, 10, 1, 12, 0, tzinfo=UTC)
JOAO = "550e8400-e29b-41d4-a716-446655440000"
OTHER = "11111111-2222-4333-8444-555555555555"


class StoredOfflineEmbedder(OfflineEmbedder):
    """The offline embedder's vectors under another name, stored in the file like the vectors
    of an embedder that is not recomputable (a remote API's, MiniLM's)."""

    recomputable = False

    def __init__(self, dim: int = 384) -> None:
        super().__init__(dim)
        self.name = f"stored-{self.name}"


@pytest.fixture
def store() -> Iterator[DuckDBStore]:
    s = DuckDBStore(":memory:", make_embedder("offline"), clock=lambda: AS_OF)
    yield s
    s.close()


@pytest.fixture
async def client(store: DuckDBStore) -> AsyncIterator[ventros.MemoryClient]:
    server, _ = build_server([MemoryService(store)])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]
    async with ventros.MemoryClient(f"127.0.0.1:{port}") as memory:
        yield memory
    server.close()
    await server.wait_closed()
