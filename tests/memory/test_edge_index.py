"""EdgeIndex's write side against a plain model of the edges table: known_weights (what the
store's upsert SQL is decided from) and upsert_columns (the index's mirror of that SQL), on
random tables (with repeated keys, as an imported table may hold) and random batches."""

from __future__ import annotations

import math

import duckdb
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from ventros_server.memory.edge_index import EdgeIndex

NODES = [f"n{i}" for i in range(6)]
RELATIONSHIPS = ["purchased", "mentioned", "owns"]
WEIGHTS = [0.0, 0.25, 0.5, 0.7, 1.0, 2.5]
key = st.tuples(st.sampled_from(NODES), st.sampled_from(NODES), st.sampled_from(RELATIONSHIPS))
row = st.tuples(key, st.sampled_from(WEIGHTS))
batch = st.dictionaries(key, st.sampled_from(WEIGHTS), max_size=12)  # the store merges keys first


def loaded(table: list[tuple[tuple[str, str, str], float]]) -> EdgeIndex:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE edges (from_id VARCHAR, to_id VARCHAR, relationship VARCHAR, weight FLOAT, created_at TIMESTAMP)"
    )
    for (f, t, r), w in table:
        con.execute("INSERT INTO edges VALUES (?, ?, ?, ?, NULL)", [f, t, r, w])
    index = EdgeIndex()
    index.load(con)
    return index


def f32(value: float) -> float:
    return float(np.float32(value))


@settings(max_examples=200, deadline=None)
@given(st.lists(row, max_size=15), st.lists(batch, max_size=4))
def test_known_weights_and_upserts_follow_the_table(table, batches) -> None:
    index = loaded(table)
    model = [[*k, f32(w)] for k, w in table]  # the table's rows, in insertion order
    for number, given_batch in enumerate(batches):
        keys = list(given_batch)
        known = index.known_weights([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys])
        for k, got in zip(keys, known.tolist(), strict=True):
            weights = [r[3] for r in model if tuple(r[:3]) == k]
            assert (math.isnan(got) and not weights) or got == min(weights)
        index.upsert_columns(
            [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
            np.array(list(given_batch.values()), dtype=np.float64), np.full(len(keys), number, dtype=np.int64),
        )  # fmt: skip
        for k, w in given_batch.items():
            rows = [r for r in model if tuple(r[:3]) == k]
            for r in rows:
                r[3] = max(r[3], f32(w))
            if not rows:
                model.append([*k, f32(w), number])
        assert [e[:4] for e in index.export()] == [tuple(r[:4]) for r in model]
        # Each node's adjacency holds exactly the edges touching it.
        for node in NODES:
            touching = [tuple(r[:4]) for r in model if node in r[:2]]
            assert sorted(e[:4] for e in index.export() if node in e[:2]) == sorted(touching)
            assert sorted(
                (e.from_id, e.to_id, e.relationship, e.weight) for e in index.fetch([node], 100)
            ) == sorted(touching)
