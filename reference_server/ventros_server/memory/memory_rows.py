"""The memory rows a search returns, in memory (derived state, like contact_index.py).

A search ends by fetching its (at most ``limit``) best memories. From DuckDB that was the largest
single cost of a search: 1-3.6 ms for 10 rows by rowid at 100k memories, more than scoring them
(benchmarks/memory_search.py --in-process, docs/memory.md "Search at scale"). Here the columns a
result carries (id, contact, content, type, metadata, creation time) are kept by seq, so fetching
a page costs microseconds.

Strings are stored as one UTF-8 buffer plus end offsets per column (no Python object per row);
contacts and memory types as int32 codes. About 20 bytes per memory plus the text itself
(~190 MB at 1M memories of ~110 bytes). The embedding is not here: it is in vectors.py.

Life cycle as the other derived indexes: loaded at open from one ordered scan per 200k seqs,
appended to after each committed write under the store's lock (so a memory is returned as
soon as StoreMemory acknowledged it), never written to disk. Rows are only ever appended and
never updated (re-embedding changes only the embedding), so this can never be stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np

from .contact_index import _Codes, _Growable

#: One load query per this many seqs: bounds the Python strings alive at once while opening.
_LOAD_CHUNK = 200_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: (seq, id, contact_id, content, memory_type, metadata JSON or None, created_at), the shape
#: DuckDBStore._memories_by_seq reads.
Row = tuple[int, str, str, str, str, str | None, datetime]


class _Strings:
    """A column of strings: their UTF-8 bytes end to end, and where each ends."""

    __slots__ = ("_bytes", "_ends")

    def __init__(self) -> None:
        self._bytes = _Growable(np.empty(0, np.uint8))
        self._ends = _Growable(np.empty(0, np.int64))

    def extend(self, values: Sequence[str]) -> None:
        encoded = [value.encode() for value in values]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        last = int(self._ends.rows[-1]) if self._ends.size else 0
        self._ends.extend(last + np.cumsum(lengths))
        self._bytes.extend(np.frombuffer(b"".join(encoded), dtype=np.uint8))

    def __getitem__(self, i: int) -> str:
        ends = self._ends.rows
        start = int(ends[i - 1]) if i else 0
        return self._bytes.rows[start : int(ends[i])].tobytes().decode()

    def many(self, positions: np.ndarray) -> list[str]:
        """``[self[i] for i in positions]``, decoded from one memoryview (no array view per string)."""
        ends = self._ends.rows
        data = self._bytes.rows.data
        return [str(data[int(ends[i - 1]) if i else 0 : int(ends[i])], "utf-8") for i in positions.tolist()]

    def nbytes(self) -> int:
        return self._bytes.rows.nbytes + self._ends.rows.nbytes


class MemoryRows:
    def __init__(self) -> None:
        self._seqs = _Growable(np.empty(0, np.int64))
        self._ids = _Strings()
        self._contents = _Strings()
        self._metadata = _Strings()  # JSON text; "" for NULL
        self._created = _Growable(np.empty(0, np.int64))  # microseconds since the epoch, UTC
        self._contacts = _Codes()
        self._contact_codes = _Growable(np.empty(0, np.int32))
        self._types = _Codes()
        self._type_codes = _Growable(np.empty(0, np.int32))

    def __len__(self) -> int:
        return self._seqs.size

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        top = con.execute("SELECT max(seq) FROM memories").fetchone()
        if not top or top[0] is None:
            return
        for start in range(0, int(top[0]) + 1, _LOAD_CHUNK):
            columns = con.execute(
                """SELECT seq, id, contact_id, content, memory_type, coalesce(metadata, ''),
                          epoch_us(created_at)
                   FROM memories WHERE seq >= ? AND seq < ? ORDER BY seq""",
                [start, start + _LOAD_CHUNK],
            ).fetchnumpy()
            seq, ids, contacts, contents, types, metadata, created = columns.values()
            self.add(
                seq, ids.tolist(), contacts.tolist(), contents.tolist(), types.tolist(), metadata.tolist(),
                created,
            )  # fmt: skip

    def add(
        self,
        seqs: np.ndarray,
        ids: Sequence[str],
        contacts: Sequence[str],
        contents: Sequence[str],
        types: Sequence[str],
        metadata: Sequence[str],
        created_us: Sequence[int] | np.ndarray,
    ) -> None:
        """Rows just committed, as columns (metadata as JSON text, "" for none; creation times
        in microseconds since the epoch, UTC), seqs ascending and above every seq held."""
        seqs = np.asarray(seqs, dtype=np.int64)
        if len(seqs) == 0:
            return
        if self._seqs.size and seqs[0] <= self._seqs.rows[-1]:
            raise ValueError("memory rows must be appended in increasing seq order")
        self._seqs.extend(seqs)
        self._ids.extend(ids)
        self._contents.extend(contents)
        self._metadata.extend(metadata)
        self._created.extend(np.asarray(created_us, dtype=np.int64))
        self._contact_codes.extend(self._contacts.encode(contacts))
        self._type_codes.extend(self._types.encode(types))

    def fetch(self, seqs: Sequence[int]) -> list[Row]:
        """The rows with these seqs (those not held are left out)."""
        held = self._seqs.rows
        wanted = np.asarray(seqs, dtype=np.int64)
        positions = np.minimum(np.searchsorted(held, wanted), max(len(held) - 1, 0))
        rows: list[Row] = []
        if len(held) == 0:
            return rows
        positions = positions[held[positions] == wanted]
        contacts, types = self._contacts.names, self._types.names
        # Every column gathered for all rows at once: numpy scalars one by one cost more.
        for seq, mid, contact, content, kind, metadata, created in zip(
            held[positions].tolist(),
            self._ids.many(positions),
            self._contact_codes.rows[positions].tolist(),
            self._contents.many(positions),
            self._type_codes.rows[positions].tolist(),
            self._metadata.many(positions),
            self._created.rows[positions].tolist(),
            strict=True,
        ):
            rows.append(
                (
                    seq,
                    mid,
                    contacts[contact],
                    content,
                    types[kind],
                    metadata or None,
                    _EPOCH + timedelta(microseconds=created),
                )
            )
        return rows

    def contents(self, seqs: np.ndarray) -> list[str]:
        """The content of each of these seqs, all held (what the store embeds at open)."""
        held = self._seqs.rows
        positions = np.searchsorted(held, seqs)
        if len(seqs) and (positions.max() >= len(held) or not np.array_equal(held[positions], seqs)):
            raise KeyError("memory rows do not hold every seq asked for")
        return self._contents.many(positions)

    def nbytes(self) -> int:
        arrays = (self._seqs, self._created, self._contact_codes, self._type_codes)
        strings = (self._ids, self._contents, self._metadata)
        return sum(a.rows.nbytes for a in arrays) + sum(s.nbytes() for s in strings)
