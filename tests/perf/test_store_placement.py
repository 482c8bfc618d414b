"""Where MemoryService runs a store call (memory/service.py, _Placement): short calls on the event
loop, calls that may embed or write in a thread, and nothing on the loop while a store call runs
in a thread (it may hold the store's lock). The real demo store, with each call's thread noted."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

pytest.importorskip("ventros_server.memory")

from ventros import memory as pb
from ventros_server.memory import MemoryService, load_demo, open_store
from ventros_server.memory import service as service_module

CONTACT = "d6ab2bca-5565-4628-84fe-5d4638b3b2b1"
QUERY = "Fone Bluetooth delivery damaged purchased"


class ThreadNotingStore:
    """The real store; notes the thread of each call, and can hold store_memory until released."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: list[tuple[str, int]] = []
        self.hold_writes = threading.Event()
        self.hold_writes.set()
        self.writing = threading.Event()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)

        def noted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, threading.get_ident()))
            if name == "store_memory":
                self.writing.set()
                self.hold_writes.wait(30)
            return method(*args, **kwargs)

        return noted


@pytest.fixture(scope="module")
def demo():  # type: ignore[no-untyped-def]
    store = open_store(":memory:")
    load_demo(store)
    yield store
    store.close()


def keyword(mode: pb.SearchMode = pb.SearchMode.KEYWORD_ONLY) -> pb.SearchMemoriesRequest:
    return pb.SearchMemoriesRequest(contact_id=CONTACT, query=QUERY, limit=10, mode=mode)


def on_loop(noted: ThreadNotingStore, loop_thread: int) -> list[bool]:
    return [ident == loop_thread for _, ident in noted.calls]


async def hold_a_write(service: MemoryService, noted: ThreadNotingStore, content: str) -> asyncio.Task[Any]:
    """After a first search (in a thread, so its cost is known), a StoreMemory held in its thread."""
    await service.search_memories(keyword())
    noted.hold_writes.clear()
    write = pb.StoreMemoryRequest(contact_id=CONTACT, content=content, memory_type="note")
    writing = asyncio.create_task(service.store_memory(write))
    await asyncio.to_thread(noted.writing.wait, 30)
    return writing


def placed(demo, monkeypatch, *, inline_below: float, threads_wait: float | None = None):
    """The demo store behind a ThreadNotingStore and a MemoryService, with the placement's
    thresholds set: INLINE_BELOW_SECONDS 3600 makes every kind of call short, 0 long."""
    monkeypatch.setattr(service_module, "INLINE_BELOW_SECONDS", inline_below)
    if threads_wait is not None:
        monkeypatch.setattr(service_module, "THREADS_WAIT_SECONDS", threads_wait)
    noted = ThreadNotingStore(demo)
    return noted, MemoryService(noted)  # type: ignore[arg-type]


def test_short_calls_move_to_the_loop_after_the_first(demo, monkeypatch):
    noted, service = placed(demo, monkeypatch, inline_below=3600.0)

    async def calls() -> tuple[int, list[int]]:
        sizes = [len((await service.search_memories(keyword())).memories) for _ in range(3)]
        return threading.get_ident(), sizes

    loop_thread, sizes = asyncio.run(calls())
    assert sizes[0] >= 5 and len(set(sizes)) == 1
    assert on_loop(noted, loop_thread) == [False, True, True]


def test_calls_that_embed_or_write_always_run_in_a_thread(demo, monkeypatch):
    noted, service = placed(demo, monkeypatch, inline_below=3600.0)
    write = pb.StoreMemoryRequest(contact_id=CONTACT, content="asked about the warranty", memory_type="note")

    async def calls() -> int:
        for _ in range(3):
            await service.search_memories(keyword(pb.SearchMode.HYBRID))
            await service.store_memory(write)
        return threading.get_ident()

    loop_thread = asyncio.run(calls())
    assert [name for name, _ in noted.calls] == ["search", "store_memory"] * 3
    assert not any(on_loop(noted, loop_thread))


def test_long_calls_stay_in_a_thread(demo, monkeypatch):
    noted, service = placed(demo, monkeypatch, inline_below=0.0)

    async def calls() -> int:
        for _ in range(3):
            await service.search_memories(keyword())
        return threading.get_ident()

    assert not any(on_loop(noted, asyncio.run(calls())))


def test_nothing_runs_on_the_loop_while_a_store_call_runs_in_a_thread(demo, monkeypatch):
    """A write in a thread may hold the store's lock: a search on the loop would wait for it."""
    noted, service = placed(demo, monkeypatch, inline_below=3600.0)

    async def calls() -> tuple[int, int]:
        writing = await hold_a_write(service, noted, "asked about the warranty")
        found = await service.search_memories(keyword())  # while the write is held
        noted.hold_writes.set()
        await writing
        return threading.get_ident(), len(found.memories)

    loop_thread, found = asyncio.run(calls())
    assert found >= 5
    assert [name for name, _ in noted.calls] == ["search", "store_memory", "search"]
    # The search waited THREADS_WAIT_SECONDS for the held write, then joined it in a thread.
    assert on_loop(noted, loop_thread) == [False, False, False]


def test_a_short_call_waits_for_the_threads_then_runs_on_the_loop(demo, monkeypatch):
    """It does not join them in a thread: under concurrency some call was always in a thread,
    so a busy server stayed in threads for good (the cost ~1.5x per call, docs/benchmarks.md)."""
    noted, service = placed(demo, monkeypatch, inline_below=3600.0, threads_wait=30.0)

    async def calls() -> tuple[int, int]:
        writing = await hold_a_write(service, noted, "asked about the gift wrap")
        searching = asyncio.create_task(service.search_memories(keyword()))
        await asyncio.sleep(0.05)
        assert not searching.done()  # waiting for the write, not running beside it
        noted.hold_writes.set()
        await writing
        found = await searching
        return threading.get_ident(), len(found.memories)

    loop_thread, found = asyncio.run(calls())
    assert found >= 5
    assert [name for name, _ in noted.calls] == ["search", "store_memory", "search"]
    assert on_loop(noted, loop_thread) == [False, False, True]


def test_a_call_whose_caller_is_cancelled_counts_until_its_thread_ends(demo, monkeypatch):
    """A cancelled caller (e.g. its deadline passed) does not stop the thread, which may still
    hold the store's lock: a short call must not take it for gone and run on the loop."""
    noted, service = placed(demo, monkeypatch, inline_below=3600.0, threads_wait=0.0)

    async def calls() -> int:
        writing = await hold_a_write(service, noted, "asked about the invoice copy")
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        await service.search_memories(keyword())  # the write's thread still runs: in a thread too
        noted.hold_writes.set()
        for _ in range(500):  # until the write's thread has ended
            if not service._placement._in_threads:
                break
            await asyncio.sleep(0.01)
        await service.search_memories(keyword())  # nothing in a thread: on the loop
        return threading.get_ident()

    loop_thread = asyncio.run(calls())
    assert [name for name, _ in noted.calls] == ["search", "store_memory", "search", "search"]
    assert on_loop(noted, loop_thread) == [False, False, False, True]
