"""Native memory DuckDB holds as id lookups touch more of a table, by query shape, without ventros.

    python benchmarks/duckdb_lookup_growth.py [--rows 20000] [--queries 12000]

A file database with an ``entities``-like table (VARCHAR primary key, as in the store) is
queried with random lists of 1-30 ids, in three shapes the store could use:

* ``id IN ('a', 'b', ...)`` literal lists (what ``DuckDBStore._nodes`` does), with the
  primary key's ART index and without any index;
* ``id IN (SELECT unnest(?))`` with the list as a parameter;
* ``list_contains(?, id)``: a filter on a scan, no index;
* ``id = 'a' OR id = 'b' ...``: the same list as equalities.

After a warm-up, glibc malloc's bytes in use (mallinfo2) are printed every third of the run
with the time per query. A growth that flattens is a cache filling up (index nodes and blocks
loaded as lookups reach them, bounded by the database's size); one that keeps its slope would
be a leak. This is what the soak's read RPCs (GetRelatedEntities, GetContactContext) show per
call (docs/operations.md, soak section).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.memprobe import MiB, libc  # glibc mallinfo2, declared once

Query = Callable[[list[str]], list[tuple[str, ...]]]


def shapes(con: duckdb.DuckDBPyConnection) -> dict[str, Query]:
    columns = "SELECT id, type, properties FROM entities WHERE"

    def literal(ids: list[str]) -> list[tuple[str, ...]]:
        return con.execute(f"{columns} id IN ({', '.join(repr(i) for i in ids)})").fetchall()

    def unnest(ids: list[str]) -> list[tuple[str, ...]]:
        return con.execute(f"{columns} id IN (SELECT unnest(?::VARCHAR[]))", [ids]).fetchall()

    def contains(ids: list[str]) -> list[tuple[str, ...]]:
        return con.execute(f"{columns} list_contains(?, id)", [ids]).fetchall()

    def equalities(ids: list[str]) -> list[tuple[str, ...]]:
        return con.execute(f"{columns} {' OR '.join(f'id = {i!r}' for i in ids)}").fetchall()

    return {
        "literal IN list": literal,
        "literal IN list, no PK": literal,
        "IN (SELECT unnest(?))": unnest,
        "list_contains(?, id)": contains,
        "id = 'a' OR id = 'b' ...": equalities,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=12_000)
    args = parser.parse_args()
    print(f"reproduce: python benchmarks/duckdb_lookup_growth.py --rows {args.rows} --queries {args.queries}")
    rng = random.Random(1)

    def some_ids() -> list[str]:  # a fifth of them unknown, as for ids known only from edges
        return [f"prod-{rng.randrange(args.rows * 5 // 4)}" for _ in range(rng.randint(1, 30))]

    print(f"duckdb {duckdb.__version__}; malloc MiB held after each third of the run, ms per query")
    with tempfile.TemporaryDirectory() as workdir:
        for name in shapes(duckdb.connect(":memory:")):
            con = duckdb.connect(str(Path(workdir) / f"{len(name)}.duckdb"))
            key = "" if name.endswith("no PK") else " PRIMARY KEY"
            con.execute(f"CREATE TABLE entities (id VARCHAR{key}, type VARCHAR, properties VARCHAR)")
            con.execute(
                f"INSERT INTO entities SELECT 'prod-' || range, 'product', '{{}}' FROM range({args.rows})"
            )
            con.execute("CHECKPOINT")
            query = shapes(con)[name]
            for _ in range(500):
                query(some_ids())
            base, started, cells = libc.mallinfo2().uordblks, time.perf_counter(), []
            third = args.queries // 3
            for _ in range(3):
                for _ in range(third):
                    query(some_ids())
                cells.append(f"{(libc.mallinfo2().uordblks - base) / MiB:6.1f}")
            per_query = (time.perf_counter() - started) / (3 * third) * 1000
            print(f"{name:<24} {' '.join(cells)}   {per_query:.2f} ms/query", flush=True)
            con.close()


if __name__ == "__main__":
    main()
