"""ventros_server: the reference implementation of the Ventros contract.

server.py     the grpclib server core: codecs, gzip, caps, health, reflection (build_server)
context.py    call context for handlers and the one place exceptions become statuses
validation.py validation primitives both services share
memory/       MemoryService over a MemoryStore (DuckDB + hnswlib reference store)
agents/       AgentService: agent registry, event-stream runs, LLM backends
auth.py       API keys with scopes; ratelimit.py: per-caller token buckets
app.py        both services in one process with graceful shutdown (what `ventros serve` runs)
multiproc.py  SO_REUSEPORT worker processes; testing.py: `running(services)` for tests
"""

import os as _os

# One BLAS thread. The store's products are small (a contact's vectors: 10,000 x 384 takes
# 0.13-0.45 ms), and OpenBLAS splitting them over both cores of a busy 2-core machine made one
# of them wait for a scheduler slot: 5 ms per product on average in a profile of hot-contact
# searches while other processes ran, against 0.36-0.45 ms on one thread
# (docs/memory.md "Search at scale"). It only takes effect if numpy is not imported yet, which
# holds for `ventros serve`; setdefault leaves an operator's own choice alone.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
