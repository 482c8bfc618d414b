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


def test_the_event_loop_path_answers_like_the_store_in_process(owner, local):
    """RemoteStore.aio (what MemoryService awaits): same answers, and calls in flight at once
    each get a connection of their own, up to max_connections."""
    remote = RemoteStore(owner.address, owner.authkey)
    query = SearchQuery(CONTACT, QUERY, limit=10, mode=SearchMode.KEYWORD)
    context = dict(history_limit=20, entity_types=frozenset(), include_graph=True)
    related = dict(entity_type=None, target_types=frozenset(), max_depth=2, limit=5)

    async def calls() -> tuple[object, ...]:
        found = await asyncio.gather(*(remote.aio.search(query) for _ in range(12)))
        connections = len(remote.aio._open)
        return (
            found,
            connections,
            await remote.aio.contact_context(CONTACT, **context),
            await remote.aio.related_entities("nope", **related),
        )

    try:
        found, connections, contact, missing = asyncio.run(calls())
    finally:
        remote.close()
    expected = local.search(query)
    assert len(expected.memories) >= 5
    assert all(f == expected for f in found)  # type: ignore[attr-defined]
    assert 1 < connections <= remote.aio.max_connections  # type: ignore[operator]
    assert contact == local.contact_context(CONTACT, **context)
    assert missing is None


def test_search_results_survive_the_flat_encoding_with_embeddings(owner, local):
    query = SearchQuery(CONTACT, QUERY, limit=10, mode=SearchMode.HYBRID, with_embedding=True)
    remote = RemoteStore(owner.address, owner.authkey)
    try:
        forwarded = remote.search(query)
        awaited = asyncio.run(remote.aio.search(query))
    finally:
        remote.close()
    expected = local.search(query)
    assert expected.memories and all(s.memory.embedding is not None for s in expected.memories)
    for result in (forwarded, awaited):
        assert [s.memory.id for s in result.memories] == [s.memory.id for s in expected.memories]
        assert [s.memory.related for s in result.memories] == [s.memory.related for s in expected.memories]
        for got, want in zip(result.memories, expected.memories, strict=True):
            assert (got.memory.embedding == want.memory.embedding).all()  # type: ignore[union-attr]
        assert result.weights == expected.weights


def test_event_loop_path_exceptions_come_back_as_themselves(owner, local):
    bad = NewMemory(contact_id=CONTACT, content=None, memory_type="note")  # type: ignore[arg-type]
    with pytest.raises(Exception) as in_process:
        local.store_memory(bad)
    remote = RemoteStore(owner.address, owner.authkey)
    try:
        with pytest.raises(Exception) as forwarded:
            asyncio.run(remote.aio.store_memory(bad))
    finally:
        remote.close()
    assert type(forwarded.value) is type(in_process.value)
    assert str(forwarded.value) == str(in_process.value)


def test_a_cancelled_call_does_not_leave_its_answer_to_the_next(owner, local):
    """The answer to a call abandoned mid-way must not be read as the next call's answer."""
    remote = RemoteStore(owner.address, owner.authkey)
    keyword = SearchQuery(CONTACT, QUERY, limit=10, mode=SearchMode.KEYWORD)
    context = dict(history_limit=5, entity_types=frozenset(), include_graph=False)

    async def cancel_then_call() -> object:
        await remote.aio.search(keyword)  # leaves one connection open and idle
        abandoned = asyncio.create_task(remote.aio.search(keyword))
        await asyncio.sleep(0)  # sent on that connection, not answered yet
        abandoned.cancel()
        with pytest.raises(asyncio.CancelledError):
            await abandoned
        return await remote.aio.contact_context(CONTACT, **context)

    try:
        answer = asyncio.run(cancel_then_call())
    finally:
        remote.close()
    assert answer is not None
    assert answer == local.contact_context(CONTACT, **context)


def test_event_loop_path_after_close_or_without_the_key_is_unavailable(owner):
    query = SearchQuery(CONTACT, QUERY, mode=SearchMode.KEYWORD)
    stranger = RemoteStore(owner.address, b"not the key")
    with pytest.raises(UnavailableError) as refused:
        asyncio.run(stranger.aio.search(query))
    assert refused.value.code == "STORE_UNAVAILABLE"
    closed = RemoteStore(owner.address, owner.authkey)

    async def close_from_a_thread() -> tuple[bool, object]:
        """As app.py does: the store is closed from a worker thread while the loop runs."""
        await closed.aio.search(query)
        channel = closed.aio._idle[0]
        await asyncio.to_thread(closed.close)
        await asyncio.sleep(0.05)  # the loop runs the close it was handed
        try:
            await closed.aio.search(query)
        except UnavailableError as exc:
            return channel._lost, exc.code
        return channel._lost, "answered"

    assert asyncio.run(close_from_a_thread()) == (True, "STORE_UNAVAILABLE")


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
