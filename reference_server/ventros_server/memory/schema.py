"""DuckDB schema and its versioned migrations.

``schema_version`` holds one row per applied migration. Opening a database:
* with no ``schema_version`` table: a new file, every migration is applied;
* at an older version: the missing migrations are applied, in order, in one transaction;
* at a newer version than this code knows: refused (SchemaTooNewError), never touched.

Design notes:
* Memories carry a dense integer ``seq`` besides their UUID: it is the label of the vector in
  the in-memory index (vectors.py) and the key of keyword postings, and it only grows, so
  "vectors with seq > N" is how the index catches up after a crash.
* Keyword postings store a 63-bit hash of each folded term (text.py), not the term itself:
  integer columns insert and compare far faster than strings, and nothing needs the text back.
* ``embedded`` says whether a memory has a vector (version 4). Its float32 bytes are in the
  ``embedding`` BLOB (row-aligned with the memory, so a commit has both, stored uncompressed
  since version 3: random-looking floats never compress, and trying cost a bulk import's
  checkpoint more than writing them) unless the recorded embedder is ``recomputable`` (the
  offline one): then ``embedding`` is NULL and the store computes the vector from the content
  when it opens. Vector bytes were ~90 % of a memory's size in the file and the largest cost
  of a bulk import (docs/memory.md, "Import").
* JSON-ish values (metadata, tags, custom_fields, properties) are stored as JSON text.
* Times are TIMESTAMP in UTC (naive in the database, made timezone-aware when read).
* Document frequencies are not stored: they are tallied from ``postings`` when the store opens
  and kept in memory (duckdb_store.CorpusStats), so a write only appends rows (no hot counter
  rows to update).
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from .store import SchemaTooNewError

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "initial schema",
        [
            """CREATE TABLE store_info (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)""",
            """CREATE TABLE contacts (
                id VARCHAR PRIMARY KEY, name VARCHAR, phone VARCHAR, email VARCHAR, tier VARCHAR,
                tags VARCHAR, custom_fields VARCHAR, created_at TIMESTAMP)""",
            """CREATE TABLE messages (
                id VARCHAR, contact_id VARCHAR NOT NULL, content VARCHAR, is_inbound BOOLEAN,
                channel VARCHAR, sent_at TIMESTAMP NOT NULL)""",
            """CREATE TABLE purchases (
                id VARCHAR, contact_id VARCHAR NOT NULL, product_id VARCHAR, amount DOUBLE,
                currency VARCHAR, purchased_at TIMESTAMP NOT NULL)""",
            """CREATE TABLE memories (
                seq BIGINT NOT NULL, id VARCHAR NOT NULL, contact_id VARCHAR NOT NULL,
                content VARCHAR NOT NULL, memory_type VARCHAR NOT NULL, metadata VARCHAR,
                created_at TIMESTAMP NOT NULL, doc_len INTEGER NOT NULL, embedding BLOB)""",
            """CREATE TABLE postings (term BIGINT NOT NULL, seq BIGINT NOT NULL, tf INTEGER NOT NULL)""",
            """CREATE TABLE memory_links (
                seq BIGINT NOT NULL, entity_id VARCHAR NOT NULL, entity_type VARCHAR NOT NULL,
                relationship VARCHAR NOT NULL, strength FLOAT NOT NULL)""",
            """CREATE TABLE entities (id VARCHAR PRIMARY KEY, type VARCHAR NOT NULL, properties VARCHAR)""",
            """CREATE TABLE edges (
                from_id VARCHAR NOT NULL, to_id VARCHAR NOT NULL, relationship VARCHAR NOT NULL,
                weight FLOAT NOT NULL, created_at TIMESTAMP)""",
        ],
    ),
    (
        2,
        "edge provenance: edges derived from memory links are told apart from imported ones",
        [
            "ALTER TABLE edges ADD COLUMN source VARCHAR DEFAULT 'import'",
        ],
    ),
    (
        3,
        "memories.embedding stored uncompressed: a checkpoint no longer tries FSST and dictionary "
        "compression on float32 bytes, which never compress (0.8 s per 200k memories)",
        # DuckDB sets a column's compression only in CREATE TABLE: the table is rebuilt, rows
        # in the same order (seq order), no index or constraint to carry over.
        [
            """CREATE TABLE memories_v3 (
                seq BIGINT NOT NULL, id VARCHAR NOT NULL, contact_id VARCHAR NOT NULL,
                content VARCHAR NOT NULL, memory_type VARCHAR NOT NULL, metadata VARCHAR,
                created_at TIMESTAMP NOT NULL, doc_len INTEGER NOT NULL,
                embedding BLOB USING COMPRESSION uncompressed)""",
            "INSERT INTO memories_v3 SELECT * FROM memories ORDER BY seq",
            "DROP TABLE memories",
            "ALTER TABLE memories_v3 RENAME TO memories",
        ],
    ),
    (
        4,
        "memories.embedded: whether a memory has a vector; with an embedder whose vectors are "
        "recomputed at open (the offline one) embedding is NULL, a vector of 1.5 KB less per memory",
        # Files written before keep their vector bytes, and those are what opening reads.
        [
            "ALTER TABLE memories ADD COLUMN embedded BOOLEAN DEFAULT false",
            "UPDATE memories SET embedded = embedding IS NOT NULL",
        ],
    ),
]

LATEST = MIGRATIONS[-1][0]


def current_version(con: duckdb.DuckDBPyConnection) -> int | None:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchone()
    if not exists or not exists[0]:
        return None
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(con: duckdb.DuckDBPyConnection, *, target: int = LATEST, where: str = "") -> int:
    """Bring the schema to ``target``; returns the version found before (0 for a new file)."""
    found = current_version(con)
    if found is not None and found > LATEST:
        raise SchemaTooNewError(
            f"the memory database {where or ''} has schema version {found}, but this ventros only "
            f"knows up to version {LATEST}. Upgrade ventros to open it (it was written by a newer "
            "release); it has not been modified."
        )
    start = found or 0
    pending = [m for m in MIGRATIONS if start < m[0] <= target]
    if not pending:
        return start
    con.execute("BEGIN TRANSACTION")
    try:
        if found is None:
            con.execute(
                "CREATE TABLE schema_version (version INTEGER NOT NULL, description VARCHAR, "
                "applied_at TIMESTAMP NOT NULL)"
            )
        for version, description, statements in pending:
            for statement in statements:
                con.execute(statement)
            con.execute(
                "INSERT INTO schema_version VALUES (?, ?, ?)",
                [version, description, datetime.now(UTC).replace(tzinfo=None)],
            )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return start
