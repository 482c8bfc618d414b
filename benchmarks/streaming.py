"""Server-streaming chunks per second (StreamAgentExecution-shaped handler, 50 chunks a call).

    python -m benchmarks.streaming      # about 1 minute

The same machinery as benchmarks.serving (h2load in its own process, interleaved runs, every
variant in its own process), restricted to StreamAgentExecution at concurrency 1 and 16, on the same-shape handlers
(benchmarks._peers): a real agent run calls the memory service, which would be measured too.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import serving

if __name__ == "__main__":
    if "--servers" not in sys.argv:
        sys.argv += ["--servers", ",".join(serving.STREAM_KINDS)]
    sys.argv += ["--rpcs", "StreamAgentExecution", "--handlers", "same-shape"]
    serving.main()
