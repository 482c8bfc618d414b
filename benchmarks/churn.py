"""Connection churn: every SearchMemories call on a new connection, at a fixed rate of new
connections, on our server variants and on grpc.aio.

    python -m benchmarks.churn                    # 200, 800 and 1,600 connections/s, ~1.5 minutes
    python -m benchmarks.churn --rates 100,1000 --seconds 3

`ventros serve --workers N` lets the store owner accept every memory-port connection and hand
some to the workers (ventros_server.handoff), so a new connection waits for the owner's event
loop; `python -m benchmarks.serving` keeps its connections open and never measures that. Here
h2load (its own process) opens connections at a fixed rate (`-r`, in 10 ms periods), each
sending one pre-encoded request and closing, for ``--seconds``. The servers are those of
``benchmarks.serving`` (real handlers, the demo-shaped store), started all at once; the rates
and servers are interleaved per repeat. Per cell:

* calls/s: calls completed / the time h2load took (below the target rate: the server fell behind);
* connect ms: h2load's mean time to connect (TCP; accept backlog included);
* 1st byte ms: mean time from the connection's start to the first response byte;
* p50 / p99 ms: the request itself, from h2load's per-request log;
* srv CPU us/call: user+system CPU of the server process(es) per completed call.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import serving  # noqa: E402

DEFAULT_SERVERS = ("ours", "ours x2", "ours x2 reuseport", "grpcio")
RPC = "SearchMemories"
#: New connections are opened in periods of this length (h2load --rate-period).
PERIOD_S = 0.01


@dataclass
class Churn:
    calls_per_s: float
    connect_ms: float
    first_byte_ms: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float


def _mean_ms(out: str, label: str) -> float:
    """The mean column of one of h2load's timing rows ("time for connect:   min max mean ...")."""
    for line in out.splitlines():
        if line.startswith(label):
            value = line.split(":", 1)[1].split()[2]
            return float(value[:-2]) if value.endswith("ms") else float(value[:-2]) / 1000
    return float("nan")


def run_churn(
    h2load: str, running: serving.Running, body: Path, rate: int, seconds: float, log: Path
) -> Churn:
    path = serving.UNARY[RPC]
    total = max(int(rate * seconds), 1)
    per_period = max(round(rate * PERIOD_S), 1)
    period_ms = max(round(1000 * per_period / rate), 1)  # low rates: 1 connection per longer period
    cmd = [
        h2load,
        f"http://127.0.0.1:{running.port_for(path)}{path}",
        "-d", str(body),
        "-H", "content-type: application/grpc",
        "-H", "te: trailers",
        "-n", str(total),
        "-c", str(total),
        "-r", str(per_period),
        f"--rate-period={period_ms}ms",
        "-t", "1",
        f"--log-file={log}",
    ]  # fmt: skip
    cpu_before = running.cpu_seconds()
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 10 + 60, check=False)
    wall = time.monotonic() - started
    server_cpu = running.cpu_seconds() - cpu_before
    out = proc.stdout + proc.stderr
    succeeded = failed = 0
    for line in out.splitlines():
        if line.startswith("requests:"):
            parts = line.replace(",", "").split()
            succeeded = int(parts[parts.index("succeeded") - 1])
            failed = int(parts[parts.index("failed") - 1]) + int(parts[parts.index("errored") - 1])
    if proc.returncode != 0 or failed or succeeded != total:
        raise RuntimeError(f"h2load: {succeeded} of {total} calls succeeded, {failed} failed:\n{out}")
    latencies = sorted(
        int(row.split("\t")[2]) for row in log.read_text().splitlines() if row.count("\t") >= 2
    )
    log.unlink()
    return Churn(
        calls_per_s=succeeded / wall,
        connect_ms=_mean_ms(out, "time for connect"),
        first_byte_ms=_mean_ms(out, "time to 1st byte"),
        p50_ms=serving.percentile(latencies, 0.50),
        p99_ms=serving.percentile(latencies, 0.99),
        server_cpu_us=server_cpu / succeeded * 1e6,
    )


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def print_table(results: dict[tuple[int, str], list[Churn]]) -> None:
    print(
        "\n| new conn/s | server | calls/s | connect ms | 1st byte ms | p50 ms | p99 ms | srv CPU us/call |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for (rate, kind), samples in results.items():

        def med(attr: str, samples: list[Churn] = samples) -> float:
            return _median([getattr(s, attr) for s in samples])

        print(
            f"| {rate} | {kind} | {med('calls_per_s'):,.0f} | {med('connect_ms'):.2f} | "
            f"{med('first_byte_ms'):.2f} | {med('p50_ms'):.2f} | {med('p99_ms'):.2f} | {med('server_cpu_us'):.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="200,800,1600", help="new connections per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS))
    args = parser.parse_args()
    h2load = serving.find_h2load()
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    print(serving.code_version())
    with tempfile.TemporaryDirectory(prefix="ventros-churn-") as tmp:
        work = Path(tmp)
        stubs, body = serving.stubs_and_body(work, RPC)
        running = serving.start_servers(kinds, stubs, work, "real")
        try:
            serving.check_servers(running, "real", [RPC])
            print(f"cpus: {os.cpu_count()}; load average at start: {os.getloadavg()[0]:.2f}")
            results: dict[tuple[int, str], list[Churn]] = {}
            for _ in range(args.repeats):
                for rate in rates:
                    for kind in kinds:
                        sample = run_churn(
                            h2load, running[kind], body, rate, args.seconds, work / "h2load.log"
                        )
                        results.setdefault((rate, kind), []).append(sample)
        finally:
            serving.stop_servers(running)
    print_table(results)
    print(
        f"\nmedian of {args.repeats} runs of {args.seconds:g} s; load average at the end: {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
