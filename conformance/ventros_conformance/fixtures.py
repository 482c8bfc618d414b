"""The fixture set: a small CRM data set a server loads before the fixture checks run.

The file is ``fixtures.jsonl`` beside this module (``fixtures_path()``): one JSON object per
line, each with a ``kind``. Every id starts with ``c0f0`` so it never collides with real data.

    {"kind":"contact","id":UUID,"name","phone","email","tier","tags":[],"custom_fields":{},"created_at":ISO8601}
    {"kind":"message","id","contact_id","content","is_inbound":bool,"channel","sent_at"}
    {"kind":"memory","id"(optional UUID),"contact_id","content","memory_type","metadata":{},
     "created_at"(optional),"related":[{"entity_type","entity_id","relationship","strength"}]}
    {"kind":"entity","id","type","properties":{}}
    {"kind":"edge","from_id","to_id","relationship","weight","created_at"}
    {"kind":"purchase","id","contact_id","product_id","amount":float,"currency","purchased_at"}

A server under test loads it however it likes (the reference server: ``ventros serve
--fixtures``); the checks only read it back through the public RPCs. What it holds:

* contact A (``CONTACT_A``): a full profile, 6 messages, 5 memories with related entities,
  3 purchases (400.00 BRL in all);
* contact B (``CONTACT_B``): a profile and nothing else;
* a chain of 7 entities ``CHAIN[0] -> ... -> CHAIN[6]`` (type "chain_link", weight 0.9), for
  max_depth;
* a hub (``HUB``, type "category") with 25 leaves (20 "product", 5 "ticket"), for the related
  entities' limit and target_types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

KINDS = ("contact", "message", "memory", "entity", "edge", "purchase")


def _uuid(prefix: str, n: int) -> str:
    return f"{prefix}-0000-4000-8000-{n:012d}"


CONTACT_A = _uuid("c0f0a000", 1)
CONTACT_B = _uuid("c0f0a000", 2)
CHAIN = tuple(_uuid("c0f0c000", i) for i in range(7))
HUB = _uuid("c0f0f000", 0)
HUB_LEAVES = tuple(_uuid("c0f0f000", i) for i in range(1, 26))


def fixtures_path() -> Path:
    """Where the shipped fixtures.jsonl is (inside the installed package)."""
    return Path(__file__).resolve().parent / "fixtures.jsonl"


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class FixtureSet:
    records: tuple[dict[str, Any], ...]

    def of(self, kind: str, **where: Any) -> list[dict[str, Any]]:
        return [r for r in self.records if r["kind"] == kind and all(r.get(k) == v for k, v in where.items())]

    def contact(self, contact_id: str) -> dict[str, Any]:
        return self.of("contact", id=contact_id)[0]

    def messages(self, contact_id: str) -> list[dict[str, Any]]:
        """Newest first, as GetContactContext returns them."""
        return sorted(
            self.of("message", contact_id=contact_id), key=lambda r: parse_time(r["sent_at"]), reverse=True
        )

    def memories(self, contact_id: str) -> list[dict[str, Any]]:
        """Newest first."""
        return sorted(
            self.of("memory", contact_id=contact_id), key=lambda r: parse_time(r["created_at"]), reverse=True
        )

    def purchases(self, contact_id: str) -> list[dict[str, Any]]:
        return self.of("purchase", contact_id=contact_id)

    def entity(self, entity_id: str) -> dict[str, Any]:
        return self.of("entity", id=entity_id)[0]


def validate_record(record: dict[str, Any]) -> None:
    """Raise ValueError unless ``record`` is a well-formed fixture line (used by the tests)."""
    kind = record.get("kind")
    required = {
        "contact": ("id", "name", "phone", "email", "tier", "tags", "custom_fields", "created_at"),
        "message": ("id", "contact_id", "content", "is_inbound", "channel", "sent_at"),
        "memory": ("contact_id", "content", "memory_type", "metadata", "related"),
        "entity": ("id", "type", "properties"),
        "edge": ("from_id", "to_id", "relationship", "weight", "created_at"),
        "purchase": ("id", "contact_id", "product_id", "amount", "currency", "purchased_at"),
    }
    if kind not in required:
        raise ValueError(f"unknown kind {kind!r}")
    missing = [k for k in required[kind] if k not in record]
    if missing:
        raise ValueError(f"{kind} record lacks {missing}")
    for key in ("created_at", "sent_at", "purchased_at"):
        if key in record:
            parse_time(record[key])


@cache
def load(path: str | None = None) -> FixtureSet:
    source = Path(path) if path else fixtures_path()
    records = []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        try:
            validate_record(record)
        except ValueError as exc:
            raise ValueError(f"{source}:{number}: {exc}") from exc
        records.append(record)
    return FixtureSet(tuple(records))
