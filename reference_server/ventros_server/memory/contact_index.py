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
    __slots__ = ("links", "memories", "postings")

    def __init__(self, memories: np.ndarray, postings: np.ndarray, links: np.ndarray) -> None:
        self.memories = _Growable(memories)
        self.postings = _Growable(postings)
        self.links = _Growable(links)


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
    related: Sequence[Sequence[RelatedRef]]


class ContactIndex:
    def __init__(self) -> None:
        self._contacts: dict[str, _Contact] = {}
        self.types = _Codes()
        self.entities = _Codes()
        self.entity_types = _Codes()
        self.relationships = _Codes()

    # -- reads ----------------------------------------------------------------------------------

    def view(self, contact_id: str, memory_types: frozenset[str] = frozenset()) -> ContactView:
        contact = self._contacts.get(contact_id)
        if contact is None:
            return _EMPTY
        memories, postings, links = contact.memories.rows, contact.postings.rows, contact.links.rows
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
        for contact_id, contact in self._contacts.items():
            m = contact.memories.rows
            seqs = m["seq"].tolist()
            memories = [
                (s, d, self.types.names[t])
                for s, d, t in zip(seqs, m["doc_len"].tolist(), m["type"].tolist(), strict=True)
            ]
            p = contact.postings.rows
            postings = sorted(
                (seqs[pos], term, tf)
                for term, pos, tf in zip(p["term"].tolist(), p["pos"].tolist(), p["tf"].tolist(), strict=True)
            )
            links = sorted(
                (seqs[pos], ref.entity_id, ref.entity_type, ref.relationship, ref.strength)
                for pos, ref in zip(
                    contact.links.rows["pos"].tolist(), self.refs(contact.links.rows), strict=True
                )
            )
            out[contact_id] = (memories, postings, links)
        return out

    def __len__(self) -> int:
        return len(self._contacts)

    def nbytes(self) -> int:
        """Bytes held by the arrays (including spare capacity and shared bulk arrays once)."""
        seen: dict[int, int] = {}
        for contact in self._contacts.values():
            for growable in (contact.memories, contact.postings, contact.links):
                data = growable._data
                base = data.base if data.base is not None else data
                seen[id(base)] = base.nbytes
        return sum(seen.values())

    # -- writes ---------------------------------------------------------------------------------

    def add(self, rows: NewRows) -> None:
        """Append a committed batch (called under the store's lock, after COMMIT).

        The batch is grouped by contact with vectorised sorts; the Python loop then does one
        dict lookup and up to three slice copies per contact, not per row."""
        if len(rows.seqs) == 0:
            return
        group_of: dict[str, int] = {}
        owner = np.fromiter(
            (group_of.setdefault(c, len(group_of)) for c in rows.contact_ids), np.int64, len(rows.seqs)
        )
        contacts = [self._contacts.get(c) for c in group_of]
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
        for g, contact_id in enumerate(group_of):
            m, p, lk = (
                memories[bounds[g] : bounds[g + 1]],
                postings[p_bounds[g] : p_bounds[g + 1]],
                links[l_bounds[g] : l_bounds[g + 1]],
            )
            contact = contacts[g]
            if contact is None:  # a new contact: views into this batch, copied on its next write
                self._contacts[contact_id] = _Contact(m, p, lk)
                continue
            contact.memories.extend(m)
            if len(p):
                contact.postings.extend(p)
            if len(lk):
                contact.links.extend(lk)

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
        record = np.fromiter((i for i, refs in enumerate(rows.related) for _ in refs), np.int64)
        order, offsets = self._by_owner(owner[record], groups)
        out = self._link_rows(rows.related)[order]
        out["pos"] = local[record[order]]
        return out, offsets

    def _link_rows(self, related: Sequence[Sequence[RelatedRef]]) -> np.ndarray:
        refs = [ref for refs in related for ref in refs]
        out = np.empty(len(refs), LINK)
        if refs:
            out["entity"] = self.entities.encode([r.entity_id for r in refs])
            out["etype"] = self.entity_types.encode([r.entity_type for r in refs])
            out["rel"] = self.relationships.encode([r.relationship for r in refs])
            out["strength"] = np.array([r.strength for r in refs], dtype=np.float32)
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
        for c, contact_id in enumerate(contact_ids):
            self._contacts[contact_id] = _Contact(
                memories[starts[c] : starts[c + 1]],
                postings[p_starts[c] : p_starts[c + 1]],
                links[l_starts[c] : l_starts[c + 1]],
            )

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
