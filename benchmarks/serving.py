"""Unary and server-streaming serving throughput: our grpclib server against grpc.aio.

    python -m benchmarks.serving            # real handlers, unary: about 3 minutes on 2 cores
    python -m benchmarks.serving --quick    # about 1 minute: 1 repeat, shorter runs
    python -m benchmarks.serving --handlers same-shape   # + server streaming (benchmarks._peers)

Every server variant (``benchmarks._server.KINDS``) runs in its own process(es), all at once
on 127.0.0.1; the load generator is h2load (Debian package nghttp2-client) in its own
process, sending a pre-encoded gRPC request body. Runs are interleaved (for each repeat, RPC
and concurrency, every variant in turn) so that the noise of a shared machine falls on all
of them alike. Each cell is the median over repeats of:

* req/s: requests completed in the timed window (after a warm-up) / its length;
* p50 / p99: per-request latency from h2load's per-request log;
* srv CPU us/req: CPU time (user + system) the server process(es) spent per request, the
  figure least disturbed by neighbours; h2load's own CPU share is printed too.

Before timing, each variant is called once through a real client and the responses compared,
so h2load (which does not read grpc-status) is not counting errors as answers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import _peers  # noqa: E402
from benchmarks._server import DEFAULT_KINDS, KINDS, serves  # noqa: E402

UNARY = {
    "ListAvailableAgents": "/ventros.agents.AgentService/ListAvailableAgents",
    "SearchMemories": "/ventros.memory.MemoryService/SearchMemories",
}
STREAM = {"StreamAgentExecution": "/ventros.agents.AgentService/StreamAgentExecution"}
CONCURRENCY = (1, 16, 64)
STREAM_CONCURRENCY = (1, 16)
#: Streaming is measured on these variants only (when they run), to keep the run short.
STREAM_KINDS = ("ours", "ours x2", "grpcio", "grpcio x2")
#: Concurrency N is spread over min(N, 8) HTTP/2 connections of N / connections streams each:
#: a multi-process server only gets load on all workers from several connections.
MAX_CONNECTIONS = 8
BASELINE = "grpcio"


def search_target(handlers: str) -> tuple[str, str]:
    """(contact_id, query) of the SearchMemories calls."""
    if handlers == "real":
        return _peers.REAL_CONTACT_ID, _peers.REAL_QUERY
    return _peers.CONTACT_ID, _peers.QUERY


def code_version() -> str:
    """The commit measured, and the served code that differs from it (a shared working tree)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.rstrip()  # porcelain lines start with a status column
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = git("status", "--porcelain", "--", "sdk", "reference_server").splitlines()
    changed = ", ".join(line[3:] for line in dirty) or "none"
    return f"commit {git('rev-parse', '--short', 'HEAD') or '?'}; uncommitted served code: {changed}"


def request_bodies(handlers: str) -> dict[str, bytes]:
    from ventros.agents import ListAgentsRequest, StreamAgentRequest
    from ventros.memory import SearchMemoriesRequest, SearchMode

    contact_id, query = search_target(handlers)
    messages = {
        "ListAvailableAgents": ListAgentsRequest(),
        "SearchMemories": SearchMemoriesRequest(
            contact_id=contact_id, query=query, limit=10, mode=SearchMode.KEYWORD_ONLY
        ),
        "StreamAgentExecution": StreamAgentRequest(
            agent_type="CustomerServiceAgent",
            contact_id=_peers.CONTACT_ID,
            message="where is my order it is late",
            channel_id="1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        ),
    }
    return {name: b"\x00" + len(bytes(m)).to_bytes(4, "big") + bytes(m) for name, m in messages.items()}


def find_h2load() -> str:
    h2load = shutil.which("h2load")
    if not h2load:
        sys.exit("h2load not found: apt-get install -y nghttp2-client")
    return h2load


def stubs_and_body(work: Path, rpc: str) -> tuple[Path, Path]:
    """In ``work``: the grpcio stubs the grpcio servers import, and ``rpc``'s request body file
    (real handlers), for the benchmarks that reuse these servers (churn, cold_start)."""
    stubs = work / "stubs"
    stubs.mkdir()
    _peers.grpcio_modules(stubs)
    body = work / f"{rpc}.bin"
    body.write_bytes(request_bodies("real")[rpc])
    return stubs, body


# -- server processes ----------------------------------------------------------------------


@dataclass
class Running:
    kind: str
    port: int
    process: subprocess.Popen[bytes]
    pids: list[int]
    #: The memory service's own port, when the variant serves it apart ("ours x2", as
    #: `ventros serve --workers 2` does); else ``port`` serves both services.
    memory_port: int | None = None

    def port_for(self, path: str) -> int:
        if self.memory_port is not None and path.startswith("/ventros.memory."):
            return self.memory_port
        return self.port

    def cpu_seconds(self) -> float:
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_servers(kinds: list[str], stubs: Path, workdir: Path, handlers: str) -> dict[str, Running]:
    running: dict[str, Running] = {}
    try:
        for kind in kinds:
            port = free_port()
            ready = workdir / f"ready-{len(running)}"
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks._server",
                    kind,
                    str(port),
                    str(stubs),
                    str(ready),
                    handlers,
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 60
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server {kind!r} did not start")
                time.sleep(0.05)
            pids, _, memory_port = ready.read_text().partition(";")
            running[kind] = Running(
                kind, port, proc, [int(p) for p in pids.split()], int(memory_port) if memory_port else None
            )
    except BaseException:
        stop_servers(running)
        raise
    return running


def stop_servers(running: dict[str, Running]) -> None:
    for r in running.values():
        if r.process.poll() is None:
            r.process.send_signal(signal.SIGTERM)
    for r in running.values():
        try:
            r.process.wait(15)
        except subprocess.TimeoutExpired:
            r.process.kill()
            r.process.wait(5)


# -- correctness check through a real client -----------------------------------------------


async def _check_one(address: str, handlers: str, rpcs: list[str], memory_address: str) -> dict[str, Any]:
    from ventros import AgentClient, MemoryClient
    from ventros.memory import SearchMode

    answers: dict[str, Any] = {}
    contact_id, query = search_target(handlers)
    async with AgentClient(address) as agents, MemoryClient(memory_address) as memory:
        if "ListAvailableAgents" in rpcs:
            answers["ListAvailableAgents"] = await agents.list_agents(timeout=10)
        if "SearchMemories" in rpcs:
            found = await memory.search_memories(
                contact_id=contact_id, query=query, limit=10, mode=SearchMode.KEYWORD_ONLY, timeout=10
            )
            found.search_latency_ms = 0.0
            answers["SearchMemories"] = found
        if "StreamAgentExecution" in rpcs:
            answers["StreamAgentExecution"] = [
                c
                async for c in agents.stream_agent_execution(
                    agent_type="CustomerServiceAgent",
                    contact_id=contact_id,
                    message="where is my order it is late",
                    channel_id="1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                    timeout=10,
                )
            ]
    return answers


def check_servers(running: dict[str, Running], handlers: str, rpcs: list[str]) -> None:
    """Every variant answers every RPC it serves, and all answer alike."""
    results = {
        kind: asyncio.run(
            _check_one(
                f"127.0.0.1:{r.port}",
                handlers,
                [x for x in rpcs if serves(kind, x, handlers)],
                f"127.0.0.1:{r.port_for(UNARY['SearchMemories'])}",
            )
        )
        for kind, r in running.items()
    }
    minimum = {"ListAvailableAgents": 5, "SearchMemories": 5, "StreamAgentExecution": _peers.STREAM_CHUNKS}
    for rpc in rpcs:
        answers = {kind: result[rpc] for kind, result in results.items() if rpc in result}
        first_kind, first = next(iter(answers.items()))
        size = len(
            first.agents
            if rpc == "ListAvailableAgents"
            else first.memories
            if rpc == "SearchMemories"
            else first
        )
        assert size >= minimum[rpc], (rpc, first)
        for kind, answer in answers.items():
            if answer != first:
                raise AssertionError(f"{kind} answers {rpc} differently from {first_kind}")


# -- load generation -----------------------------------------------------------------------


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float
    client_cpu_share: float


@dataclass
class Cell:
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)


def run_h2load(
    h2load: str, port: int, path: str, body: Path, concurrency: int, duration: float, log: Path
) -> tuple[float, list[int], float]:
    """(requests/s, per-request latencies in us, h2load CPU seconds)."""
    connections = min(concurrency, MAX_CONNECTIONS)
    streams = max(concurrency // connections, 1)
    cmd = [
        h2load,
        f"http://127.0.0.1:{port}{path}",
        "-d", str(body),
        "-H", "content-type: application/grpc",
        "-H", "te: trailers",
        "-c", str(connections),
        "-m", str(streams),
        "-t", "1",
        "-D", f"{int(duration * 1000)}ms",
        "--warm-up-time", "500ms",
        f"--log-file={log}",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timer = time_limit(proc, duration + 30)
    out = proc.stdout.read().decode() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    timer.cancel()
    if proc.returncode != 0:
        raise RuntimeError(f"h2load failed ({proc.returncode}):\n{out}")
    succeeded = failed = 0
    seconds = duration
    for line in out.splitlines():
        if line.startswith("requests:"):
            parts = line.replace(",", "").split()
            succeeded = int(parts[parts.index("succeeded") - 1])
            failed = int(parts[parts.index("failed") - 1]) + int(parts[parts.index("errored") - 1])
        elif line.startswith("finished in"):
            text = line.split()[2].rstrip(",")
            seconds = float(text[:-2]) / 1000 if text.endswith("ms") else float(text.rstrip("s"))
    latencies = sorted(
        int(row.split("\t")[2]) for row in log.read_text().splitlines() if row.count("\t") >= 2
    )
    log.unlink()
    if failed or not succeeded:
        raise RuntimeError(f"h2load saw {failed} failures, {succeeded} successes:\n{out}")
    return succeeded / seconds, latencies, usage.ru_utime + usage.ru_stime


class time_limit:
    """Kill ``proc`` if it outlives ``seconds`` (every loop here is bounded in time)."""

    def __init__(self, proc: subprocess.Popen[bytes], seconds: float) -> None:
        import threading

        self._timer = threading.Timer(seconds, proc.kill)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index] / 1000


def measure(
    h2load: str, r: Running, path: str, body: Path, concurrency: int, duration: float, log: Path
) -> Sample:
    cpu_before = r.cpu_seconds()
    wall_before = time.monotonic()
    rps, latencies, client_cpu = run_h2load(h2load, r.port_for(path), path, body, concurrency, duration, log)
    wall = time.monotonic() - wall_before
    server_cpu = r.cpu_seconds() - cpu_before
    # The server also served the warm-up: charge CPU per request over the whole run.
    total_requests = rps * wall
    return Sample(
        rps=rps,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        server_cpu_us=server_cpu / max(total_requests, 1) * 1e6,
        client_cpu_share=client_cpu / wall,
    )


# -- report --------------------------------------------------------------------------------


def print_table(
    title: str, results: dict[tuple[str, int, str], Cell], unit: str = "req/s", per: int = 1
) -> None:
    print(f"\n### {title}\n")
    print(
        f"| RPC | conc. | server | {unit} | p50 ms | p99 ms | srv CPU us/req | h2load CPU | vs {BASELINE} |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for (rpc, conc, kind), cell in results.items():
        base = results.get((rpc, conc, BASELINE))
        rate = cell.median("rps") * per
        ratio = cell.median("rps") / base.median("rps") if base else float("nan")
        spread = ""
        if len(cell.samples) > 1:
            rates = [s.rps * per for s in cell.samples]
            spread = f" ({min(rates):,.0f}-{max(rates):,.0f})"
        print(
            f"| {rpc} | {conc} | {kind} | {rate:,.0f}{spread} | {cell.median('p50_ms'):.2f} | "
            f"{cell.median('p99_ms'):.2f} | {cell.median('server_cpu_us'):.0f} | "
            f"{cell.median('client_cpu_share'):.0%} | {ratio:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=float, default=2.0, help="timed seconds per run (after 0.5 s warm-up)"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--servers", default=",".join(DEFAULT_KINDS), help="comma-separated: " + ", ".join(KINDS)
    )
    parser.add_argument(
        "--rpcs", default=None, help="default: the unary RPCs (real handlers), all (same-shape)"
    )
    parser.add_argument(
        "--handlers",
        choices=_peers.HANDLERS,
        default="real",
        help="real: the reference services (streaming not measured); same-shape: benchmarks._peers",
    )
    parser.add_argument("--quick", action="store_true", help="1 repeat of 1.5 s runs")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.repeats = 1.5, 1
    h2load = find_h2load()
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        sys.exit(f"unknown server kinds {unknown}; choose from {list(KINDS)}")
    default_rpcs = [*UNARY] if args.handlers == "real" else [*UNARY, *STREAM]
    rpcs = [r.strip() for r in args.rpcs.split(",")] if args.rpcs else default_rpcs
    if args.handlers == "real" and set(rpcs) & set(STREAM):
        sys.exit("streaming is measured with --handlers same-shape (the real agents need a memory service)")
    started = time.monotonic()
    print(code_version())
    with tempfile.TemporaryDirectory(prefix="ventros-bench-") as tmp:
        work = Path(tmp)
        stubs = work / "stubs"
        stubs.mkdir()
        _peers.grpcio_modules(stubs)
        bodies = {}
        for name, body in request_bodies(args.handlers).items():
            bodies[name] = work / f"{name}.bin"
            bodies[name].write_bytes(body)
        if args.handlers == "real":
            costs = _peers.adapter_cost_us(_peers.grpcio_modules(stubs), request_bodies("real"))
            print(
                "grpcio adapter (upb <-> betterproto2) us/call: "
                + ", ".join(f"{k} {v:.0f}" for k, v in costs.items())
            )
            if any(KINDS[k].get("workers", 1) > 1 and KINDS[k]["stack"] == "grpclib" for k in kinds):
                ipc = _peers.store_ipc_cost_us()
                print(
                    "memory store forwarding (ours x2), us/call, median: "
                    + ", ".join(f"{k} {v:.0f}" for k, v in ipc.items())
                )
        running = start_servers(kinds, stubs, work, args.handlers)
        try:
            check_servers(running, args.handlers, rpcs)
            print(
                f"handlers: {args.handlers}; cpus: {os.cpu_count()}; load average at start: {os.getloadavg()[0]:.2f}"
            )
            unary: dict[tuple[str, int, str], Cell] = {}
            stream: dict[tuple[str, int, str], Cell] = {}
            for _ in range(args.repeats):
                for rpc in rpcs:
                    table, concs, path = (
                        (stream, STREAM_CONCURRENCY, STREAM[rpc])
                        if rpc in STREAM
                        else (unary, CONCURRENCY, UNARY[rpc])
                    )
                    for conc in concs:
                        for kind in kinds:
                            if (rpc in STREAM and kind not in STREAM_KINDS) or not serves(
                                kind, rpc, args.handlers
                            ):
                                continue
                            sample = measure(
                                h2load,
                                running[kind],
                                path,
                                bodies[rpc],
                                conc,
                                args.duration,
                                work / "h2load.log",
                            )
                            table.setdefault((rpc, conc, kind), Cell()).samples.append(sample)
        finally:
            stop_servers(running)
    print(f"load average at end: {os.getloadavg()[0]:.2f}; wall time {time.monotonic() - started:.0f} s")
    if unary:
        print_table("Unary", unary)
    if stream:
        print_table(
            f"Server streaming ({_peers.STREAM_CHUNKS} chunks per call)",
            stream,
            unit="chunks/s",
            per=_peers.STREAM_CHUNKS,
        )
    print(
        "\nreq/s: median of repeats (min-max). srv CPU: user+system time of the server process(es) per "
        "request. h2load CPU: share of one core used by the load generator."
    )


if __name__ == "__main__":
    main()
