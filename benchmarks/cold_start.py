"""Concurrent calls from a server's very first call: SearchMemories (KEYWORD_ONLY) with 16 or 64 in
flight on a server that has served nothing yet, and where its CPU goes (event loop or threads).

    python -m benchmarks.cold_start                   # ours and grpcio, 16 and 64 in flight, ~1 minute
    python -m benchmarks.cold_start --servers ours --concurrency 64 --repeats 3

`python -m benchmarks.serving` calls every server once to check its answer and then starts one
call at a time, so a server learns the cost of a search before any concurrency. A server
restarted under traffic does not: its first searches arrive together. MemoryService decides per
call whether a store call runs on the event loop or in a thread (memory/service.py, _Placement);
this benchmark shows which it settles on. Each run starts fresh server processes (real handlers,
as in benchmarks.serving), sends h2load's load at once, and prints calls/s and the server's CPU
per call, split into the main thread and all other threads (from /proc/PID/task).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import serving  # noqa: E402

RPC = "SearchMemories"


def thread_cpu(pid: int) -> tuple[float, float]:
    """(CPU seconds of the process's main thread, of all its other threads)."""
    tick = os.sysconf("SC_CLK_TCK")
    main = others = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if int(task.name) == pid:
            main += seconds
        else:
            others += seconds
    return main, others


def one_run(
    h2load: str, kind: str, concurrency: int, seconds: float, work: Path, stubs: Path, body: Path
) -> str:
    work = Path(tempfile.mkdtemp(dir=work))  # a ready-file of its own: a fresh server each run
    running = serving.start_servers([kind], stubs, work, "real")
    r = running[kind]
    try:
        before = [thread_cpu(pid) for pid in r.pids]
        rps, _, _ = serving.run_h2load(
            h2load,
            r.port_for(serving.UNARY[RPC]),
            serving.UNARY[RPC],
            body,
            concurrency,
            seconds,
            work / "h2load.log",
        )
        after = [thread_cpu(pid) for pid in r.pids]
    finally:
        serving.stop_servers(running)
    calls = rps * (seconds + 0.5)  # h2load's warm-up is served too
    main = sum(a[0] - b[0] for a, b in zip(after, before, strict=True)) / calls * 1e6
    others = sum(a[1] - b[1] for a, b in zip(after, before, strict=True)) / calls * 1e6
    return f"| {kind} | {concurrency} | {rps:,.0f} | {main:.0f} | {others:.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", default="ours,grpcio")
    parser.add_argument("--concurrency", default="16,64")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    h2load = serving.find_h2load()
    print(serving.code_version())
    print(f"cpus: {os.cpu_count()}; load average at start: {os.getloadavg()[0]:.2f}")
    rows = [
        "| server | in flight | calls/s | main thread CPU us/call | other threads CPU us/call |",
        "|---|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="ventros-cold-") as tmp:
        work = Path(tmp)
        stubs, body = serving.stubs_and_body(work, RPC)
        for _ in range(args.repeats):
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                for kind in (k.strip() for k in args.servers.split(",")):
                    rows.append(one_run(h2load, kind, concurrency, args.seconds, work, stubs, body))
    print("\n".join(rows))
    print(f"\neach row a fresh server; load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
