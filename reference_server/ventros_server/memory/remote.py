"""One memory store shared by several serving processes: the store process and its clients.

A DuckDB file is writable by one process only, so ``ventros serve --workers N`` keeps the store
in ONE process (the store owner) and lets the N worker processes do the gRPC work (HTTP/2,
codec, validation, API keys). Each worker's MemoryService talks to a ``RemoteStore``, which
implements the MemoryStore protocol by forwarding every call to the owner:

    worker: MemoryService -> RemoteStore.aio.search(query)  --(Unix socket)-->  StoreServer
            (awaited on the worker's event loop)         <--(result or exception)--  DuckDBStore

* Transport: ``multiprocessing.connection`` over a Unix socket in a private directory (mode
  0700) with an HMAC challenge (``authkey``) on connect; a message is a length-prefixed pickle
  of ``(method, args, kwargs)``, answered by ``(True, result)`` or ``(False, exception)``
  (plain ``pickle``: ``Connection.send`` builds a ForkingPickler per message, which is slower).
  Pickles are only ever read from authenticated peers of that private socket.
* Concurrency: each call in flight has its own connection (one call at a time on it); the
  owner answers all connections from one thread (StoreServer), or from its event loop when it
  also serves gRPC (LoopStoreServer, ``ventros serve --workers N``), and hands calls that wait
  on a network embedder to a small pool.
* Semantics: the owner's store is the only one, so a write acknowledged through one worker is
  seen at once through every other (read-your-writes). Exceptions travel back as themselves,
  so the service maps them to the same status codes as in one process.
* A worker that cannot reach the owner (it died, or is stopping) raises UnavailableError
  ("STORE_UNAVAILABLE"), i.e. gRPC UNAVAILABLE with ErrorDetails, never UNKNOWN.

``start_store_process(opener, *args)`` starts the owner (a "spawn" process that runs
``opener(*args)`` to open and load the store, then serves it) and returns a ``StoreProcess``
(``address``, ``authkey``, ``stop()``); ``RemoteStore(address, authkey)`` is the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import os
import pickle
import secrets
import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Client, Connection, Listener, wait
from typing import Any

import numpy as np
from ventros import UnavailableError

from .store import (
    Contact,
    ContactContext,
    EdgeRecord,
    Entity,
    FusionWeights,
    MemoryRecord,
    MessageRecord,
    NewMemory,
    Purchase,
    RelatedRef,
    RelatedResult,
    ScoredMemory,
    SearchMode,
    SearchQuery,
    SearchResult,
)

log = logging.getLogger("ventros.memory.remote")

#: What a worker may ask of the owner: the MemoryStore protocol (``close`` excepted: the owner
#: closes its store itself) and the store's embedder.
METHODS = frozenset(
    {
        "search",
        "store_memory",
        "contact_context",
        "related_entities",
        "add_contacts",
        "add_messages",
        "add_purchases",
        "add_entities",
        "add_edges",
        "add_memories",
        "embed",
        "describe_embedder",
    }
)


#: Embedders that compute in this process (their ``name`` prefix): calls that embed are CPU work.
_LOCAL_EMBEDDERS = ("offline-", "minilm-")
_NO_EMBEDDING_MODES = (SearchMode.KEYWORD, SearchMode.GRAPH)


class RemoteStoreError(RuntimeError):
    """The owner raised an exception that could not be sent back as itself (its repr is kept)."""


def store_unavailable(reason: str) -> UnavailableError:
    return UnavailableError.of(  # type: ignore[return-value]
        "STORE_UNAVAILABLE",
        f"the memory store process cannot be reached: {reason}",
        suggestions=["Retry later; the server's log says why its store process stopped."],
    )


# Search results travel as tuples of plain values rather than pickled dataclasses: pickling a
# dataclass goes through copyreg and a state dict per object, so the 6-memory answer of the
# benchmark's search cost ~42 us to dump and ~33 us to load; flat, ~20 and ~24 us including
# rebuilding the dataclasses (/tmp harness, same machine, load average ~2).


def _flat_search(result: SearchResult) -> tuple[Any, ...]:
    w = result.weights
    rows = [
        (s.score, s.sources, m.id, m.contact_id, m.content, m.memory_type, m.metadata, m.created_at,
         [(r.entity_type, r.entity_id, r.relationship, r.strength) for r in m.related], m.embedding)
        for s in result.memories
        for m in (s.memory,)
    ]  # fmt: skip
    counts = (result.total_count, result.vector_matches, result.keyword_matches, result.graph_matches)
    return (*counts, w.vector, w.keyword, w.graph, rows)


def _search_result(flat: tuple[Any, ...]) -> SearchResult:
    total, vector, keyword, graph, w_vector, w_keyword, w_graph, rows = flat
    memories = [
        ScoredMemory(
            MemoryRecord(
                id_, contact, content, type_, metadata, created, [RelatedRef(*r) for r in related], emb
            ),
            score,
            sources,
        )
        for score, sources, id_, contact, content, type_, metadata, created, related, emb in rows
    ]
    return SearchResult(memories, total, vector, keyword, graph, FusionWeights(w_vector, w_keyword, w_graph))


#: How a client turns the owner's answer to a method back into the store's own type.
_UNPACK: dict[str, Callable[[Any], Any]] = {"search": _search_result}
#: The store methods AsyncRemoteStore offers as coroutines (the ones MemoryService calls).
_AWAITED = frozenset({"search", "store_memory", "contact_context", "related_entities"})


def _result(method: str, ok: bool, value: Any) -> Any:
    """The owner's answer to ``method``: its return value (unpacked), or its exception raised."""
    if not ok:
        raise value
    unpack = _UNPACK.get(method)
    return value if unpack is None else unpack(value)


# -- the owner's side ----------------------------------------------------------------------


class StoreServer:
    """Serves ``store`` on a Unix socket at ``address`` to clients that know ``authkey``.

    One thread answers every connection in turn (``multiprocessing.connection.wait``): store
    calls are CPU work under the store's lock anyway, and one thread per connection made the
    owner spend about twice the search's own CPU on thread switches and GIL hand-offs. Calls
    that wait on a network embedder (``network_bound``) run in a small pool instead, so that a
    slow embeddings API does not hold up the searches of every worker.
    """

    def __init__(self, store: Any, address: str, authkey: bytes, *, pool_size: int = 4) -> None:
        self.store = store
        self.address = address
        self._listener = Listener(address, family="AF_UNIX", authkey=authkey)
        self._idle_connections: set[Connection] = set()  # waiting for their next request
        self._busy: set[Connection] = set()  # a request of theirs runs in the pool
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        self._pool = ThreadPoolExecutor(pool_size, thread_name_prefix="store-call")
        self._remote_embedder = not str(getattr(store.embedder, "name", "")).startswith(_LOCAL_EMBEDDERS)
        self._closed = False
        self._threads = [
            threading.Thread(target=self._accept_loop, name="store-accept", daemon=True),
            threading.Thread(target=self._serve_loop, name="store-serve", daemon=True),
        ]

    def start(self) -> StoreServer:
        for thread in self._threads:
            thread.start()
        return self

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn = self._listener.accept()
            except (OSError, EOFError, multiprocessing.AuthenticationError) as exc:
                if self._closed:
                    return
                log.warning("store connection refused: %s", exc)
                continue
            self._resume(conn)

    def _resume(self, conn: Connection) -> None:
        """Hand ``conn`` (new, or done with its pooled call) back to the serving loop."""
        with self._lock:
            self._busy.discard(conn)
            self._idle_connections.add(conn)
        with contextlib.suppress(OSError):
            self._wake_w.send_bytes(b"")

    def _serve_loop(self) -> None:
        while not self._closed:
            with self._lock:
                waiting = [self._wake_r, *self._idle_connections]
            for ready in wait(waiting, timeout=1.0):
                if ready is self._wake_r:
                    self._wake_r.recv_bytes()
                else:
                    self._serve_one(ready)  # type: ignore[arg-type]

    def _serve_one(self, conn: Connection) -> None:
        try:
            request = pickle.loads(conn.recv_bytes())
        except (OSError, EOFError):  # the worker closed its connection (or stopped)
            with self._lock:
                self._idle_connections.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()
            return
        if self._closed:  # arrived after SIGTERM: refuse it, as a draining server does
            self._send(conn, (False, store_unavailable("the store process is stopping")))
        elif self._network_bound(request):
            with self._lock:
                self._idle_connections.discard(conn)
                self._busy.add(conn)
            self._pool.submit(self._pooled, conn, request)
        else:
            self._send(conn, self._answer(request))

    def _pooled(self, conn: Connection, request: Any) -> None:
        self._send(conn, self._answer(request))
        self._resume(conn)

    def _network_bound(self, request: Any) -> bool:
        """Whether the call may wait on the embeddings API (an embedder outside this process)."""
        if not self._remote_embedder or not isinstance(request, tuple) or len(request) != 3:
            return False
        method, args, _ = request
        if method == "search":
            return bool(args) and getattr(args[0], "mode", None) not in _NO_EMBEDDING_MODES
        return method in ("store_memory", "add_memories", "embed")

    def _answer(self, request: Any) -> tuple[bool, Any]:
        try:
            method, args, kwargs = request
            if method not in METHODS:
                raise RemoteStoreError(f"unknown store method {method!r}")
            return True, self._call(method, args, kwargs)
        except Exception as exc:  # sent back and re-raised in the worker, as in one process
            return False, exc

    def _call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if method == "embed":
            return self.store.embedder.embed(*args, **kwargs)
        if method == "describe_embedder":
            return self.store.embedder.name, self.store.embedder.dim
        if method == "search":
            return _flat_search(self.store.search(*args, **kwargs))
        return getattr(self.store, method)(*args, **kwargs)

    @staticmethod
    def _send(conn: Connection, reply: tuple[bool, Any]) -> bool:
        try:
            conn.send_bytes(_dump_reply(reply))
        except (OSError, EOFError):
            return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting and serving, let pooled calls finish (up to ``timeout``), drop connections."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with contextlib.suppress(OSError):
            self._wake_w.send_bytes(b"")
        self._threads[1].join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            connections = [*self._idle_connections, *self._busy]
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.close()


def _dump_reply(reply: tuple[bool, Any]) -> bytes:
    try:
        return pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # an exception or result that does not pickle
        return pickle.dumps((False, RemoteStoreError(f"{reply[1]!r} (not sent back: {exc})")))


class LoopStoreServer(StoreServer):
    """StoreServer answering on the running event loop instead of a thread of its own.

    For a store owner that also serves gRPC on that loop (``ventros serve --workers N``): a
    second thread would contend with the loop for the GIL, and a forwarded call could wait up to
    the 5 ms switch interval while the loop serves its own connections. Here the loop answers
    forwarded calls between its own, each in one piece (a search is ~0.25 ms). Connections are
    still accepted and authenticated (the blocking HMAC handshake) in a thread, and calls that
    wait on a network embedder still run in the pool."""

    def __init__(self, store: Any, address: str, authkey: bytes, *, pool_size: int = 4) -> None:
        super().__init__(store, address, authkey, pool_size=pool_size)
        self._loop = asyncio.get_running_loop()
        self._threads = self._threads[:1]  # the accepting thread only
        self._channels: set[_StoreChannel] = set()

    def _resume(self, conn: Connection) -> None:  # the accepting thread: a new connection
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self._loop.call_soon_threadsafe(self._adopt, conn)

    def _adopt(self, conn: Connection) -> None:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        conn.close()
        sock.setblocking(False)
        if self._closed:
            sock.close()
            return
        self._loop.create_task(self._loop.create_unix_connection(lambda: _StoreChannel(self), sock=sock))

    def handle(self, channel: _StoreChannel, message: bytes) -> None:
        try:
            request = pickle.loads(message)
        except Exception as exc:
            channel.reply((False, RemoteStoreError(f"unreadable request: {exc!r}")))
            return
        if self._closed:
            channel.reply((False, store_unavailable("the store process is stopping")))
        elif self._network_bound(request):
            pooled = self._loop.run_in_executor(self._pool, self._answer, request)
            pooled.add_done_callback(lambda done: channel.reply(done.result()))
        else:
            channel.reply(self._answer(request))

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting and answering, let pooled calls finish, drop connections."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for channel in list(self._channels):
            if channel.transport is not None:
                channel.transport.close()

    @property
    def clients(self) -> int:
        """Worker connections open now."""
        return len(self._channels)


class _StoreChannel(asyncio.Protocol):
    """One worker connection of a LoopStoreServer (one call at a time, answered in order)."""

    def __init__(self, server: LoopStoreServer) -> None:
        self._server = server
        self._buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._server._channels.add(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (message := _take_frame(self._buffer)) is not None:
            self._server.handle(self, message)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._channels.discard(self)

    def reply(self, reply: tuple[bool, Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_frame(_dump_reply(reply)))


class StoreProcess:
    """The store-owner process, seen from the process that started it."""

    def __init__(self, process: Any, directory: str, authkey: bytes) -> None:
        self.process = process
        self.directory = directory
        self.address = os.path.join(directory, "store.sock")
        self.authkey = authkey

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def alive(self) -> bool:
        return bool(self.process.is_alive())

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM: the owner stops accepting, finishes running calls and closes its store."""
        if self.process.is_alive() and self.process.pid:
            os.kill(self.process.pid, signal.SIGTERM)
        self.process.join(timeout)
        if self.process.is_alive():
            log.warning("the store process did not stop within %.0fs: killed", timeout)
            self.process.kill()
            self.process.join(5)
        shutil.rmtree(self.directory, ignore_errors=True)
        return self.process.exitcode  # type: ignore[no-any-return]


def start_store_process(
    opener: Callable[..., Any],
    *args: Any,
    ready_timeout: float = 300.0,
    stopping: Callable[[], bool] = lambda: False,
    main: Callable[..., None] | None = None,
) -> StoreProcess:
    """Start the owner: a process that runs ``opener(*args)`` (module-level, picklable) to open
    and load the store, serves it until SIGTERM and then closes it. Returns once it serves.
    Raises RuntimeError when it exits first (its log says why) or takes over ``ready_timeout``.
    ``main``: the process's entry point instead of the plain store server's (same arguments,
    it must release ``ready`` once it serves; multiproc's owner also serves gRPC)."""
    directory = tempfile.mkdtemp(prefix="ventros-store-")  # mode 0700: this user only
    authkey = secrets.token_bytes(32)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Semaphore(0)
    handle = StoreProcess(None, directory, authkey)
    process = ctx.Process(
        target=main or _store_main,
        args=(opener, args, handle.address, authkey, ready, logging.getLogger().level),
        name="ventros-memory-store",
    )
    handle.process = process
    process.start()
    deadline = time.monotonic() + ready_timeout
    while not ready.acquire(timeout=0.1):
        if not process.is_alive() or time.monotonic() > deadline or stopping():
            exited = not process.is_alive()
            handle.stop(timeout=5)
            if exited:
                raise RuntimeError(
                    f"the memory store process exited during start-up (exit code {process.exitcode}); "
                    "see its log above"
                )
            if stopping():
                raise RuntimeError("stopped while the memory store process was starting")
            raise RuntimeError(f"the memory store process did not open its store within {ready_timeout:.0f}s")
    return handle


def _store_main(
    opener: Callable[..., Any], args: tuple[Any, ...], address: str, authkey: bytes, ready: Any, level: int
) -> None:
    # Own process group: a terminal's Ctrl-C reaches the parent only, which stops the workers
    # first and this process last (the workers' running calls may still need the store).
    os.setpgrp()
    logging.basicConfig(
        level=level or logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s[%(process)d]: %(message)s",
        datefmt="%H:%M:%S",
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    from ..server import tune_gc

    parent = os.getppid()
    store = opener(*args)
    tune_gc()  # as a serving process does: the loaded store out of the collector's reach
    server = StoreServer(store, address, authkey).start()
    log.info("memory store process %d serves its store to the workers", os.getpid())
    ready.release()
    try:
        while not stop.wait(0.5):
            if os.getppid() != parent:  # the parent was killed: nobody would ever stop us
                log.warning("the parent process is gone: closing the memory store")
                break
    finally:
        server.close()
        store.close()
        log.info("memory store closed")


# -- the workers' side ---------------------------------------------------------------------


class RemoteEmbedder:
    """The owner's embedder, for code that reads ``store.embedder`` (name, dim, embed)."""

    def __init__(self, store: RemoteStore) -> None:
        self._store = store
        self.name, self.dim = store._call("describe_embedder")
        self.recomputable = False  # only the owner's store decides what it stores

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._store._call("embed", list(texts))  # type: ignore[no-any-return]


class RemoteStore:
    """A MemoryStore whose calls run in the store-owner process (see the module docstring).

    Blocking, like DuckDBStore, for callers in threads: each calling thread gets its own
    connection. ``aio`` has the same calls as coroutines, which MemoryService awaits on its
    event loop instead of sending them through a thread. ``close()`` closes the connections,
    not the store."""

    def __init__(self, address: str, authkey: bytes) -> None:
        self.address = address
        self._authkey = authkey
        self._local = threading.local()
        self._connections: set[Connection] = set()
        self._lock = threading.Lock()
        self._embedder: RemoteEmbedder | None = None
        self._closed = False
        self.aio = AsyncRemoteStore(self)

    @property
    def embedder(self) -> RemoteEmbedder:
        if self._embedder is None:
            self._embedder = RemoteEmbedder(self)
        return self._embedder

    def _connection(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise store_unavailable("this worker is shutting down")
            conn = Client(self.address, family="AF_UNIX", authkey=self._authkey)
            self._local.conn = conn
            with self._lock:
                self._connections.add(conn)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                self._connections.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            conn = self._connection()
            conn.send_bytes(pickle.dumps((method, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL))
            ok, value = pickle.loads(conn.recv_bytes())
        except (OSError, EOFError, multiprocessing.AuthenticationError) as exc:
            self._drop()  # the next call reconnects, should the owner be back
            raise store_unavailable(str(exc) or type(exc).__name__) from exc
        return _result(method, ok, value)

    # The MemoryStore protocol.

    def store_memory(self, memory: NewMemory) -> MemoryRecord:
        return self._call("store_memory", memory)  # type: ignore[no-any-return]

    def search(self, query: SearchQuery) -> SearchResult:
        return self._call("search", query)  # type: ignore[no-any-return]

    def contact_context(
        self, contact_id: str, *, history_limit: int, entity_types: frozenset[str], include_graph: bool
    ) -> ContactContext | None:
        return self._call(  # type: ignore[no-any-return]
            "contact_context",
            contact_id,
            history_limit=history_limit,
            entity_types=entity_types,
            include_graph=include_graph,
        )

    def related_entities(
        self,
        entity_id: str,
        *,
        entity_type: str | None,
        target_types: frozenset[str],
        max_depth: int,
        limit: int,
    ) -> list[RelatedResult] | None:
        return self._call(  # type: ignore[no-any-return]
            "related_entities",
            entity_id,
            entity_type=entity_type,
            target_types=target_types,
            max_depth=max_depth,
            limit=limit,
        )

    def add_contacts(self, contacts: Iterable[Contact]) -> int:
        return self._call("add_contacts", list(contacts))  # type: ignore[no-any-return]

    def add_messages(self, messages: Iterable[MessageRecord]) -> int:
        return self._call("add_messages", list(messages))  # type: ignore[no-any-return]

    def add_purchases(self, purchases: Iterable[Purchase]) -> int:
        return self._call("add_purchases", list(purchases))  # type: ignore[no-any-return]

    def add_entities(self, entities: Iterable[Entity]) -> int:
        return self._call("add_entities", list(entities))  # type: ignore[no-any-return]

    def add_edges(self, edges: Iterable[EdgeRecord]) -> int:
        return self._call("add_edges", list(edges))  # type: ignore[no-any-return]

    def add_memories(self, memories: list[NewMemory]) -> int:
        return self._call("add_memories", list(memories))  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close this worker's connections (the owner keeps its store open). Callable from any
        thread (app.py closes the store from a worker thread)."""
        self._closed = True
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.close()
        self.aio.close()


# -- the workers' side, on the event loop --------------------------------------------------

# A store call from MemoryService used to go through asyncio.to_thread: the loop wakes a thread,
# which sends and blocks on the reply, then wakes the loop again. Awaiting the reply on the loop
# itself saves the two thread wake-ups and the GIL hand-offs around them (measurements:
# docs/benchmarks.md, "the memory workers one call at a time").

_HEADER = struct.Struct("!i")
_LONG_HEADER = struct.Struct("!Q")


def _frame(payload: bytes) -> bytes:
    """multiprocessing.connection's framing (what the owner's Connection.recv_bytes reads)."""
    if len(payload) > 0x7FFFFFFF:
        return _HEADER.pack(-1) + _LONG_HEADER.pack(len(payload)) + payload
    return _HEADER.pack(len(payload)) + payload


def _take_frame(buffer: bytearray) -> bytes | None:
    """The first whole message in ``buffer``, if any (removed from it)."""
    if len(buffer) < 4:
        return None
    (size,) = _HEADER.unpack_from(buffer)
    start = 4
    if size == -1:
        if len(buffer) < 12:
            return None
        (size,) = _LONG_HEADER.unpack_from(buffer, 4)
        start = 12
    if len(buffer) < start + size:
        return None
    message = bytes(buffer[start : start + size])
    del buffer[: start + size]
    return message


class _Channel(asyncio.Protocol):
    """One authenticated connection to the owner, on the event loop; one call at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._reply: asyncio.Future[bytes] | None = None
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        reply = _take_frame(self._buffer)
        if reply is not None and self._reply is not None and not self._reply.done():
            self._reply.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(exc or EOFError("the store process closed the connection"))

    async def call(self, payload: bytes) -> bytes:
        if self._lost or self.transport is None or self.transport.is_closing():
            raise EOFError("the store process closed the connection")
        self._reply = asyncio.get_running_loop().create_future()
        try:
            self.transport.write(_frame(payload))
            return await self._reply
        finally:
            self._reply = None

    def close_from(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Close, from the loop's thread or any other (the transport belongs to ``loop``)."""
        transport = self.transport
        if transport is None or loop is None or loop.is_closed() or not loop.is_running():
            with contextlib.suppress(OSError):
                self.sock.close()
        elif asyncio._get_running_loop() is loop:
            transport.close()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(transport.close)


class AsyncRemoteStore:
    """RemoteStore's calls as coroutines, awaited on the caller's event loop (``RemoteStore.aio``).

    Up to ``max_connections`` calls are in flight per worker, each on a connection of its own
    (the owner answers a connection's calls in order: one slow call must not hold up others).
    Same answers, exceptions and failure behaviour as RemoteStore: an owner that cannot be
    reached is UnavailableError "STORE_UNAVAILABLE". A cancelled call drops its connection,
    whose late answer would otherwise be read as the next call's."""

    #: As many calls in flight as asyncio.to_thread allowed on this 2-core machine (its default
    #: pool has min(32, cores + 4) threads) and a little more: the owner answers one at a time.
    max_connections = 8

    def __init__(self, store: RemoteStore) -> None:
        self._store = store
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[_Channel] = []
        self._open: set[_Channel] = set()
        self._lock = threading.Lock()  # close() may run in another thread

    def _bind(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:  # first call, or a new loop
            self.close()
            self._loop, self._slots = loop, asyncio.Semaphore(self.max_connections)
        return self._slots

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._store._closed:
            raise store_unavailable("this worker is shutting down")
        payload = pickle.dumps((method, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        async with self._bind():
            ok, value = pickle.loads(await self._exchange(payload))
        return _result(method, ok, value)

    async def _exchange(self, payload: bytes) -> bytes:
        channel = self._idle.pop() if self._idle else None
        answered = False
        try:
            if channel is None:
                channel = await self._connect()
            reply = await channel.call(payload)
            answered = True
            return reply
        except (OSError, EOFError, multiprocessing.AuthenticationError) as exc:
            raise store_unavailable(str(exc) or type(exc).__name__) from exc
        finally:
            if channel is not None:
                if answered and not self._store._closed:
                    self._idle.append(channel)
                else:
                    with self._lock:
                        self._open.discard(channel)
                    channel.close_from(self._loop)

    async def _connect(self) -> _Channel:
        # multiprocessing's HMAC handshake is blocking: run once per connection, in a thread.
        store = self._store
        conn = await asyncio.to_thread(Client, store.address, family="AF_UNIX", authkey=store._authkey)
        try:
            sock = socket.socket(fileno=os.dup(conn.fileno()))
        finally:
            conn.close()
        sock.setblocking(False)
        try:
            _, channel = await asyncio.get_running_loop().create_unix_connection(
                lambda: _Channel(sock), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        with self._lock:
            self._open.add(channel)
        return channel

    def close(self) -> None:
        """Close every connection (from any thread); the next call opens new ones, if allowed."""
        with self._lock:
            channels = list(self._open)
            self._open.clear()
            self._idle.clear()
        for channel in channels:
            channel.close_from(self._loop)

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        """What MemoryService awaits: ``aio.search(query)`` etc., the store's methods by name."""
        if method not in _AWAITED:
            raise AttributeError(method)
        return functools.partial(self.call, method)
