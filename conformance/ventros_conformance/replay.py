"""Send one request (protobuf JSON) and print what the server answered.

    python -m ventros_conformance.replay HOST:PORT METHOD 'JSON' | @FILE [--token T]

METHOD is an RPC name (SearchMemories, ExecuteAgent, ...). The conformance report prints this
command, with the exact request, for every failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import contract as c
from ._transport import Target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ventros_conformance.replay", description=__doc__.split("\n")[0]
    )
    parser.add_argument("target", help="HOST:PORT")
    parser.add_argument("method", choices=sorted(c.RPCS), help="the RPC")
    parser.add_argument("request", help="protobuf JSON, or @FILE")
    parser.add_argument("--token", default=None)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    body = (
        Path(args.request[1:]).read_text(encoding="utf-8") if args.request.startswith("@") else args.request
    )
    rpc = c.RPCS[args.method]
    request = rpc.request.from_dict(json.loads(body))
    target = Target(args.target, token=args.token, call_timeout=args.timeout)
    try:
        if rpc.streaming:
            outcome = target.stream(rpc.path, request, rpc.response)
            for message in outcome.messages:
                print(message.to_json())
        else:
            outcome = target.unary(rpc.path, request, rpc.response)
            if outcome.ok:
                print(outcome.response.to_json(indent=2))
    finally:
        target.close()
    print(f"status: {outcome.describe()}  ({outcome.elapsed * 1000:.1f} ms)", file=sys.stderr)
    if outcome.details is not None:
        print(f"details: {outcome.details.to_json()}", file=sys.stderr)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
