"""Long transport fuzzing run (CI runs a bounded version: tests/foundation/test_garbage.py).

    python scripts/fuzz_transport.py --minutes 10

Sends random bytes, random gRPC frames and random headers to a reference server core on
127.0.0.1 and checks after every attempt that the server still answers and never said UNKNOWN.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ventros import MemoryClient
from ventros_server.testing import running

from tests.foundation.rawh2 import grpc_frame, h2_request, request_headers, send_raw_bytes
from tests.foundation.servicers import EchoMemory

DOCUMENTED = {0, 3, 4, 5, 7, 8, 12, 13, 14, 16}
SEARCH = "/ventros.memory.MemoryService/SearchMemories"


def _random_headers(rng: random.Random) -> dict[str, str | None]:
    return {
        "grpc-timeout": rng.choice([None, "1S", "100m", "x", "999999999S", str(rng.random())]),
        "grpc-encoding": rng.choice([None, "gzip", "identity", "deflate", "\x7f"]),
        "content-type": rng.choice(["application/grpc", "application/grpc+proto", "text/plain", ""]),
        ":path": rng.choice([SEARCH, "/x/y", "/", SEARCH + "/extra"]),
        "x-pad": "p" * rng.choice([0, 10, 10_000, 60_000]),
    }


async def fuzz(minutes: float, seed: int) -> int:
    rng = random.Random(seed)
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + minutes * 60
    async with running([EchoMemory()], max_message_bytes=1 << 20) as address:
        async with MemoryClient(address) as client:
            while time.monotonic() < deadline:
                if rng.random() < 0.2:
                    await send_raw_bytes(address, rng.randbytes(rng.randint(1, 4096)), timeout=1)
                    seen["raw-bytes"] += 1
                else:
                    body = grpc_frame(rng.randbytes(rng.randint(0, 512)), compressed=rng.random() < 0.1)
                    response = await h2_request(
                        address, request_headers(SEARCH, **_random_headers(rng)), body
                    )
                    status = response.grpc_status
                    seen[f"grpc-status {status}" if not response.closed else "closed"] += 1
                    if status is not None and status not in DOCUMENTED:
                        print(f"undocumented status {status}: {response}")
                        return 1
                await client.search_memories(contact_id="c", query="alive", timeout=5)
    print(f"{sum(seen.values())} attempts, server alive after each one")
    for outcome, count in sorted(seen.items()):
        print(f"  {outcome:<20} {count}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sys.exit(asyncio.run(fuzz(args.minutes, args.seed)))


if __name__ == "__main__":
    main()
