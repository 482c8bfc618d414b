"""Leak check: each RPC alone, many times, against a real `ventros serve --demo`; RSS slope per call.

    python benchmarks/leakcheck.py --calls 5000 [--only context,related]

One server (the soak's: fresh DuckDB file, demo data, an API key) serves every phase in turn.
Each phase warms up with ``--calls / 10`` calls, then makes ``--calls`` calls from
``--concurrency`` workers, sampling the server's RSS ten times. It prints per RPC the RSS before
and after, the growth per call over the whole phase and over its second half (a leak keeps its
slope; a cache filling up flattens). ExecuteAgent and StreamAgentExecution also store an agent
insight when the classifier is confident, so part of their growth is data: the ``store`` phase
stores such an insight alone (StoreMemory), and ``execute_ro`` runs ExecuteAgent without the
store_memory tool, for comparison. The read RPCs (search, keyword, context, related, and
execute_ro) write nothing, so any growth they show is memory held per call. Exit status 1 if a
read RPC's second-half slope exceeds ``--max-bytes-per-call``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ventros
from ventros.memory import SearchMode

from benchmarks.soak import CHANNEL, DEMO_CONTACT, Server, rss_mib

READS = ("search", "keyword", "context", "related", "execute_ro")
Call = Callable[[], Awaitable[object]]


def calls(agents: ventros.AgentClient, memory: ventros.MemoryClient) -> dict[str, Call]:
    async def stream() -> None:
        async for _ in agents.stream_agent_execution(
            agent_type="CustomerServiceAgent", contact_id=DEMO_CONTACT, channel_id=CHANNEL,
            message="Where is my order?", timeout=30,
        ):  # fmt: skip
            pass

    async def execute() -> None:
        await agents.execute_agent(
            agent_type="CustomerServiceAgent", contact_id=DEMO_CONTACT, channel_id=CHANNEL,
            message="Oi, quero saber sobre o produto X",
        )  # fmt: skip

    stored = 0

    async def store() -> None:  # what ExecuteAgent stores per call: one insight of the demo contact
        nonlocal stored
        stored += 1
        await memory.store_memory(
            contact_id=DEMO_CONTACT, memory_type="agent_insight",
            content=f"CustomerServiceAgent classified intent as: product_inquiry (confidence 0.9{stored % 10}, "
            f"sentiment neutral); suggested actions: send_product_catalog, create_lead. #{stored}",
            metadata={"agent_type": "CustomerServiceAgent", "intent": "product_inquiry", "channel_id": CHANNEL},
        )  # fmt: skip

    async def execute_ro() -> None:  # the same pipeline, the store_memory tool not allowed
        await agents.execute_agent(
            agent_type="CustomerServiceAgent", contact_id=DEMO_CONTACT, channel_id=CHANNEL,
            message="Oi, quero saber sobre o produto X",
            options=ventros.agents.ExecutionOptions(tools=["get_contact_context", "search_memories"]),
        )  # fmt: skip

    return {
        "store": store,
        "execute_ro": execute_ro,
        "execute": execute,
        "stream": stream,
        "search": lambda: memory.search_memories(
            contact_id=DEMO_CONTACT, query="delivery order", mode=SearchMode.HYBRID, timeout=5
        ),
        "keyword": lambda: memory.search_memories(
            contact_id=DEMO_CONTACT, query="delivery order", mode=SearchMode.KEYWORD_ONLY, timeout=5
        ),
        "context": lambda: memory.get_contact_context(contact_id=DEMO_CONTACT, history_limit=20),
        "related": lambda: memory.get_related_entities(entity_id=DEMO_CONTACT, max_depth=2),
    }


async def run_calls(call: Call, count: int, concurrency: int) -> None:
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of (calls, MiB), in bytes per call."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return cov / var * 1024 * 1024 if var else 0.0


async def phase(name: str, call: Call, count: int, concurrency: int, pid: int) -> tuple[str, float]:
    await run_calls(call, max(count // 10, 50), concurrency)
    points = [(0, rss_mib(pid))]
    started = time.monotonic()
    for step in range(1, 11):
        await run_calls(call, count // 10, concurrency)
        points.append((step * (count // 10), rss_mib(pid)))
    elapsed = time.monotonic() - started
    whole, second = slope(points), slope(points[5:])
    print(
        f"{name:<10} {count:>7} {count / elapsed:>8.0f} {points[0][1]:>9.1f} {points[-1][1]:>9.1f} "
        f"{whole:>9.0f} {second:>10.0f}"
    )
    return name, second


async def main_async(args: argparse.Namespace) -> int:
    key = secrets.token_urlsafe(24)
    names = args.only.split(",") if args.only else list(ORDER)
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "leak.duckdb", key)
        try:
            async with (
                ventros.AgentClient(server.addresses["agent"], token=key) as agents,
                ventros.MemoryClient(server.addresses["memory"], token=key) as memory,
            ):
                table = calls(agents, memory)
                print(f"{'rpc':<10} {'calls':>7} {'calls/s':>8} {'RSS0 MiB':>9} {'RSS1 MiB':>9} "
                      f"{'B/call':>9} {'B/call 2nd':>10}")  # fmt: skip
                slopes = dict(
                    [await phase(n, table[n], args.calls, args.concurrency, server.proc.pid) for n in names]
                )
        finally:
            exit_code = server.stop()
    worst = {n: s for n, s in slopes.items() if n in READS and s > args.max_bytes_per_call}
    print(f"server exit code after SIGTERM: {exit_code}")
    print("result:", f"FAIL (read RPCs holding memory per call: {worst})" if worst else "PASS")
    print(f"reproduce: python benchmarks/leakcheck.py --calls {args.calls} --concurrency {args.concurrency}"
          + (f" --only {args.only}" if args.only else ""))  # fmt: skip
    return 1 if worst or exit_code != 0 else 0


ORDER = ["search", "keyword", "context", "related", "execute_ro", "store", "execute", "stream"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000, help="calls per RPC after its warm-up")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(ORDER)}")
    parser.add_argument("--max-bytes-per-call", type=float, default=256.0)
    args = parser.parse_args()
    os.environ.setdefault("NO_COLOR", "1")
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
