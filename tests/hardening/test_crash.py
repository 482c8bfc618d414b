"""kill -9 of `ventros serve` during concurrent StoreMemory traffic, three times over one file.

Every memory the server acknowledged must be there after the restarts, findable by KEYWORD_ONLY
and VECTOR_ONLY search, and no memory may be half-written: each row has its keyword postings,
its embedding and its entity link, and no posting or link points at a missing memory.
"""

from __future__ import annotations

import asyncio
import random
import signal
from dataclasses import dataclass
from pathlib import Path

import duckdb
from ventros import MemoryClient, RetryPolicy, StatusError
from ventros.memory import RelatedEntity, SearchMode

from .conftest import ServeProcess

ONCE = RetryPolicy(attempts=1)
ROUNDS = 3
WRITERS = 4
#: Acknowledged writes per round before the kill; the writers keep going until it lands.
ACKS_PER_ROUND = 15
CONTACTS = [
    "0a000000-0000-4000-8000-000000000001",
    "0a000000-0000-4000-8000-000000000002",
    "0a000000-0000-4000-8000-000000000003",
]


@dataclass(frozen=True)
class Acked:
    memory_id: str
    contact_id: str
    word: str
    content: str


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(10))


async def _writer(
    address: str, rng: random.Random, acked: list[Acked], target: int, enough: asyncio.Event
) -> None:
    async with MemoryClient(address, retry=ONCE) as client:
        while True:
            word = _word(rng)
            contact = rng.choice(CONTACTS)
            content = f"Crash-safety note {word} about a parcel"
            try:
                reply = await client.store_memory(
                    contact_id=contact,
                    content=content,
                    memory_type="fact",
                    related=[
                        RelatedEntity(entity_type="product", entity_id=f"p-{word}", relationship="mentioned")
                    ],
                    timeout=10,
                )
            except StatusError:
                return  # the server is gone: whatever was not acknowledged may or may not be stored
            assert reply.success
            acked.append(Acked(reply.memory_id, contact, word, content))
            if len(acked) >= target:
                enough.set()


async def _round(served: ServeProcess, rng: random.Random, acked: list[Acked]) -> None:
    enough = asyncio.Event()
    target = len(acked) + ACKS_PER_ROUND
    address = served.addresses["memory"]
    writers = [
        asyncio.create_task(_writer(address, random.Random(rng.random()), acked, target, enough))
        for _ in range(WRITERS)
    ]
    await asyncio.wait_for(enough.wait(), 120)
    served.proc.send_signal(signal.SIGKILL)  # writers are mid-call: each loops until it fails
    await asyncio.to_thread(served.proc.wait, 30)
    await asyncio.wait_for(asyncio.gather(*writers), 60)


def _serve(db: Path) -> ServeProcess:
    return ServeProcess("--only", "memory", "--db", str(db), "--memory-port", "0", expect=("memory",))


async def test_acknowledged_memories_survive_repeated_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "crash.duckdb"
    rng = random.Random(20241001)
    acked: list[Acked] = []
    for _ in range(ROUNDS):
        served = _serve(db)
        try:
            await _round(served, rng, acked)
        finally:
            served.kill()
        assert served.proc.returncode == -signal.SIGKILL
    assert len(acked) >= ROUNDS * ACKS_PER_ROUND

    served = _serve(db)
    returned: set[tuple[str, str]] = set()  # (contact searched, memory id returned)
    try:
        async with MemoryClient(served.addresses["memory"], retry=ONCE) as client:

            async def find(memory: Acked, mode: SearchMode, query: str) -> None:
                found = await client.search_memories(
                    contact_id=memory.contact_id, query=query, mode=mode, limit=20, timeout=10
                )
                ids = [m.id for m in found.memories]
                assert memory.memory_id in ids, (mode, memory)
                returned.update((memory.contact_id, i) for i in ids)

            for memory in acked:
                await asyncio.gather(
                    find(memory, SearchMode.KEYWORD_ONLY, memory.word),
                    find(memory, SearchMode.VECTOR_ONLY, memory.content),
                )
    finally:
        assert served.stop() == 0

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = {
            row[0]: row[1:]
            for row in con.execute(
                """SELECT m.id, m.embedded,
                          (SELECT count(*) FROM postings p WHERE p.seq = m.seq),
                          (SELECT count(*) FROM memory_links l WHERE l.seq = m.seq),
                          (SELECT count(*) FROM edges e WHERE e.from_id = m.contact_id
                             AND e.to_id IN (SELECT entity_id FROM memory_links l WHERE l.seq = m.seq))
                   FROM memories m"""
            ).fetchall()
        }
        assert {a.memory_id for a in acked} <= set(rows)
        owners = dict(con.execute("SELECT id, contact_id FROM memories").fetchall())
        assert all(owners[memory_id] == contact for contact, memory_id in returned)  # isolation holds
        # Every row, acknowledged or written just before a kill, is whole.
        for memory_id, (embedded, postings, links, edges) in rows.items():
            assert embedded and postings > 0 and links == 1 and edges == 1, memory_id
        orphans = con.execute(
            """SELECT (SELECT count(*) FROM postings WHERE seq NOT IN (SELECT seq FROM memories)),
                      (SELECT count(*) FROM memory_links WHERE seq NOT IN (SELECT seq FROM memories)),
                      (SELECT count(*) - count(DISTINCT seq) FROM memories),
                      (SELECT count(*) - count(DISTINCT id) FROM memories)"""
        ).fetchone()
        assert orphans == (0, 0, 0, 0)
    finally:
        con.close()
