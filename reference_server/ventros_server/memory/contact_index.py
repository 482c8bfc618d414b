"""Per-contact search state, derived from DuckDB (like vectors.py): what a search reads.

Every search is scoped to one contact, but the tables are not: finding a contact's memories,
their keyword postings and their entity links in DuckDB is a scan of the whole table (no index
on contact_id; ~15 postings per memory), so a search cost grew with the corpus (88 ms p50 for
HYBRID at 300k memories). This index keeps, per contact, exactly what scoring needs:

* ``memories``: seq, keyword-document length, memory-type code (insertion order = seq order);
* ``postings``: (term hash, position of the memory in ``memories``, tf), the contact's share of
  the postings table;
* ``links``: (position, entity, entity type, relationship, strength), its memory_links rows.

Strings (memory types, entity ids and types, relationships) are interned to int32 codes. The
arrays are numpy structured arrays: ~16 bytes per memory, 16 per posting, 20 per link.

Life cycle: built at open from three bulk scans (ordered by contact, fetched as numpy; no Python
loop per row), then appended to after each committed write, under the store's lock, so a memory
is searchable as soon as StoreMemory returns. DuckDB stays the source of truth; nothing here is
ever written to disk. At open, each contact's arrays are views into three big arrays; the first
append to a contact copies its rows into arrays of its own that grow by doubling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np

from .store import RelatedRef

#: A committed batch of at least this many memories is added as a segment (ContactIndex.add).
_SEGMENT_MIN = 1_000
#: More segments than this are folded into the shared arrays (a read joins one part per segment).
_SEGMENTS_MAX = 16

MEMORY = np.dtype([("seq", "<i8"), ("doc_len", "<i4"), ("type", "<i4")])
POSTING = np.dtype([("term", "<i8"), ("pos", "<i4"), ("tf", "<i4")])
LINK = np.dtype([("pos", "<i4"), ("entity", "<i4"), ("etype", "<i4"), ("rel", "<i4"), ("strength", "<f4")])


class _Codes:
    """Strings interned to dense int codes (a code never changes once given)."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        self.names: list[str] = list(names)
        self.code = {name: i for i, name in enumerate(self.names)}

    def get(self, name: str) -> int:
        code = self.code.get(name)
        if code is None:
            code = self.code[name] = len(self.names)
            self.names.append(name)
        return code

    def encode(self, names: Sequence[str]) -> np.ndarray:
        return np.fromiter((self.get(n) for n in names), dtype=np.int32, count=len(names))

    def known(self, names: Sequence[str]) -> np.ndarray:
        """Codes of ``names`` without giving new ones: -1 for a name that has none."""
        code = self.code
        return np.fromiter((code.get(n, -1) for n in names), dtype=np.int32, count=len(names))


class _Growable:
    """A structured array that grows by doubling; ``rows`` is the live prefix."""

    __slots__ = ("_data", "size")

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.size = len(data)

    @property
    def rows(self) -> np.ndarray:
        return self._data[: self.size]

    def extend(self, rows: np.ndarray) -> None:
        needed = self.size + len(rows)
        if needed > len(self._data):
            # Also the first append to a view into the bulk arrays: it gets its own copy.
            data = np.empty(max(needed, 2 * len(self._data), 4), dtype=self._data.dtype)
            data[: self.size] = self._data[: self.size]
            self._data = data
        self._data[self.size : needed] = rows
        self.size = needed


class _Contact:
    """A contact written to since the index was built or compacted: arrays of its own."""

    __slots__ = ("links", "memories", "postings")

    def __init__(self, memories: np.ndarray, postings: np.ndarray, links: np.ndarray) -> None:
        self.memories = _Growable(memories)
        self.postings = _Growable(postings)
        self.links = _Growable(links)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.memories.rows, self.postings.rows, self.links.rows

    def arrays_growable(self) -> tuple[_Growable, _Growable, _Growable]:
        return self.memories, self.postings, self.links


class _Base:
    """Every contact's rows in three arrays ordered by contact, with offsets (CSR), and a dict
    contact -> slot. No Python object per contact: with several per contact, the garbage
    collector's full passes over a million-memory index take tens of milliseconds, which shows
    up as p99 search latency (measured: a 27 ms gen-2 pass at 300k memories)."""

    def __init__(
        self, contact_ids: list[str], arrays: tuple[np.ndarray, np.ndarray, np.ndarray], offsets: np.ndarray
    ) -> None:
        self.slot = {c: i for i, c in enumerate(contact_ids)}
        self.arrays = arrays
        self.offsets = offsets  # (3, contacts + 1): memories, postings, links

    def get(self, contact_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        i = self.slot.get(contact_id)
        if i is None:
            return None
        (m, p, lk), o = self.arrays, self.offsets
        return m[o[0, i] : o[0, i + 1]], p[o[1, i] : o[1, i + 1]], lk[o[2, i] : o[2, i + 1]]


def _joined(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One contact's rows from several parts (shared arrays, segments), positions shifted."""
    starts = np.cumsum([0, *(len(m) for m, _, _ in parts[:-1])])
    memories = np.concatenate([m for m, _, _ in parts])
    postings = np.concatenate([p for _, p, _ in parts])
    links = np.concatenate([lk for _, _, lk in parts])
    postings["pos"] += np.repeat(starts, [len(p) for _, p, _ in parts])
    links["pos"] += np.repeat(starts, [len(lk) for _, _, lk in parts])
    return memories, postings, links


def _empty_base() -> _Base:
    empty = (np.empty(0, MEMORY), np.empty(0, POSTING), np.empty(0, LINK))
    return _Base([], empty, np.zeros((3, 1), np.int64))


@dataclass(frozen=True)
class ContactView:
    """One contact's state, filtered by memory type. Positions index ``memories``; ``allowed``
    says which memories pass the filter (postings and links of the others are already dropped).
    Valid while the store's lock is held (later appends may reallocate)."""

    memories: np.ndarray
    allowed: np.ndarray
    postings: np.ndarray
    links: np.ndarray

    @property
    def candidate_positions(self) -> np.ndarray:
        return np.flatnonzero(self.allowed)

    @property
    def candidates(self) -> np.ndarray:
        return self.memories["seq"][self.allowed]


_EMPTY = ContactView(np.empty(0, MEMORY), np.empty(0, bool), np.empty(0, POSTING), np.empty(0, LINK))


@dataclass(frozen=True)
class NewRows:
    """What one committed batch of memories adds (record order; postings/links by record)."""

    contact_ids: Sequence[str]
    seqs: np.ndarray
    doc_len: np.ndarray
    memory_types: Sequence[str]
    posting_record: np.ndarray
    posting_term: np.ndarray
    posting_tf: np.ndarray
    #: Links flattened: the record of each link (ascending) and its columns.
    link_record: np.ndarray
    link_entity_ids: Sequence[str]
    link_entity_types: Sequence[str]
    link_relationships: Sequence[str]
    link_strengths: np.ndarray


class ContactIndex:
    def __init__(self) -> None:
        self._base = _empty_base()
        #: Bulk batches since open or the last compaction, each in the shape of _base (see add).
        self._segments: list[_Base] = []
        self._own: dict[str, _Contact] = {}
        self.types = _Codes()
        self.entities = _Codes()
        self.entity_types = _Codes()
        self.relationships = _Codes()

    # -- reads ----------------------------------------------------------------------------------

    def view(self, contact_id: str, memory_types: frozenset[str] = frozenset()) -> ContactView:
        found = self._arrays(contact_id)
        if found is None:
            return _EMPTY
        memories, postings, links = found
        if not memory_types:
            return ContactView(memories, np.ones(len(memories), bool), postings, links)
        codes = [self.types.code[t] for t in memory_types if t in self.types.code]
        allowed = np.isin(memories["type"], np.array(codes, dtype=np.int32))
        return ContactView(
            memories, allowed, postings[allowed[postings["pos"]]], links[allowed[links["pos"]]]
        )

    def refs(self, links: np.ndarray) -> list[RelatedRef]:
        """Links as RelatedRef, in stored order."""
        return [
            RelatedRef(self.entity_types.names[t], self.entities.names[e], self.relationships.names[r], float(s))
            for e, t, r, s in zip(
                links["entity"].tolist(), links["etype"].tolist(), links["rel"].tolist(),
                links["strength"].tolist(), strict=True,
            )
        ]  # fmt: skip

    def export(self) -> dict[str, tuple[list[tuple[int, int, str]], list[tuple[int, int, int]], list[tuple]]]:
        """Every contact's state with codes resolved, in a canonical order (tests compare an
        index maintained by writes with one rebuilt from the file)."""
        out = {}
        for contact_id in self.contact_ids():
            m, p, lk = self._arrays(contact_id)  # type: ignore[misc]
            seqs = m["seq"].tolist()
            memories = [
                (s, d, self.types.names[t])
                for s, d, t in zip(seqs, m["doc_len"].tolist(), m["type"].tolist(), strict=True)
            ]
            postings = sorted(
                (seqs[pos], term, tf)
                for term, pos, tf in zip(p["term"].tolist(), p["pos"].tolist(), p["tf"].tolist(), strict=True)
            )
            links = sorted(
                (seqs[pos], ref.entity_id, ref.entity_type, ref.relationship, ref.strength)
                for pos, ref in zip(lk["pos"].tolist(), self.refs(lk), strict=True)
            )
            out[contact_id] = (memories, postings, links)
        return out

    def _arrays(self, contact_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        own = self._own.get(contact_id)
        if own is not None:
            return own.arrays()
        found = self._base.get(contact_id)
        if not self._segments:
            return found
        parts = [p for p in (found, *(s.get(contact_id) for s in self._segments)) if p is not None]
        return _joined(parts) if len(parts) > 1 else (parts[0] if parts else None)

    def contact_ids(self) -> list[str]:
        ids = dict.fromkeys(self._base.slot)
        for segment in self._segments:
            ids.update(dict.fromkeys(segment.slot))
        ids.update(dict.fromkeys(self._own))
        return list(ids)

    def __len__(self) -> int:
        return len(self.contact_ids())

    def nbytes(self) -> int:
        """Bytes held by the arrays (shared arrays once; a contact's own arrays with their
        spare capacity; views into an import batch are not counted)."""
        held = sum(a.nbytes for b in (self._base, *self._segments) for a in (*b.arrays, b.offsets))
        for contact in self._own.values():
            for growable in (contact.memories, contact.postings, contact.links):
                if growable._data.base is None:
                    held += growable._data.nbytes
        return held

    def compact(self) -> None:
        """Fold the bulk segments and the contacts written since open into the shared arrays,
        so that a bulk import leaves no Python object per contact behind. Vectorised: every
        row gets its contact's code, one stable sort by code per array (rows of a contact keep
        their order: shared, then segments, oldest first), positions shifted by the rows of
        the same contact in earlier parts. Cost: one copy of the index."""
        if not self._own and not self._segments:
            return
        ids = self.contact_ids()
        code = {c: i for i, c in enumerate(ids)}
        own_codes = np.fromiter((code[c] for c in self._own), np.int64, len(self._own))
        seen = np.zeros(len(ids), np.int64)  # memories of each contact in the parts so far
        parts: list[list[np.ndarray]] = [[], [], []]
        codes: list[list[np.ndarray]] = [[], [], []]
        for source in (self._base, *self._segments):
            owner = np.fromiter((code[c] for c in source.slot), np.int64, len(source.slot))
            counts = np.diff(source.offsets, axis=1)
            keep = ~np.isin(owner, own_codes)  # an own contact's arrays hold all its rows
            for k, array in enumerate(source.arrays):
                row_owner = np.repeat(owner, counts[k])
                rows = array[np.repeat(keep, counts[k])]
                row_owner = row_owner[np.repeat(keep, counts[k])]
                if k:
                    rows["pos"] += seen[row_owner]
                parts[k].append(rows)
                codes[k].append(row_owner)
            seen += np.bincount(np.repeat(owner, counts[0])[np.repeat(keep, counts[0])], minlength=len(ids))
        for contact_id, contact in self._own.items():
            for k, array in enumerate(contact.arrays()):
                parts[k].append(array)
                codes[k].append(np.full(len(array), code[contact_id], np.int64))
        arrays, offsets = [], np.zeros((3, len(ids) + 1), np.int64)
        for k in range(3):
            owner = np.concatenate(codes[k])
            arrays.append(np.concatenate(parts[k])[np.argsort(owner, kind="stable")])
            np.cumsum(np.bincount(owner, minlength=len(ids)), out=offsets[k, 1:])
        self._base = _Base(ids, (arrays[0], arrays[1], arrays[2]), offsets)
        self._segments = []
        self._own = {}

    # -- writes ---------------------------------------------------------------------------------

    def add(self, rows: NewRows) -> None:
        """Append a committed batch (called under the store's lock, after COMMIT).

        The batch is grouped by contact with vectorised sorts. A bulk batch (at least
        _SEGMENT_MIN memories) becomes one more segment, arrays in the shape of the shared
        ones, for every contact that has no arrays of its own: no Python work per contact
        (appending to each contact's arrays was ~1.5 s of a 200k-memory import, and grew with
        the number of contacts per batch). Otherwise, and for contacts with arrays of their
        own, one dict lookup and up to three slice copies per contact."""
        if len(rows.seqs) == 0:
            return
        group_of: dict[str, int] = {}
        owner = np.fromiter(
            (group_of.setdefault(c, len(group_of)) for c in rows.contact_ids), np.int64, len(rows.seqs)
        )
        bulk = len(rows.seqs) >= _SEGMENT_MIN
        contacts = [self._own.get(c) if bulk else self._writable(c) for c in group_of]
        sizes = np.array([c.memories.size if c else 0 for c in contacts], dtype=np.int64)
        order = np.argsort(owner, kind="stable")
        bounds = np.searchsorted(owner[order], np.arange(len(group_of) + 1))
        local = np.empty(len(owner), dtype=np.int64)  # record -> position in its contact's array
        local[order] = sizes[owner[order]] + np.arange(len(order)) - bounds[owner[order]]
        memories = np.empty(len(order), MEMORY)
        memories["seq"], memories["doc_len"] = rows.seqs[order], rows.doc_len[order]
        memories["type"] = self.types.encode(rows.memory_types)[order]
        postings, p_bounds = self._grouped_postings(rows, owner, local, len(group_of))
        links, l_bounds = self._grouped_links(rows, owner, local, len(group_of))
        if bulk:
            self._add_segment(
                list(group_of), contacts, (memories, postings, links), (bounds, p_bounds, l_bounds)
            )
            return
        for g, contact_id in enumerate(group_of):
            m, p, lk = (
                memories[bounds[g] : bounds[g + 1]],
                postings[p_bounds[g] : p_bounds[g + 1]],
                links[l_bounds[g] : l_bounds[g + 1]],
            )
            contact = contacts[g]
            if contact is None:  # a new contact: views into this batch, copied on its next write
                self._own[contact_id] = _Contact(m, p, lk)
                continue
            contact.memories.extend(m)
            if len(p):
                contact.postings.extend(p)
            if len(lk):
                contact.links.extend(lk)

    def _add_segment(
        self,
        ids: list[str],
        contacts: list[_Contact | None],
        arrays: tuple[np.ndarray, np.ndarray, np.ndarray],
        bounds: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        """Rows grouped by contact (``bounds``: each group's start, per array): contacts with
        arrays of their own get their rows appended, the others become a segment."""
        own = np.array([c is not None for c in contacts], dtype=bool)
        for g in np.flatnonzero(own).tolist():
            contact = contacts[g]
            assert contact is not None
            for growable, array, bound in zip(contact.arrays_growable(), arrays, bounds, strict=True):
                if bound[g + 1] > bound[g]:
                    growable.extend(array[bound[g] : bound[g + 1]])
        if own.all():
            return
        counts = np.stack([np.diff(b) for b in bounds])[:, ~own]
        offsets = np.zeros((3, counts.shape[1] + 1), np.int64)
        np.cumsum(counts, axis=1, out=offsets[:, 1:])
        kept = tuple(a[np.repeat(~own, np.diff(b))] for a, b in zip(arrays, bounds, strict=True))
        ids = [c for c, mine in zip(ids, own.tolist(), strict=True) if not mine]
        self._segments.append(_Base(ids, kept, offsets))  # type: ignore[arg-type]
        if len(self._segments) > _SEGMENTS_MAX:  # bounds the work of a read until compaction
            self.compact()

    def _writable(self, contact_id: str) -> _Contact | None:
        """The contact's own arrays (made from its shared rows on its first write), or None
        for a contact the index has never seen."""
        own = self._own.get(contact_id)
        if own is None:
            found = self._arrays(contact_id)
            if found is not None:
                own = self._own[contact_id] = _Contact(*found)
        return own

    @staticmethod
    def _by_owner(owner: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
        """A stable order of rows by group, and each group's start offset (groups + 1 values)."""
        order = np.argsort(owner, kind="stable")
        offsets = np.zeros(groups + 1, dtype=np.int64)
        np.cumsum(np.bincount(owner, minlength=groups), out=offsets[1:])
        return order, offsets

    def _grouped_postings(
        self, rows: NewRows, owner: np.ndarray, local: np.ndarray, groups: int
    ) -> tuple[np.ndarray, np.ndarray]:
        record = np.asarray(rows.posting_record, dtype=np.int64)
        order, offsets = self._by_owner(owner[record], groups)
        out = np.empty(len(record), POSTING)
        out["term"], out["tf"] = rows.posting_term[order], rows.posting_tf[order]
        out["pos"] = local[record[order]]
        return out, offsets

    def _grouped_links(
        self, rows: NewRows, owner: np.ndarray, local: np.ndarray, groups: int
    ) -> tuple[np.ndarray, np.ndarray]:
        record = np.asarray(rows.link_record, dtype=np.int64)
        order, offsets = self._by_owner(owner[record], groups)
        out = self._link_rows(rows)[order]
        out["pos"] = local[record[order]]
        return out, offsets

    def _link_rows(self, rows: NewRows) -> np.ndarray:
        out = np.empty(len(rows.link_record), LINK)
        if len(out):
            out["entity"] = self.entities.encode(rows.link_entity_ids)
            out["etype"] = self.entity_types.encode(rows.link_entity_types)
            out["rel"] = self.relationships.encode(rows.link_relationships)
            out["strength"] = np.asarray(rows.link_strengths, dtype=np.float32)
        return out

    # -- bulk load at open ----------------------------------------------------------------------

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        """Build from the tables: three scans, each ordered by contact, codes made by DuckDB."""
        contact_ids = [
            r[0] for r in con.execute("SELECT DISTINCT contact_id FROM memories ORDER BY 1").fetchall()
        ]
        if not contact_ids:
            return
        self.types = _Codes(
            [r[0] for r in con.execute("SELECT DISTINCT memory_type FROM memories ORDER BY 1").fetchall()]
        )
        m = con.execute(
            """SELECT (dense_rank() OVER (ORDER BY contact_id) - 1)::INTEGER AS c, seq, doc_len,
                      (dense_rank() OVER (ORDER BY memory_type) - 1)::INTEGER AS t
               FROM memories ORDER BY contact_id, seq"""
        ).fetchnumpy()
        memories = np.empty(len(m["seq"]), MEMORY)
        memories["seq"], memories["doc_len"], memories["type"] = m["seq"], m["doc_len"], m["t"]
        owner = np.asarray(m["c"], dtype=np.int64)
        starts = np.searchsorted(owner, np.arange(len(contact_ids) + 1))
        # Position of every memory (by seq) inside its contact's array.
        max_seq = int(memories["seq"].max()) + 1
        row_of_seq = np.full(max_seq, -1, dtype=np.int64)
        row_of_seq[memories["seq"]] = np.arange(len(memories))
        postings, p_starts = self._load_postings(con, row_of_seq, owner, starts)
        links, l_starts = self._load_links(con, row_of_seq, owner, starts)
        offsets = np.stack([starts, p_starts, l_starts]).astype(np.int64)
        self._base = _Base(contact_ids, (memories, postings, links), offsets)
        self._own = {}

    def _load_postings(
        self, con: duckdb.DuckDBPyConnection, row_of_seq: np.ndarray, owner: np.ndarray, starts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        p = con.execute("SELECT term, seq, tf FROM postings").fetchnumpy()
        rows = row_of_seq[np.asarray(p["seq"], dtype=np.int64)]
        order, offsets = self._by_owner(owner[rows], len(starts) - 1)
        postings = np.empty(len(rows), POSTING)
        postings["term"] = np.asarray(p["term"])[order]
        postings["tf"] = np.asarray(p["tf"])[order]
        rows = rows[order]
        postings["pos"] = rows - starts[owner[rows]]
        return postings, offsets

    def _load_links(
        self, con: duckdb.DuckDBPyConnection, row_of_seq: np.ndarray, owner: np.ndarray, starts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        self.entities = _Codes(
            [r[0] for r in con.execute("SELECT DISTINCT entity_id FROM memory_links ORDER BY 1").fetchall()]
        )
        self.entity_types = _Codes(
            [r[0] for r in con.execute("SELECT DISTINCT entity_type FROM memory_links ORDER BY 1").fetchall()]
        )
        self.relationships = _Codes(
            [
                r[0]
                for r in con.execute("SELECT DISTINCT relationship FROM memory_links ORDER BY 1").fetchall()
            ]
        )
        lk = con.execute(
            # rowid order = insertion order: a memory's links keep the order they were given in.
            """SELECT rowid AS rid, seq, (dense_rank() OVER (ORDER BY entity_id) - 1)::INTEGER AS e,
                      (dense_rank() OVER (ORDER BY entity_type) - 1)::INTEGER AS t,
                      (dense_rank() OVER (ORDER BY relationship) - 1)::INTEGER AS r, strength
               FROM memory_links ORDER BY rid"""
        ).fetchnumpy()
        rows = row_of_seq[np.asarray(lk["seq"], dtype=np.int64)]
        order, offsets = self._by_owner(owner[rows], len(starts) - 1)
        links = np.empty(len(rows), LINK)
        for field, column in (("entity", "e"), ("etype", "t"), ("rel", "r"), ("strength", "strength")):
            links[field] = np.asarray(lk[column])[order]
        rows = rows[order]
        links["pos"] = rows - starts[owner[rows]]
        return links, offsets
