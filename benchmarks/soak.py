"""Soak: mixed load against a real `ventros serve --demo` process, watching errors and memory.

    python benchmarks/soak.py --minutes 5 --concurrency 8 [--mix mixed|read|write|search|execute|stream]

Starts the reference server (both services, demo data, a fresh DuckDB file, an API key required
on every call, as in production) as a subprocess on free ports of 127.0.0.1, then runs
StoreMemory, SearchMemories (hybrid and keyword), ExecuteAgent and StreamAgentExecution in a
fixed mix from ``--concurrency`` workers until the time is up (at most 10 minutes). It prints
throughput and errors per operation, the server's resident memory (sampled every few seconds:
after the warm-up, half-way, at the end, peak), whether the server stopped cleanly on SIGTERM
(exit 0), and the last lines of the server's log when something failed.
Targets: 0 errors, clean exit, and RSS growth after the warm-up < 10 % of the baseline.

The warm-up (default 20 s) is there because the first seconds load code paths, thread pools,
DuckDB's catalog and the allocator's arenas once; the baseline is taken after it, never later to
hide growth. The store grows during the run (every StoreMemory adds a row, postings and a
vector; every ExecuteAgent here stores an agent insight), and a server must keep what it
stores: ~14,000 memories in 5 minutes hold more than 10 % of the baseline in their vectors
alone. So when the load writes, a new server is then started on the same database file and
its RSS read after a warm-up that writes nothing (the same data freshly opened; ``--no-reopen``
skips it), and the growth is judged beyond that data: end RSS minus the reopened server's,
against 10 % of the baseline. The plain growth is printed next to it, and judged when nothing
was written (docs/operations.md, "Soak", has the reasoning and the figures).
``--mix`` isolates a part of the load (``read``: no StoreMemory; ``write``: StoreMemory only).
``--memories N`` also imports N CRM memories at start (benchmarks/memory_corpus.py): the demo
alone is a 50-contact toy, where the memories the load stores dominate any growth; a store of
production size (``--memories 200000``) shows the same load against a realistic baseline.
Per-RPC growth, call by call, is benchmarks/leakcheck.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import ventros
from ventros.agents import ChunkType
from ventros.memory import SearchMode

DEMO_CONTACT = "550e8400-e29b-41d4-a716-446655440000"
CHANNEL = "660e8400-e29b-41d4-a716-446655440001"
LISTENING = re.compile(r"(agent|memory) service listening on (\S+)")
MAX_MINUTES = 10.0
#: Operation mixes (``--mix``): each worker picks uniformly from the list.
MIXES = {
    "mixed": ["store", "search", "search", "execute", "stream"],
    "read": ["search", "search", "execute", "stream"],
    "write": ["store"],
    "search": ["search"],
    "execute": ["execute"],
    "stream": ["stream"],
    "nowrite": ["search", "stream"],  # the agent answers "Where is my order?" without an insight
}


class Server:
    """`ventros serve` as a subprocess whose output is read all along (an unread pipe fills up
    and blocks the server on its next log line); the last lines are kept for the report."""

    def __init__(
        self, db: Path, key: str, probe: Path | None = None, *, demo: bool = True, extra: Path | None = None
    ) -> None:
        # --probe: the same CLI, run in-process by benchmarks/memprobe.py, which samples memory.
        launcher = (
            ["-m", "ventros_cli"]
            if probe is None
            else [str(Path(__file__).with_name("memprobe.py")), str(probe)]
        )
        command = [
            sys.executable, *launcher, "serve", *(["--demo"] if demo else []), "--db", str(db),
            *(["--import", str(extra)] if extra else []),
            "--agent-port", "0", "--memory-port", "0",
        ]  # fmt: skip
        env = {**os.environ, "VENTROS_API_KEYS": f"{key}:read,write,execute", "NO_COLOR": "1"}
        env.pop("VENTROS_TOKEN", None)
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.tail: deque[str] = deque(maxlen=40)
        self.addresses: dict[str, str] = {}
        self._ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(120) or len(self.addresses) < 2:
            self.proc.kill()
            raise RuntimeError("server did not announce both services:\n" + "\n".join(self.tail))

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.tail.append(line.rstrip("\n"))
            if match := LISTENING.search(line):
                self.addresses[match.group(1)] = match.group(2)
                if len(self.addresses) == 2:
                    self._ready.set()
        self._ready.set()  # exited: the caller sees the missing addresses

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


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
        self.insights = 0  # memories the agents stored (ExecuteAgent, StreamAgentExecution)
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
        response = await self.agents.execute_agent(
            agent_type="CustomerServiceAgent", contact_id=DEMO_CONTACT, channel_id=CHANNEL,
            message="Oi, quero saber sobre o produto X",
        )  # fmt: skip
        self.insights += sum(
            1
            for t in response.tool_calls
            if t.tool_name == "store_memory" and t.output.startswith("stored memory")
        )

    async def stream(self) -> None:
        chunks = [
            chunk
            async for chunk in self.agents.stream_agent_execution(
                agent_type="CustomerServiceAgent", contact_id=DEMO_CONTACT, channel_id=CHANNEL,
                message="Where is my order?", timeout=30,
            )
        ]  # fmt: skip
        self.insights += sum(
            1 for c in chunks
            if c.metadata.get("tool") == "store_memory" and c.metadata.get("outcome") == "ok"
        )  # fmt: skip
        if not chunks or chunks[-1].type != ChunkType.FINAL:
            raise RuntimeError("stream did not end with FINAL")

    async def worker(self, until: float, mix_name: str = "mixed") -> None:
        ops: dict[str, Callable[[], Awaitable[None]]] = {
            "store": self.store, "search": self.search, "execute": self.execute, "stream": self.stream,
        }  # fmt: skip
        mix = [(name, ops[name]) for name in MIXES[mix_name]]
        while time.monotonic() < until:
            name, op = self.rng.choice(mix)
            try:
                await op()
                self.done[name] += 1
            except Exception as exc:  # counted and reported: a soak must not stop at the first error
                self.errors[name] += 1
                if len(self.first_errors) < 5:
                    self.first_errors.append(f"{name}: {exc!r}")


async def sample_rss(pid: int, samples: list[tuple[float, float]], every: float = 5.0) -> None:
    while True:
        samples.append((time.monotonic(), rss_mib(pid)))
        await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def load_on(server: Server, key: str, seed: int) -> AsyncIterator[Load]:
    """A Load driving ``server`` through the SDK's two clients."""
    async with (
        ventros.AgentClient(server.addresses["agent"], token=key) as agents,
        ventros.MemoryClient(server.addresses["memory"], token=key) as memory,
    ):
        yield Load(agents, memory, seed)


async def run_workers(load: Load, seconds: float, mix: str, concurrency: int) -> None:
    until = time.monotonic() + seconds
    await asyncio.gather(*(load.worker(until, mix) for _ in range(concurrency)))


async def reopened_rss(db: Path, key: str, warmup: float, concurrency: int) -> tuple[float, int]:
    """RSS of a new server on the soak's database file (no demo import), after a warm-up of the
    same length that writes nothing: what the same data costs freshly opened. The end RSS minus
    this is memory the running server held beyond its data (caches, allocator, leaks)."""
    server = Server(db, key, demo=False)
    try:
        async with load_on(server, key, seed=8) as load:
            await run_workers(load, warmup, "nowrite", concurrency)
            rss = rss_mib(server.proc.pid)
    finally:
        exit_code = server.stop()
    errors = sum(load.errors.values()) + load.insights
    return rss, errors + (exit_code != 0)


def write_corpus(path: Path, memories: int) -> Path:
    """``memories`` CRM memories (benchmarks/memory_corpus.py, 20 per contact) as JSONL."""
    from memory_corpus import contact_ids, write_jsonl  # benchmarks/ is this script's folder

    write_jsonl(path, memories, contact_ids(max(memories // 20, 1)))
    return path


async def soak(
    minutes: float,
    concurrency: int,
    warmup: float,
    mix: str,
    probe: Path | None,
    reopen: bool = True,
    memories: int = 0,
) -> int:
    key = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus.jsonl", memories) if memories else None
        server = Server(Path(tmp) / "soak.duckdb", key, probe, extra=corpus)
        samples: list[tuple[float, float]] = []
        sampler = asyncio.create_task(sample_rss(server.proc.pid, samples))
        exit_code: int | None = None
        reopened: tuple[float, int] | None = None
        wrote = False
        try:
            async with load_on(server, key, seed=7) as load:
                await run_workers(load, warmup, mix, concurrency)
                load.done.clear()
                load.errors.clear()
                load.insights = 0
                started = time.monotonic()
                rss_start = rss_mib(server.proc.pid)
                await run_workers(load, minutes * 60, mix, concurrency)
                elapsed = time.monotonic() - started
                rss_end = rss_mib(server.proc.pid)
                wrote = load.done["store"] + load.insights > 0
        finally:
            sampler.cancel()
            if probe is not None:  # what malloc_trim and a CHECKPOINT would give back, then stop
                Path(f"{probe}.cmd").write_text("trim checkpoint trim")
                await asyncio.sleep(12)
            exit_code = server.stop()
            if reopen and wrote and exit_code == 0:
                reopened = await reopened_rss(Path(tmp) / "soak.duckdb", key, warmup, concurrency)
    during = [rss for t, rss in samples if started <= t]
    rss_mid = next((rss for t, rss in samples if t >= started + elapsed / 2), rss_end)
    stats = RssStats(rss_start, rss_mid, rss_end, max([rss_end, *during]))
    t0 = samples[0][0] if samples else started
    curve = [f"{t - t0:.0f}s:{rss:.0f}" for i, (t, rss) in enumerate(samples) if i % 6 == 0]
    print("server RSS (MiB) every 30 s from start, warm-up included:", " ".join(curve))
    options = f"--warmup {warmup:g} --mix {mix}" + (f" --memories {memories}" if memories else "")
    return report(load, elapsed, stats, concurrency, exit_code, list(server.tail), options, reopened)


class RssStats:
    def __init__(self, start: float, mid: float, end: float, peak: float) -> None:
        self.start, self.mid, self.end, self.peak = start, mid, end, peak

    @property
    def growth(self) -> float:
        return (self.end - self.start) / self.start * 100

    @property
    def second_half(self) -> float:
        return (self.end - self.mid) / self.mid * 100


def report(
    load: Load,
    elapsed: float,
    rss: RssStats,
    concurrency: int,
    exit_code: int,
    tail: list[str],
    options: str,
    reopened: tuple[float, int] | None,
) -> int:
    print(f"\nsoak: {elapsed:.0f} s, {concurrency} workers, server on 127.0.0.1 (2-core machine)\n")
    print(f"{'operation':<10} {'calls':>8} {'calls/s':>9} {'errors':>7}")
    for name in sorted(set(load.done) | set(load.errors)):
        print(f"{name:<10} {load.done[name]:>8} {load.done[name] / elapsed:>9.1f} {load.errors[name]:>7}")
    total = sum(load.done.values())
    print(f"{'all':<10} {total:>8} {total / elapsed:>9.1f} {sum(load.errors.values()):>7}")
    print(
        f"\nserver RSS after warm-up {rss.start:.1f} MiB, half-way {rss.mid:.1f} MiB, at end {rss.end:.1f} MiB, "
        f"peak {rss.peak:.1f} MiB; growth {rss.growth:+.1f} % (second half {rss.second_half:+.1f} %)"
    )
    stored = load.done["store"] + load.insights
    if stored:
        per_memory = (rss.end - rss.start) * 1024 / stored
        print(
            f"memories written after warm-up: {stored} ({load.done['store']} by StoreMemory, {load.insights} agent "
            f"insights); {per_memory:.1f} KiB of RSS growth per memory (see docs/operations.md#soak)"
        )
    judged, what, problems = judged_growth(rss, stored, reopened)
    print(f"server exit code after SIGTERM: {exit_code}")
    for line in load.first_errors:
        print("  first errors:", line)
    ok = sum(load.errors.values()) == 0 and judged < 10 and exit_code == 0 and problems == 0
    print("\nresult:", f"PASS (0 errors, {what} < 10 %, clean exit)" if ok else "FAIL")
    if not ok:
        print("last server log lines:\n  " + "\n  ".join(tail))
    print(
        f"reproduce: python benchmarks/soak.py --minutes {elapsed / 60:.1f} --concurrency {concurrency} "
        f"{options}" + ("" if reopened or not stored else " --no-reopen")
    )
    return 0 if ok else 1


def judged_growth(rss: RssStats, stored: int, reopened: tuple[float, int] | None) -> tuple[float, str, int]:
    """The growth the target is judged on (% of the baseline), its name, and problems seen by
    the reopened server. Written data is told apart by the reopened server's RSS."""
    if not stored:
        return rss.growth, "growth", 0
    if reopened is None:
        print("growth not told from the data written (--no-reopen): judged on the plain growth")
        return rss.growth, "growth", 0
    fresh, problems = reopened
    beyond = (rss.end - fresh) / rss.start * 100
    print(
        "a new server on the same file (the same data; no import, a warm-up of reads): "
        f"{fresh:.1f} MiB ({fresh - rss.start:+.1f} MiB vs the baseline); the running server ended "
        f"{rss.end - fresh:+.1f} MiB above it: {beyond:+.1f} % of the baseline beyond its data"
        + (f"; {problems} unexpected writes/errors/exit" if problems else "")
    )
    return beyond, "growth beyond the data written", problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before the RSS baseline")
    parser.add_argument("--mix", choices=sorted(MIXES), default="mixed", help="operations to run")
    parser.add_argument(
        "--memories", type=int, default=0,
        help="also import this many CRM memories at start (a store of production size; default: the demo only)",
    )  # fmt: skip
    parser.add_argument(
        "--probe", type=Path, help="run the server under benchmarks/memprobe.py, samples to FILE"
    )
    parser.add_argument(
        "--no-reopen", dest="reopen", action="store_false",
        help="do not start a new server on the same file afterwards (growth then not told from data)",
    )  # fmt: skip
    # Earlier runs in docs/operations.md were made with --reopen, now the default.
    parser.add_argument("--reopen", dest="reopen", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(reopen=True)
    args = parser.parse_args()
    minutes = min(args.minutes, MAX_MINUTES)
    os.environ.setdefault("NO_COLOR", "1")
    sys.exit(
        asyncio.run(
            soak(minutes, args.concurrency, args.warmup, args.mix, args.probe, args.reopen, args.memories)
        )
    )


if __name__ == "__main__":
    main()
