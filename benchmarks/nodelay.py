"""Why listening sockets are created with IPPROTO_TCP: sequential unary latency, side by side.

    python -m benchmarks.nodelay

asyncio sets TCP_NODELAY on accepted connections only when the listening socket reports
proto == IPPROTO_TCP; socket.create_server reports 0. Without TCP_NODELAY, Nagle's algorithm
and delayed ACKs hold each small response back. Same server, same handler, two sockets.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ventros import AgentClient
from ventros_server.server import build_server, listen_socket

from tests.foundation.servicers import TinyAgents

CALLS = 60


async def measure(sock: socket.socket) -> list[float]:
    server, _ = build_server([TinyAgents()])
    await server.start(sock=sock)
    async with AgentClient(f"127.0.0.1:{sock.getsockname()[1]}") as client:
        await client.list_agents()
        timings = []
        for _ in range(CALLS):
            started = time.perf_counter()
            await client.list_agents()
            timings.append((time.perf_counter() - started) * 1000)
    server.close()
    await server.wait_closed()
    return timings


async def main() -> None:
    rows = [
        ("socket.create_server (proto 0)", await measure(socket.create_server(("127.0.0.1", 0)))),
        ("listen_socket (IPPROTO_TCP)", await measure(listen_socket("127.0.0.1", 0))),
    ]
    print(f"ListAvailableAgents, {CALLS} sequential calls on 127.0.0.1\n")
    print(f"{'listening socket':<34} {'p50 ms':>8} {'max ms':>8}")
    for label, timings in rows:
        print(f"{label:<34} {statistics.median(timings):>8.2f} {max(timings):>8.2f}")
    print("\nreproduce: python -m benchmarks.nodelay")


if __name__ == "__main__":
    asyncio.run(main())
