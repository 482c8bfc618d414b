"""The reference MemoryService: DuckDB + hnswlib hybrid search, knowledge graph, contact context.

Public API (what the CLI and the agents use):

    from ventros_server.memory import MemoryService, open_store, load_demo, import_jsonl

    store = open_store("memory.duckdb")             # or ":memory:"; embedder="offline" by default
    load_demo(store)                                # the deterministic demo CRM data set
    report = import_jsonl(store, "crm.jsonl", progress=print)
    server, statuses = build_server([MemoryService(store)])
    ...
    store.close()

See docs/memory.md for the design and the measurements behind it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..demo_data import load_demo
    from .duckdb_store import DuckDBStore
    from .embedders import Embedder, make_embedder
    from .importer import import_jsonl
    from .service import MemoryService
    from .store import (
        EmbedderMismatchError,
        FusionWeights,
        ImportReport,
        MemoryStore,
        SchemaTooNewError,
        StoreError,
    )

#: The public names, imported on first use (PEP 562): the import's worker process loads
#: ``importer`` and what it needs, not DuckDB, grpclib and the SDK (0.38 s of its start-up,
#: measured with ``python -X importtime``).
_EXPORTS = {
    "load_demo": "..demo_data",
    "DuckDBStore": ".duckdb_store",
    "Embedder": ".embedders",
    "make_embedder": ".embedders",
    "import_jsonl": ".importer",
    "MemoryService": ".service",
    **dict.fromkeys(
        [
            "EmbedderMismatchError",
            "FusionWeights",
            "ImportReport",
            "MemoryStore",
            "SchemaTooNewError",
            "StoreError",
        ],
        ".store",
    ),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


def open_store(
    path: str,
    *,
    embedder: str | Embedder = "offline",
    reembed: bool = False,
    weights: FusionWeights | None = None,
    clock: Callable[[], datetime] | None = None,
    **embedder_options: Any,
) -> DuckDBStore:
    """Open (creating or migrating) the DuckDB memory store at ``path`` (":memory:" allowed).

    ``embedder`` is "offline" (default), "openai" or "minilm", or an Embedder instance; the
    remaining keyword arguments configure it (e.g. base_url=, api_key=, model= for "openai").
    Raises SchemaTooNewError / EmbedderMismatchError (both StoreError) with a message naming
    the fix; ``reembed=True`` re-embeds every memory when the embedder changed. ``weights``
    sets the HYBRID fusion weights; ``clock`` the "now" of churn risk and of new memories
    (e.g. the demo data's as_of).
    """
    from .duckdb_store import DuckDBStore
    from .embedders import make_embedder

    instance = embedder if not isinstance(embedder, str) else make_embedder(embedder, **embedder_options)
    extra: dict[str, Any] = {"weights": weights} if weights is not None else {}
    if clock is not None:
        extra["clock"] = clock
    return DuckDBStore(path, instance, reembed=reembed, **extra)


__all__ = [
    "DuckDBStore",
    "Embedder",
    "EmbedderMismatchError",
    "FusionWeights",
    "ImportReport",
    "MemoryService",
    "MemoryStore",
    "SchemaTooNewError",
    "StoreError",
    "import_jsonl",
    "load_demo",
    "make_embedder",
    "open_store",
]
