"""Soak: mixed load against a real `ventros serve --demo` process, watching errors and memory.

    python benchmarks/soak.py --minutes 5 --concurrency 8

Starts the reference server (both services, demo data, a fresh DuckDB file) as a subprocess on
free ports of 127.0.0.1, then runs StoreMemory, SearchMemories (hybrid and keyword),
ExecuteAgent and StreamAgentExecution in a fixed mix from ``--concurrency`` workers until the
time is up (at most 10 minutes). It prints throughput and errors per operation and the server's
resident memory at the end of the warm-up and at the end. Targets: 0 errors, growth < 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import ventros
from ventros.agents import ChunkType
from ventros.memory import SearchMode

DEMO_CONTACT = "550e8400-e29b-41d4-a716-446655440000"
CHANNEL = "660e8400-e29b-41d4-a716-446655440001"
LISTENING = re.compile(r"(agent|memory) service listening on (\S+)")
MAX_MINUTES = 10.0


def start_server(db: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    command = [
        sys.executable, "-m", "ventros_cli", "serve", "--demo", "--db", str(db),
        "--agent-port", "0", "--memory-port", "0",
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    addresses: dict[str, str] = {}
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while len(addresses) < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"server exited with {proc.wait()}")
        if match := LISTENING.search(line):
            addresses[match.group(1)] = match.group(2)
    if len(addresses) < 2:
        proc.kill()
        raise RuntimeError("server did not announce both services in 120 s")
    return proc, addresses


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Load:
    def __init__(self, agents: ventros.AgentClient, memory: ventros.MemoryClient, seed: int) -> None:
        self.agents, self.memory = agents, memory
        self.rng = random.Random(seed)
        self.contacts = [str(uuid.UUID(int=self.rng.getrandbits(128))) for _ in range(50)]
        self.done: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.first_errors: list[str] = []

    async def store(self) -> None:
        await self.memory.store_memory(
            contact_id=self.rng.choice(self.contacts),
            content=f"Customer asked about order {self.rng.randint(1, 10**6)} and delivery times",
            memory_type="conversation",
        )

    async def search(self) -> None:
        mode = self.rng.choice([SearchMode.HYBRID, SearchMode.KEYWORD_ONLY])
        await self.memory.search_memories(
            contact_id=self.rng.choice([*self.contacts, DEMO_CONTACT]),
            query="delivery order",
            mode=mode,
            timeout=5,
        )

    async def execute(self) -> None:
        await self.agents.execute_agent(
            agent_type="CustomerServiceAgent", contact_id=DEMO_CONTACT, channel_id=CHANNEL,
            message="Oi, quero saber sobre o produto X",
        )  # fmt: skip

    async def stream(self) -> None:
        chunks = [
            chunk.type
            async for chunk in self.agents.stream_agent_execution(
                agent_type="CustomerServiceAgent", contact_id=DEMO_CONTACT, channel_id=CHANNEL,
                message="Where is my order?", timeout=30,
            )
        ]  # fmt: skip
        if not chunks or chunks[-1] != ChunkType.FINAL:
            raise RuntimeError("stream did not end with FINAL")

    async def worker(self, until: float) -> None:
        mix: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("store", self.store), ("search", self.search), ("search", self.search),
            ("execute", self.execute), ("stream", self.stream),
        ]  # fmt: skip
        while time.monotonic() < until:
            name, op = self.rng.choice(mix)
            try:
                await op()
                self.done[name] += 1
            except Exception as exc:  # counted and reported: a soak must not stop at the first error
                self.errors[name] += 1
                if len(self.first_errors) < 5:
                    self.first_errors.append(f"{name}: {exc!r}")


async def soak(minutes: float, concurrency: int, warmup: float) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        proc, addresses = start_server(Path(tmp) / "soak.duckdb")
        try:
            async with (
                ventros.AgentClient(addresses["agent"]) as agents,
                ventros.MemoryClient(addresses["memory"]) as memory,
            ):
                load = Load(agents, memory, seed=7)
                await asyncio.gather(*(load.worker(time.monotonic() + warmup) for _ in range(concurrency)))
                rss_start = rss_mib(proc.pid)
                load.done.clear()
                started = time.monotonic()
                until = started + minutes * 60
                await asyncio.gather(*(load.worker(until) for _ in range(concurrency)))
                elapsed = time.monotonic() - started
                rss_end = rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
    return report(load, elapsed, rss_start, rss_end, concurrency)


def report(load: Load, elapsed: float, rss_start: float, rss_end: float, concurrency: int) -> int:
    print(f"\nsoak: {elapsed:.0f} s, {concurrency} workers, server on 127.0.0.1 (2-core machine)\n")
    print(f"{'operation':<10} {'calls':>8} {'calls/s':>9} {'errors':>7}")
    for name in sorted(set(load.done) | set(load.errors)):
        print(f"{name:<10} {load.done[name]:>8} {load.done[name] / elapsed:>9.1f} {load.errors[name]:>7}")
    growth = (rss_end - rss_start) / rss_start * 100
    print(f"\nserver RSS after warm-up {rss_start:.1f} MiB, at end {rss_end:.1f} MiB, growth {growth:+.1f} %")
    for line in load.first_errors:
        print("  first errors:", line)
    ok = sum(load.errors.values()) == 0 and growth < 10
    print("\nresult:", "PASS (0 errors, growth < 10 %)" if ok else "FAIL")
    print(f"reproduce: python benchmarks/soak.py --minutes {elapsed / 60:.1f} --concurrency {concurrency}")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before the RSS baseline")
    args = parser.parse_args()
    minutes = min(args.minutes, MAX_MINUTES)
    os.environ.setdefault("NO_COLOR", "1")
    sys.exit(asyncio.run(soak(minutes, args.concurrency, args.warmup)))


if __name__ == "__main__":
    main()
