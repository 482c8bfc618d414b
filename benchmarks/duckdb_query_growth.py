"""Native memory DuckDB keeps per query, without ventros: ``python benchmarks/duckdb_query_growth.py``.

A 1,000-row table shaped like ``messages``; each query shape runs ``--queries`` times (after 500
warm-up runs) on one connection, and the growth of glibc malloc's bytes in use (mallinfo2) is
printed per query, with and without ``SET disabled_optimizers = 'late_materialization'``.
Python objects are not involved (the results are a few small rows) and DuckDB's own accounting
(duckdb_memory()) stays at 0: what grows is native memory DuckDB holds until the database is
closed. The shapes are the store's (contact_context's recent messages: ORDER BY ... LIMIT;
its former "is this contact known": EXISTS; the graph's edge fetch: LIMIT; contact statistics
before and after docs/operations.md "Soak", session 3).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.memprobe import MiB, libc  # glibc mallinfo2, declared once

SHAPES = {
    "order_by_limit": "SELECT id, content FROM messages WHERE contact_id = ? ORDER BY sent_at DESC, id DESC LIMIT 20",
    "exists": "SELECT EXISTS (SELECT 1 FROM messages WHERE contact_id = ?)",
    "limit": "SELECT id FROM messages WHERE contact_id = ? LIMIT 5",
    "full_scan_count": "SELECT count(*) FROM messages WHERE contact_id = ?",
    # contact statistics: the store's former shape (scalar subqueries, a correlated EXISTS) and
    # the one it uses since (one aggregate per table, UNION ALL; a list parameter)
    "scalar_subqueries": "SELECT (SELECT count(*) FROM messages WHERE contact_id = $1), "
    "(SELECT min(sent_at) FROM messages WHERE contact_id = $1), (SELECT max(sent_at) FROM messages WHERE contact_id = $1)",
    "correlated_exists": "SELECT count(*) FROM messages m WHERE contact_id = $1 AND EXISTS "
    "(SELECT 1 FROM messages l WHERE l.id = m.id AND l.content LIKE 'hello%')",
    "union_all_aggs": "SELECT 0, count(*), min(sent_at) FROM messages WHERE contact_id = $1 UNION ALL "
    "SELECT 1, count(*) FILTER (WHERE list_contains(['m10', 'm20'], id)), max(sent_at) FROM messages WHERE contact_id = $1",
}
SETTINGS = {"default": None, "no_late_materialization": "SET disabled_optimizers = 'late_materialization'"}


def in_use() -> float:
    return libc.mallinfo2().uordblks / MiB


def measure(sql: str, setting: str | None, queries: int) -> tuple[float, float]:
    """(bytes per query over the run, MiB returned when the database closes)."""
    con = duckdb.connect()
    if setting:
        con.execute(setting)
    con.execute("CREATE TABLE messages (id VARCHAR, contact_id VARCHAR, content VARCHAR, sent_at TIMESTAMP)")
    con.execute(
        "INSERT INTO messages SELECT 'm' || i, CASE WHEN i % 10 = 0 THEN 'c0' ELSE 'c' || (i % 97) END, "
        "'hello world message ' || i, TIMESTAMP '2024-01-01' + INTERVAL (i) MINUTE FROM range(1000) t(i)"
    )
    for _ in range(500):
        con.execute(sql, ["c0"]).fetchall()
    base = in_use()
    for _ in range(queries):
        con.execute(sql, ["c0"]).fetchall()
    grown = in_use() - base
    con.close()
    return grown * MiB / queries, grown - (in_use() - base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=5000)
    args = parser.parse_args()
    print(
        f"duckdb {duckdb.__version__}, {args.queries} queries per shape; malloc bytes in use held per query"
    )
    print(f"{'shape':<18} {'setting':<24} {'B/query':>8} {'freed at close (MiB)':>21}")
    for shape, sql in SHAPES.items():
        for name, setting in SETTINGS.items():
            per_query, freed = measure(sql, setting, args.queries)
            print(f"{shape:<18} {name:<24} {per_query:>8.0f} {freed:>21.1f}")


if __name__ == "__main__":
    main()
