"""JSONL import: every kind, bad lines reported by number, re-import is a no-op; demo determinism."""

from __future__ import annotations

import json
from pathlib import Path

from ventros_server.demo_data import JOAO_ID, demo_lines, demo_records
from ventros_server.memory import DuckDBStore, import_jsonl
from ventros_server.memory.store import SearchMode, SearchQuery

from .conftest import OTHER

GOOD = [
    {"kind": "contact", "id": OTHER, "name": "Ana Souza", "phone": "+55", "email": "a@x.com", "tier": "free",
     "tags": ["vip"], "custom_fields": {"city": "Recife"}, "created_at": "2024-01-02T03:04:05Z"},
    {"kind": "entity", "id": "prod-1", "type": "product", "properties": {"name": "Cafeteira"}},
    {"kind": "edge", "from_id": OTHER, "to_id": "prod-1", "relationship": "purchased", "weight": 1.0,
     "created_at": "2024-02-01T00:00:00Z"},
    {"kind": "message", "id": "msg-1", "contact_id": OTHER, "content": "Oi!", "is_inbound": True,
     "channel": "whatsapp", "sent_at": "2024-02-02T10:00:00-03:00"},
    {"kind": "purchase", "id": "pur-1", "contact_id": OTHER, "product_id": "prod-1", "amount": 900.5,
     "currency": "BRL", "purchased_at": "2024-02-01T00:00:00Z"},
    {"kind": "memory", "contact_id": OTHER, "content": "Comprou a cafeteira", "memory_type": "purchase",
     "metadata": {"source": "import"}, "related": [{"entity_type": "product", "entity_id": "prod-1",
     "relationship": "purchased", "strength": 1.0}]},
    {"kind": "memory", "id": "770e8400-e29b-41d4-a716-4466554400aa", "contact_id": OTHER,
     "content": "Prefere café forte", "memory_type": "preference", "created_at": "2024-03-01T00:00:00Z"},
]  # fmt: skip
BAD = [
    "{not json",
    json.dumps({"kind": "planet", "id": "x"}),
    json.dumps({"kind": "memory", "contact_id": "nope", "content": "x", "memory_type": "fact"}),
    json.dumps(
        {"kind": "message", "id": "m", "contact_id": OTHER, "is_inbound": "yes", "sent_at": "2024-01-01"}
    ),
    json.dumps(
        {"kind": "purchase", "id": "p", "contact_id": OTHER, "amount": "10", "purchased_at": "2024-01-01"}
    ),
    json.dumps({"kind": "edge", "from_id": "a", "to_id": "b", "weight": 3}),
    "[1, 2]",
]


def test_import_every_kind_and_report_bad_lines(store: DuckDBStore, tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in GOOD[:3]] + BAD + [json.dumps(r) for r in GOOD[3:]]
    path = tmp_path / "crm.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    seen: list[int] = []
    report = import_jsonl(store, path, progress=seen.append, batch_size=2)
    assert [n for n, _ in report.errors] == list(range(4, 4 + len(BAD)))
    assert "invalid JSON" in report.errors[0][1] and "unknown kind" in report.errors[1][1]
    assert report.counts["memory"] == 2 and report.counts["purchase"] == 1 and report.counts["message"] == 1
    assert seen and seen[-1] == len(lines)
    ctx = store.contact_context(OTHER, history_limit=10, entity_types=frozenset(), include_graph=True)
    assert ctx is not None
    assert ctx.profile.name == "Ana Souza" and ctx.profile.custom_fields == {"city": "Recife"}
    assert ctx.stats.lifetime_value == 900.5 and ctx.stats.total_messages == 1
    assert ctx.graph is not None and {n.id for n in ctx.graph.nodes} == {OTHER, "prod-1"}
    found = store.search(SearchQuery(OTHER, "cafeteira", mode=SearchMode.KEYWORD))
    assert [s.memory.content for s in found.memories] == ["Comprou a cafeteira"]

    again = import_jsonl(store, path)
    assert again.counts["memory"] == 1  # the memory without an id is new each time; the other is skipped
    assert again.counts["message"] == 0 and again.counts["purchase"] == 0
    assert store.counts()["memories"] == 3


def test_demo_is_deterministic_and_has_the_spec_contact() -> None:
    assert list(demo_lines()) == list(demo_lines())
    records = demo_records()
    contacts = [r for r in records if r["kind"] == "contact"]
    assert len(contacts) == 50
    joao = next(r for r in contacts if r["id"] == JOAO_ID)
    assert joao["name"] == "João Silva" and joao["tier"] == "premium"
    memories = [r["content"] for r in records if r["kind"] == "memory" and r["contact_id"] == JOAO_ID]
    assert "Customer purchased product Y on 2024-09-15" in memories
    assert "Complained about delivery delay on 2024-09-18" in memories
    languages = {r["metadata"].get("language") for r in records if r["kind"] == "memory"}
    assert {"pt", "en"} <= languages
    assert list(demo_lines(seed=1)) != list(demo_lines())
