"""Bulk JSONL import: one JSON object per line, its ``kind`` says what it is.

    {"kind":"contact","id":UUID,"name","phone","email","tier","tags":[],"custom_fields":{},"created_at":ISO8601}
    {"kind":"message","id","contact_id","content","is_inbound":bool,"channel","sent_at"}
    {"kind":"memory","id"(optional UUID),"contact_id","content","memory_type","metadata":{},
     "created_at"(optional),"related":[{"entity_type","entity_id","relationship","strength"}]}
    {"kind":"entity","id","type","properties":{}}
    {"kind":"edge","from_id","to_id","relationship","weight","created_at"}
    {"kind":"purchase","id","contact_id","product_id","amount":float,"currency","purchased_at"}

Records are buffered per kind and written in batches, memories embedded a batch at a time.
The DuckDB store commits a bulk load in groups of about a million memories
(``DuckDBStore.bulk_load``): an import stopped by an error keeps only the groups committed
before it, so a file of up to that many memories goes in whole or not at all. A bad line is
skipped and reported with its line number and the reason; the rest of the file is imported. Records with an id the store already has are skipped,
so importing the same file twice does not duplicate anything.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, islice
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np

from ..heap import release_free_heap
from ..validation import is_uuid
from .batch import NO_TIME, MemoryBatch, MemoryBatchBuilder, embed_batch, from_micros, micros
from .embedders.offline import OfflineEmbedder
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

log = logging.getLogger("ventros.memory.importer")

BATCH = 20_000
#: Lines parsed per chunk (a unit of work of the worker process).
CHUNK_LINES = 20_000


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


# -- memories, the bulk of a file: a fast path -----------------------------------------------

_CACHE_MAX = 100_000
#: Values already checked (contact ids to their lower-case form, memory types): a contact has
#: many memories, and a set lookup is ~5x cheaper than the regex.
_checked_contacts: dict[str, str] = {}
_checked_types: set[str] = set()


def _memory_row(record: dict[str, Any], builder: MemoryBatchBuilder) -> bool:
    """Add a memory record to ``builder`` if it is plainly valid (exact types, no oddity) and
    return True; return False for anything else, which _parse then judges (and words the error
    of) exactly as for any other record. The values added are the ones _parse would produce."""
    content, memory_type, contact = record.get("content"), record.get("memory_type"), record.get("contact_id")
    if type(content) is not str or type(memory_type) is not str or type(contact) is not str:
        return False
    if not content.strip():
        return False
    if memory_type not in _checked_types:
        if not memory_type or not SNAKE_RE.match(memory_type):
            return False
        _remember(_checked_types, memory_type)
    contact_id = _checked_contacts.get(contact)
    if contact_id is None:
        if not is_uuid(contact):
            return False
        contact_id = contact.lower()
        if len(_checked_contacts) >= _CACHE_MAX:
            _checked_contacts.clear()
        _checked_contacts[contact] = contact_id
    memory_id = record.get("id")
    if memory_id is not None and memory_id != "":
        if type(memory_id) is not str or not is_uuid(memory_id):
            return False
        memory_id = memory_id.lower()
    else:
        memory_id = None
    created = _memory_time(record.get("created_at"))
    if created is None:
        return False
    metadata = record.get("metadata")
    if not metadata:
        metadata_json = "{}"
    elif type(metadata) is dict:
        metadata_json = json.dumps(_map(record, "metadata"), ensure_ascii=False)
    else:
        return False
    related = record.get("related")
    if related is None or related == []:
        refs: list[RelatedRef] = []
    elif type(related) is list:
        try:
            refs = _related(related)
        except BadRecord:
            return False
    else:
        return False
    builder.add(memory_id, contact_id, content, memory_type, metadata_json, created, refs)
    return True


def _remember(cache: set[str], value: str) -> None:
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache.add(value)


def _memory_time(value: Any) -> int | None:
    """created_at as microseconds (NO_TIME when absent), or None when _parse must judge it."""
    if value is None or value == "":
        return NO_TIME
    if type(value) is not str:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return micros(parsed)


# -- chunks of lines, parsed here or in a worker process ------------------------------------


@dataclass
class _Parsed:
    """What one chunk of lines holds: records by kind, memories as a batch, rejected lines."""

    items: dict[str, list[Any]]
    memories: MemoryBatch | None
    errors: list[tuple[int, str]]
    last_line: int
    chars: int  # characters in the chunk's lines (the importer's size estimate uses it)
    #: From the worker: the memories' vectors are in a shared memory block (see _to_shared):
    #: (its name, rows, dim).
    shared: tuple[str, int, int] | None = None


_embedders: dict[int, OfflineEmbedder] = {}


def _parse_chunk(first_line: int, lines: list[str], embed_dim: int | None) -> _Parsed:
    """Parse and validate a chunk (line numbers from ``first_line``); with ``embed_dim``, also
    embed its memories with the offline embedder of that dimension (in a worker process, this
    is the work taken off the process that writes)."""
    items: dict[str, list[Any]] = {}
    builder = MemoryBatchBuilder()
    errors: list[tuple[int, str]] = []
    loads = json.loads
    line_no = first_line - 1
    for line_no, line in enumerate(lines, start=first_line):
        try:
            record = loads(line)
        except ValueError as exc:
            if line.strip():
                errors.append((line_no, f"invalid JSON: {exc}"))
            continue
        if type(record) is dict and record.get("kind") == "memory" and _memory_row(record, builder):
            continue
        try:
            if not isinstance(record, dict):
                raise BadRecord("a line must be a JSON object")
            kind, item = _parse(record)
        except (ValueError, BadRecord) as exc:
            errors.append((line_no, str(exc) if isinstance(exc, BadRecord) else f"invalid JSON: {exc}"))
            continue
        if kind == "memory":
            builder.add(
                item.id, item.contact_id, item.content, item.memory_type,
                json.dumps(item.metadata, ensure_ascii=False),
                NO_TIME if item.created_at is None else micros(item.created_at), item.related,
            )  # fmt: skip
        else:
            items.setdefault(kind, []).append(item)
    memories = builder.build() if len(builder) else None
    if memories is not None and embed_dim is not None:
        embedder = _embedders.get(embed_dim) or _embedders.setdefault(embed_dim, OfflineEmbedder(embed_dim))
        embed_batch(memories, embedder)
    return _Parsed(items, memories, errors, line_no, sum(map(len, lines)))


def _chunks(source: str | Path | Iterable[str], size: int) -> Iterator[tuple[int, list[str]]]:
    """(number of the first line, lines) for each ``size`` lines of the source."""
    if isinstance(source, str | Path):
        with open(source, encoding="utf-8") as handle:
            yield from _chunks(handle, size)
        return
    lines = iter(source)
    first = 1
    while chunk := list(islice(lines, size)):
        yield first, chunk
        first += len(chunk)


def _worker_chunk(first_line: int, lines: list[str], embed_dim: int | None) -> _Parsed:
    """_parse_chunk in the worker process, its vectors handed over in shared memory."""
    parsed = _parse_chunk(first_line, lines, embed_dim)
    _to_shared(parsed)
    return parsed


def _to_shared(parsed: _Parsed) -> None:
    """Move a parsed chunk's vectors into a new shared memory block, which the importing process
    maps, copies and unlinks (_from_shared). Pickled through the pool's pipe they were ~30 MB
    per 20k memories, received by a thread of the importing process competing with the writes
    (~1.7 s per 200k, with their base64 then). The block stays registered with
    multiprocessing's resource tracker (shared by both processes), which unlinks it if the
    importing process never does."""
    batch = parsed.memories
    if batch is None or batch.vectors is None or not batch.vectors.size:
        return
    rows = np.ascontiguousarray(batch.vectors, dtype=np.float32)
    block = shared_memory.SharedMemory(create=True, size=rows.nbytes)
    try:
        assert block.buf is not None
        np.ndarray(rows.shape, np.float32, buffer=block.buf)[:] = rows
    except BaseException:
        block.close()
        block.unlink()
        raise
    block.close()
    parsed.shared = (block.name, rows.shape[0], rows.shape[1])
    batch.vectors = None


def _from_shared(parsed: _Parsed) -> _Parsed:
    """The chunk with its vectors back from shared memory (the block is unlinked)."""
    if parsed.shared is None:
        return parsed
    name, count, dim = parsed.shared
    parsed.shared = None
    block = shared_memory.SharedMemory(name=name)
    try:
        assert block.buf is not None and parsed.memories is not None
        parsed.memories.vectors = np.frombuffer(block.buf, np.float32, count * dim).reshape(count, dim).copy()
    finally:
        block.close()
        block.unlink()
    return parsed


def _release(future: Future[_Parsed]) -> None:
    """Unlink the shared memory of a worker's chunk that will not be read (import stopped)."""
    if future.cancel() or future.exception() is not None:
        return
    with contextlib.suppress(OSError):
        shared = future.result().shared
        if shared is not None:
            block = shared_memory.SharedMemory(name=shared[0])
            block.close()
            block.unlink()


_WORKER_DIED = "the import's worker process died; parsing the rest of the file in this process (slower)."


@contextlib.contextmanager
def _main_module_not_inherited() -> Iterator[None]:
    """While a *spawn* worker starts: a spawned child runs the parent's main module first (as
    ``__mp_main__``), found from ``__main__.__spec__`` or ``__main__.__file__``. The worker runs
    only this module's functions, so that was start-up time for nothing (the CLI's or a
    benchmark's imports: ~0.4 s, during which this process parsed a chunk the worker would
    have: py-spy), and it is why a script calling import_jsonl needed an
    ``if __name__ == "__main__":`` guard. Hidden from the child, both are gone."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved: dict[str, Any] = {n: main.__dict__[n] for n in ("__spec__", "__file__") if n in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _parsed_chunks(
    chunks: Iterator[tuple[int, list[str]]], embed_dim: int | None, parallel: bool, depth: int = 2
) -> Iterator[_Parsed]:
    """The chunks parsed, in order. With ``parallel`` and more than one chunk, a worker process
    parses (and embeds) chunks, up to ``depth`` ahead of the writes, while this process writes
    the previous ones (DuckDB, the search indexes); the machine has a second core. Whenever
    the chunk due next is not ready, this process parses the next unsubmitted chunk itself
    instead of waiting (at most ``depth`` held): the two halves of an import take about the
    same time, and whichever is slower at a moment gets help from the other."""
    first = next(chunks, None)
    if first is None:
        return
    second = next(chunks, None)
    if second is None or not parallel:
        for chunk in chain([first], [] if second is None else [second], chunks):
            yield _parse_chunk(*chunk, embed_dim)
        return
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        # File order; each entry is a chunk sent to the worker (a future) or parsed here.
        ahead: deque[tuple[tuple[int, list[str]], Future[_Parsed] | None, _Parsed | None]] = deque()

        def submit(chunk: tuple[int, list[str]]) -> None:
            ahead.append((chunk, pool.submit(_worker_chunk, *chunk, embed_dim), None))

        try:
            with _main_module_not_inherited():  # the worker process starts here
                submit(second)
            for chunk in islice(chunks, max(depth - 1, 0)):
                submit(chunk)
            yield _parse_chunk(*first, embed_dim)  # here, while the worker starts
            yield from _collect(ahead, submit, chunks, embed_dim, depth)
        finally:
            for _, future, _ in ahead:
                if future is not None:
                    _release(future)


def _collect(
    ahead: deque[tuple[tuple[int, list[str]], Future[_Parsed] | None, _Parsed | None]],
    submit: Callable[[tuple[int, list[str]]], None],
    chunks: Iterator[tuple[int, list[str]]],
    embed_dim: int | None,
    depth: int,
) -> Iterator[_Parsed]:
    """_parsed_chunks' loop: the chunks in ``ahead`` in order, helping the worker when it lags."""
    while ahead:
        chunk, future, parsed = ahead[0]
        waiting = future is not None and not future.done()
        if waiting and sum(p is not None for _, _, p in ahead) < depth and (spare := next(chunks, None)):
            ahead.append((spare, None, _parse_chunk(*spare, embed_dim)))
            continue
        ahead.popleft()
        if future is not None:
            try:
                parsed = _from_shared(future.result())
            except BrokenProcessPool:
                log.warning(_WORKER_DIED)
                for rest, _, done in chain([(chunk, None, None)], ahead):
                    yield done if done is not None else _parse_chunk(*rest, embed_dim)
                for rest in chunks:
                    yield _parse_chunk(*rest, embed_dim)
                return
            if (following := next(chunks, None)) is not None:
                submit(following)
        assert parsed is not None
        yield parsed


def import_jsonl(
    store: MemoryStore,
    source: str | Path | Iterable[str],
    *,
    progress: Callable[[int], None] | None = None,
    batch_size: int = BATCH,
    parallel: bool = True,
) -> ImportReport:
    """Import a JSONL file (a path) or any iterable of lines; ``progress(lines_read)`` is called
    after each chunk of ``batch_size`` lines is written. ``parallel``: parse and embed in a
    worker process when there is more than one chunk (see _parsed_chunks)."""
    try:
        return _import(store, source, progress, batch_size, parallel)
    finally:
        # The chunks, batches and worker results are all freed by now, but glibc keeps their
        # pages: a server that imported 200k memories at start held ~200 MiB more than one
        # that opened the same file (measured: +664 MiB after the import, +467 after this,
        # +376 for a plain open).
        release_free_heap()


def _import(
    store: MemoryStore,
    source: str | Path | Iterable[str],
    progress: Callable[[int], None] | None,
    batch_size: int,
    parallel: bool,
) -> ImportReport:
    started = time.perf_counter()
    writers: dict[str, Callable[[list[Any]], int]] = {
        "contact": store.add_contacts,
        "entity": store.add_entities,
        "edge": store.add_edges,
        "message": store.add_messages,
        "purchase": store.add_purchases,
    }
    pending: dict[str, list[Any]] = {kind: [] for kind in writers}
    pending_memories: list[MemoryBatch] = []
    counts = dict.fromkeys([*writers, "memory"], 0)
    errors: list[tuple[int, str]] = []
    line_no = 0
    add_batch = getattr(store, "add_memory_batch", None)

    def write_memories() -> None:
        if pending_memories:
            batch = MemoryBatch.concat(pending_memories)
            pending_memories.clear()
            counts["memory"] += add_batch(batch) if add_batch else store.add_memories(_new_memories(batch))

    def flush(kind: str) -> None:
        if pending[kind]:
            counts[kind] += writers[kind](pending[kind])
            pending[kind] = []

    # Vectors can be made in the worker only by an embedder it can rebuild: the offline one.
    embedder = getattr(store, "embedder", None)
    embed_dim = embedder.dim if type(embedder) is OfflineEmbedder else None
    bulk = getattr(store, "bulk_load", None)
    with bulk() if bulk is not None else contextlib.nullcontext():
        chunk_lines = min(batch_size, CHUNK_LINES)
        depth = batch_size // chunk_lines + 1
        for parsed in _parsed_chunks(_chunks(source, chunk_lines), embed_dim, parallel, depth):
            if line_no == 0:
                _reserve(store, source, parsed)
            errors.extend(parsed.errors)
            line_no = parsed.last_line
            for kind, items in parsed.items.items():
                pending[kind].extend(items)
                if len(pending[kind]) >= batch_size:
                    flush(kind)
            if parsed.memories is not None:
                pending_memories.append(parsed.memories)
                if sum(len(b) for b in pending_memories) >= batch_size:
                    write_memories()
            if progress:
                progress(line_no)
        for kind in writers:  # contacts and entities first: they are what the rest refers to
            flush(kind)
        write_memories()
    # The DuckDB store's bulk_load folded its search indexes (an object per contact written
    # since open) into shared arrays at its end; a store without bulk_load is asked here (the
    # MemoryStore Protocol does not require it).
    compact = getattr(store, "compact_indexes", None)
    if compact is not None and bulk is None:
        compact()
    if progress:
        progress(line_no)
    return ImportReport(counts=counts, errors=errors, seconds=time.perf_counter() - started)


def _reserve(store: MemoryStore, source: str | Path | Iterable[str], first: _Parsed) -> None:
    """Tell the store how many memories a file holds, estimated from its size and its first
    chunk, so its vector matrix is sized once instead of copied as it grows (0.7 s of a
    200k-memory import). An overestimate costs address space only (vectors.reserve)."""
    reserve = getattr(store, "reserve_memories", None)
    if reserve is None or not isinstance(source, str | Path) or not first.chars or first.memories is None:
        return
    # Characters, not bytes, per line: the estimate errs high on non-ASCII text, never low.
    reserve(int(os.path.getsize(source) * len(first.memories) / first.chars))


def _new_memories(batch: MemoryBatch) -> list[NewMemory]:
    """A batch back as NewMemory objects, for a store without add_memory_batch."""
    return [
        NewMemory(
            contact_id=c, content=t, memory_type=m, metadata=json.loads(meta), related=refs,
            id=i if given else None, created_at=None if us == NO_TIME else from_micros(us),
        )
        for i, given, c, t, m, meta, us, refs in zip(
            batch.ids, batch.given_id.tolist(), batch.contact_ids, batch.contents, batch.memory_types,
            batch.metadata, batch.created_us.tolist(), batch.related(), strict=True,
        )
    ]  # fmt: skip
