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
