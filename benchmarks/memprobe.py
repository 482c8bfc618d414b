"""Memory probe: ``python benchmarks/memprobe.py OUT.jsonl serve ...`` runs the ventros CLI in this
process and appends a JSON line of memory figures to OUT.jsonl every 5 seconds.

Used by ``benchmarks/soak.py --probe OUT.jsonl`` to split the server's RSS into its parts:
anonymous vs file-backed (/proc/self/smaps_rollup), glibc malloc in use / free / mmapped
(mallinfo2), DuckDB's own accounting (duckdb_memory()), the vector matrix, the memories count
and the WAL size. Writing the word ``trim`` or ``checkpoint`` (space-separated, in order) to
OUT.jsonl.cmd runs malloc_trim(0) / CHECKPOINT and records what each changed. Diagnostic only:
it reads the store's connection under the store's lock, every few seconds.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
import time
from typing import Any

MiB = 1024 * 1024
EVERY = 5.0
libc = ctypes.CDLL("libc.so.6")


class Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


libc.mallinfo2.restype = Mallinfo2
stores: list[Any] = []


def capture_store() -> None:
    """Keep the store ``ventros serve`` opens (a wrapper around memory.open_store)."""
    import ventros_server.memory as memory

    original = memory.open_store

    def open_store(*args: Any, **kwargs: Any) -> Any:
        stores.append(original(*args, **kwargs))
        return stores[-1]

    memory.open_store = open_store  # type: ignore[assignment]


def sample() -> dict[str, Any]:
    smaps = {}
    with open("/proc/self/smaps_rollup") as rollup:
        lines = rollup.read().splitlines()
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and parts[-1] == "kB":
            smaps[parts[0].rstrip(":")] = int(parts[1]) / 1024
    info = libc.mallinfo2()
    row: dict[str, Any] = {
        "t": time.monotonic(),
        "rss": smaps["Rss"],
        "anon": smaps["Anonymous"],
        "file": smaps["Rss"] - smaps["Anonymous"],
        "malloc_in_use": info.uordblks / MiB,
        "malloc_free": info.fordblks / MiB,
        "malloc_mmap": info.hblkhd / MiB,
    }
    if stores:
        row.update(store_figures(stores[-1]))
    return row


def store_figures(store: Any) -> dict[str, Any]:
    with store._lock:
        if store._closed:
            return {}
        tags = store._con.execute("SELECT tag, memory_usage_bytes FROM duckdb_memory()").fetchall()
        memories = store._con.execute("SELECT count(*) FROM memories").fetchone()[0]
    wal = f"{store.path}.wal"
    return {
        "duckdb": sum(b for _, b in tags) / MiB,
        "duckdb_tags": {tag: round(b / MiB, 2) for tag, b in tags if b},
        "vector_matrix": (store.vectors._matrix.nbytes + store.vectors._present.nbytes) / MiB,
        "memories": memories,
        "wal": os.path.getsize(wal) / MiB if os.path.exists(wal) else 0.0,
    }


def command(name: str) -> dict[str, Any]:
    before = sample()
    if name == "trim":
        libc.malloc_trim(0)
    elif name == "checkpoint" and stores:
        with stores[-1]._lock:
            stores[-1]._con.execute("CHECKPOINT")
    after = sample()
    keys = ("rss", "anon", "malloc_in_use", "malloc_free", "duckdb")
    return {
        "command": name,
        **{k: round(after[k] - before[k], 2) for k in keys if k in before and k in after},
    }


def sampler(out: str) -> None:
    with open(out, "a", buffering=1) as f:
        while True:
            row = sample()
            if os.path.exists(out + ".cmd"):
                with open(out + ".cmd") as cmd:
                    names = cmd.read().split()
                os.unlink(out + ".cmd")
                row["commands"] = [command(n) for n in names]
            f.write(json.dumps(row) + "\n")
            time.sleep(EVERY)


def main() -> None:
    out = sys.argv.pop(1)
    capture_store()
    threading.Thread(target=sampler, args=(out,), daemon=True, name="memprobe").start()
    from ventros_cli.main import app

    app(prog_name="ventros")


if __name__ == "__main__":
    main()
