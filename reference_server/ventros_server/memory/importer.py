"""Bulk JSONL import: one JSON object per line, its ``kind`` says what it is.

    {"kind":"contact","id":UUID,"name","phone","email","tier","tags":[],"custom_fields":{},"created_at":ISO8601}
    {"kind":"message","id","contact_id","content","is_inbound":bool,"channel","sent_at"}
    {"kind":"memory","id"(optional UUID),"contact_id","content","memory_type","metadata":{},
     "created_at"(optional),"related":[{"entity_type","entity_id","relationship","strength"}]}
    {"kind":"entity","id","type","properties":{}}
    {"kind":"edge","from_id","to_id","relationship","weight","created_at"}
    {"kind":"purchase","id","contact_id","product_id","amount":float,"currency","purchased_at"}

Records are buffered per kind and written in batches (one transaction per batch), memories
embedded a batch at a time. A bad line is skipped and reported with its line number and the
reason; the rest of the file is imported. Records with an id the store already has are skipped,
so importing the same file twice does not duplicate anything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..validation import is_uuid
from .store import (
    Contact,
    EdgeRecord,
    Entity,
    ImportReport,
    MemoryStore,
    MessageRecord,
    NewMemory,
    Purchase,
    RelatedRef,
)
from .validation import ENTITY_ID_RE, SNAKE_RE

BATCH = 20_000


class BadRecord(ValueError):
    pass


def _str(record: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = record.get(key)
    if value is None or value == "":
        if required:
            raise BadRecord(f"missing {key!r}")
        return ""
    if not isinstance(value, str):
        raise BadRecord(f"{key!r} must be a string")
    return value


def _uuid(record: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = _str(record, key, required=required)
    if value and not is_uuid(value):
        raise BadRecord(f"{key!r} is not a UUID: {value[:64]!r}")
    return value.lower()


def _time(record: dict[str, Any], key: str, *, required: bool = True) -> datetime | None:
    value = _str(record, key, required=required)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRecord(f"{key!r} is not an ISO 8601 time: {value[:40]!r}") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _map(record: dict[str, Any], key: str) -> dict[str, str]:
    value = record.get(key) or {}
    if not isinstance(value, dict):
        raise BadRecord(f"{key!r} must be an object")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _unit_float(value: Any, key: str, default: float = 1.0) -> float:
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
        raise BadRecord(f"{key!r} must be a number in [0, 1]")
    return float(value) or default


def _related(items: Any) -> list[RelatedRef]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise BadRecord("'related' must be a list")
    refs = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRecord(f"related[{i}] must be an object")
        etype, eid = _str(item, "entity_type"), _str(item, "entity_id")
        relationship = _str(item, "relationship", required=False) or "mentioned"
        if not SNAKE_RE.match(etype) or not SNAKE_RE.match(relationship):
            raise BadRecord(f"related[{i}]: entity_type and relationship must be lower_snake_case")
        if not ENTITY_ID_RE.match(eid) or len(eid.encode()) > 128:
            raise BadRecord(f"related[{i}].entity_id must be at most 128 bytes of [A-Za-z0-9_.:-]")
        refs.append(
            RelatedRef(etype, eid, relationship, _unit_float(item.get("strength"), f"related[{i}].strength"))
        )
    return refs


def _parse(record: dict[str, Any]) -> tuple[str, Any]:
    kind = record.get("kind")
    if kind == "contact":
        tags = record.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise BadRecord("'tags' must be a list of strings")
        return kind, Contact(
            id=_uuid(record, "id"),
            name=_str(record, "name", required=False),
            phone=_str(record, "phone", required=False),
            email=_str(record, "email", required=False),
            tier=_str(record, "tier", required=False),
            tags=tags,
            custom_fields=_map(record, "custom_fields"),
            created_at=_time(record, "created_at", required=False),
        )
    if kind == "message":
        inbound = record.get("is_inbound")
        if not isinstance(inbound, bool):
            raise BadRecord("'is_inbound' must be true or false")
        return kind, MessageRecord(
            id=_str(record, "id"),
            contact_id=_uuid(record, "contact_id"),
            content=_str(record, "content", required=False),
            is_inbound=inbound,
            channel=_str(record, "channel", required=False),
            sent_at=_time(record, "sent_at"),  # type: ignore[arg-type]
        )
    if kind == "memory":
        content = _str(record, "content")
        if not content.strip():
            raise BadRecord("'content' is blank")
        memory_type = _str(record, "memory_type")
        if not SNAKE_RE.match(memory_type):
            raise BadRecord("'memory_type' must be lower_snake_case")
        return kind, NewMemory(
            contact_id=_uuid(record, "contact_id"),
            content=content,
            memory_type=memory_type,
            metadata=_map(record, "metadata"),
            related=_related(record.get("related")),
            id=_uuid(record, "id", required=False) or None,
            created_at=_time(record, "created_at", required=False),
        )
    if kind == "entity":
        return kind, Entity(
            id=_str(record, "id"), type=_str(record, "type"), properties=_map(record, "properties")
        )
    if kind == "edge":
        return kind, EdgeRecord(
            from_id=_str(record, "from_id"),
            to_id=_str(record, "to_id"),
            relationship=_str(record, "relationship", required=False) or "related_to",
            weight=_unit_float(record.get("weight"), "weight"),
            created_at=_time(record, "created_at", required=False),
        )
    if kind == "purchase":
        amount = record.get("amount")
        if not isinstance(amount, int | float) or isinstance(amount, bool):
            raise BadRecord("'amount' must be a number")
        return kind, Purchase(
            id=_str(record, "id"),
            contact_id=_uuid(record, "contact_id"),
            product_id=_str(record, "product_id", required=False),
            amount=float(amount),
            currency=_str(record, "currency", required=False) or "BRL",
            purchased_at=_time(record, "purchased_at"),  # type: ignore[arg-type]
        )
    raise BadRecord(f"unknown kind {kind!r}; expected contact, message, memory, entity, edge or purchase")


def _lines(source: str | Path | Iterable[str]) -> Iterator[str]:
    if isinstance(source, str | Path):
        with open(source, encoding="utf-8") as handle:
            yield from handle
    else:
        yield from source


def import_jsonl(
    store: MemoryStore,
    source: str | Path | Iterable[str],
    *,
    progress: Callable[[int], None] | None = None,
    batch_size: int = BATCH,
) -> ImportReport:
    """Import a JSONL file (a path) or any iterable of lines; ``progress(lines_read)`` is called
    after each batch is written."""
    started = time.perf_counter()
    writers: dict[str, Callable[[list[Any]], int]] = {
        "contact": store.add_contacts,
        "entity": store.add_entities,
        "edge": store.add_edges,
        "message": store.add_messages,
        "purchase": store.add_purchases,
        "memory": store.add_memories,
    }
    pending: dict[str, list[Any]] = {kind: [] for kind in writers}
    counts = dict.fromkeys(writers, 0)
    errors: list[tuple[int, str]] = []
    line_no = 0

    def flush(kind: str) -> None:
        if pending[kind]:
            counts[kind] += writers[kind](pending[kind])
            pending[kind] = []

    for line_no, line in enumerate(_lines(source), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise BadRecord("a line must be a JSON object")
            kind, item = _parse(record)
        except (ValueError, BadRecord) as exc:
            errors.append((line_no, str(exc) if isinstance(exc, BadRecord) else f"invalid JSON: {exc}"))
            continue
        pending[kind].append(item)
        if len(pending[kind]) >= batch_size:
            flush(kind)
            if progress:
                progress(line_no)
    for kind in writers:  # contacts and entities first: they are what the rest refers to
        flush(kind)
    # The DuckDB store's search indexes hold an object per contact written since open; fold
    # them into shared arrays now that the bulk of writes is done (the MemoryStore Protocol
    # does not require it of other stores).
    compact = getattr(store, "compact_indexes", None)
    if compact is not None:
        compact()
    if progress:
        progress(line_no)
    return ImportReport(counts=counts, errors=errors, seconds=time.perf_counter() - started)
