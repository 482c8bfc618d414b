"""The memory store in its own process (ventros_server.memory.remote), as ``ventros serve
--workers N`` runs it: forwarded calls answer exactly like the store in-process, exceptions come
back as themselves, a stranger without the key is refused, and a MemoryService whose store
process died answers UNAVAILABLE with ErrorDetails over real gRPC."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
from collections.abc import Callable

import pytest

pytest.importorskip("ventros_server.memory")

from ventros import MemoryClient, NotFoundError, UnavailableError
from ventros.memory import SearchMode as PbSearchMode
from ventros_server.memory import MemoryService, load_demo, open_store
from ventros_server.memory.remote import RemoteStore, start_store_process
from ventros_server.memory.store import NewMemory, SearchMode, SearchQuery
from ventros_server.server import build_server

#: The demo contact with the most English memories, and a query that matches several of them.
CONTACT = "d6ab2bca-5565-4628-84fe-5d4638b3b2b1"
QUERY = "Fone Bluetooth delivery damaged purchased"


def open_demo_store():  # type: ignore[no-untyped-def]
    """The opener the store process runs (module level: "spawn" imports it by name)."""
    store = open_store(":memory:")
    load_demo(store)
    return store


@pytest.fixture(scope="module")
def owner():
    handle = start_store_process(open_demo_store, ready_timeout=120)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def local():
    store = open_demo_store()
    yield store
    store.close()


def test_the_socket_is_private_to_this_user(owner):
    mode = stat.S_IMODE(os.stat(os.path.dirname(owner.address)).st_mode)
    assert mode & 0o077 == 0


def test_forwarded_calls_answer_like_the_store_in_process(owner, local):
    remote = RemoteStore(owner.address, owner.authkey)
    try:
        query = SearchQuery(CONTACT, QUERY, limit=10, mode=SearchMode.KEYWORD)
        found = remote.search(query)
        assert len(found.memories) >= 5
        assert found == local.search(query)
        context = dict(history_limit=20, entity_types=frozenset(), include_graph=True)
        assert remote.contact_context(CONTACT, **context) == local.contact_context(CONTACT, **context)
        unknown = "00000000-0000-4000-8000-00000000dead"
        assert remote.contact_context(unknown, **context) is None
        related = dict(entity_type=None, target_types=frozenset(), max_depth=2, limit=5)
        assert remote.related_entities("nope", **related) is None
        assert (remote.embedder.name, remote.embedder.dim) == (local.embedder.name, local.embedder.dim)
        assert (remote.embedder.embed(["late delivery"]) == local.embedder.embed(["late delivery"])).all()
    finally:
        remote.close()


def test_store_exceptions_come_back_as_themselves(owner, local):
    bad = [NewMemory(contact_id=CONTACT, content=None, memory_type="note")]  # type: ignore[arg-type]
    with pytest.raises(Exception) as in_process:
        local.add_memories(bad)
    remote = RemoteStore(owner.address, owner.authkey)
    try:
        with pytest.raises(Exception) as forwarded:
            remote.add_memories(bad)
    finally:
        remote.close()
    assert type(forwarded.value) is type(in_process.value)
    assert str(forwarded.value) == str(in_process.value)


def test_a_client_without_the_key_is_refused(owner):
    stranger = RemoteStore(owner.address, b"not the key")
    with pytest.raises(UnavailableError) as refused:
        stranger.search(SearchQuery(CONTACT, QUERY, mode=SearchMode.KEYWORD))
    assert refused.value.code == "STORE_UNAVAILABLE"


async def _serve_and_search(store: RemoteStore, kill: Callable[[], None] | None) -> dict[str, object]:
    """A MemoryService over ``store`` on a real port: search, ``kill()`` the store process, search again."""
    server, _statuses = build_server([MemoryService(store)])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    outcome: dict[str, object] = {}
    try:
        async with MemoryClient(f"127.0.0.1:{port}") as client:
            found = await client.search_memories(
                contact_id=CONTACT, query=QUERY, mode=PbSearchMode.KEYWORD_ONLY, timeout=10
            )
            outcome["before"] = len(found.memories)
            with pytest.raises(NotFoundError) as missing:
                await client.get_contact_context(
                    contact_id="00000000-0000-4000-8000-00000000dead", timeout=10
                )
            outcome["not_found"] = missing.value.code
            if kill is not None:
                kill()
            try:
                await client.search_memories(
                    contact_id=CONTACT, query=QUERY, mode=PbSearchMode.KEYWORD_ONLY, timeout=10
                )
                outcome["after"] = "answered"
            except UnavailableError as exc:
                outcome["after"] = exc.code
                outcome["suggestions"] = exc.suggestions
    finally:
        server.close()
        await server.wait_closed()
    return outcome


def test_a_dead_store_process_means_unavailable_with_details():
    handle = start_store_process(open_demo_store, ready_timeout=120)
    store = RemoteStore(handle.address, handle.authkey)
    try:

        def kill() -> None:
            os.kill(handle.pid, signal.SIGKILL)
            handle.process.join(10)  # dead (and reaped) before the next call

        outcome = asyncio.run(_serve_and_search(store, kill=kill))
    finally:
        store.close()
        handle.stop()
    assert outcome["before"] >= 5
    assert outcome["not_found"] == "CONTACT_NOT_FOUND"
    assert outcome["after"] == "STORE_UNAVAILABLE"
    assert outcome["suggestions"]
