"""Contact isolation over gRPC: SearchMemories (every mode) and GetContactContext for contact A
never return contact B's memories, even when A and B share every word and every entity.

tests/memory/test_search.py has the store-level property test (all four modes, hypothesis);
this one goes through the service and the wire, adds GetContactContext, and uses random
interleavings from fixed seeds.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator

import pytest
import ventros
from ventros.memory import RelatedEntity, SearchMode
from ventros_server.memory import DuckDBStore, MemoryService, make_embedder
from ventros_server.server import build_server

WORDS = ["delay", "refund", "gift", "atraso", "laptop", "coupon", "entrega", "invoice"]
ENTITIES = ["prod-shared-1", "prod-shared-2"]


@pytest.fixture
async def memory() -> AsyncIterator[ventros.MemoryClient]:
    store = DuckDBStore(":memory:", make_embedder("offline"))
    server, _ = build_server([MemoryService(store)])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with ventros.MemoryClient(f"127.0.0.1:{port}", retry=ventros.RetryPolicy(attempts=1)) as client:
            client._store = store  # type: ignore[attr-defined]  # for tests that seed profiles directly
            yield client
    finally:
        server.close()
        await server.wait_closed()
        store.close()


@pytest.mark.parametrize("seed", range(4))
async def test_a_contact_never_sees_another_contacts_memories(
    memory: ventros.MemoryClient, seed: int
) -> None:
    rng = random.Random(seed)
    contacts = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(3)]
    owned: dict[str, set[str]] = {c: set() for c in contacts}
    for i in range(24):
        owner = rng.choice(contacts)
        words = " ".join(rng.sample(WORDS, rng.randint(1, 4)))
        reply = await memory.store_memory(
            contact_id=owner,
            content=f"{words} note {i}",
            memory_type=rng.choice(["fact", "conversation"]),
            related=[
                RelatedEntity(entity_type="product", entity_id=e, relationship="mentioned") for e in ENTITIES
            ],
        )
        owned[owner].add(reply.memory_id)
    for contact in contacts:
        for mode in SearchMode:
            query = " ".join(rng.sample(WORDS, 2)) + " prod-shared-1"
            found = await memory.search_memories(
                contact_id=contact, query=query, mode=mode, limit=100, timeout=10
            )
            assert {m.id for m in found.memories} <= owned[contact], (mode, query)
        context = await memory.get_contact_context(contact_id=contact, include_graph=True, history_limit=100)
        assert {m.id for m in context.recent_memories} <= owned[contact]
        if owned[contact]:
            assert {m.id for m in context.recent_memories}, "the contact's own memories are returned"


async def test_context_graph_does_not_carry_other_contacts_personal_data(
    memory: ventros.MemoryClient,
) -> None:
    from ventros_server.memory.store import Contact

    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    store: DuckDBStore = memory._store  # type: ignore[attr-defined]
    store.add_contacts([Contact(id=b, name="Bea Outra", email="bea.outra@example.com")])
    for contact in (a, b):
        await memory.store_memory(
            contact_id=contact, content="bought a laptop", memory_type="purchase",
            related=[RelatedEntity(entity_type="product", entity_id="p-laptop", relationship="purchased")],
        )  # fmt: skip
    context = await memory.get_contact_context(contact_id=a, include_graph=True)
    assert context.graph is not None and context.graph.nodes
    others = [dict(n.properties) for n in context.graph.nodes if n.type == "contact" and n.id != a]
    assert not any(p.get("name") or p.get("email") or p.get("phone") for p in others), others
