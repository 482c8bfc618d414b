"""Write coalescing and HPACK block reuse for grpclib connections, shared by the SDK's channel and
the server."""

from __future__ import annotations

import asyncio
from typing import Any

from grpclib.protocol import H2Protocol


class CoalescingTransport:
    """Collects the writes of one event-loop iteration into one ``transport.write``.

    grpclib writes every HTTP/2 frame as soon as it is built: a unary response is three
    writes (HEADERS, DATA, trailing HEADERS), a request two (HEADERS, DATA), so as many send()
    system calls. Buffering them until the loop's next iteration sends them as one, and under
    concurrency the frames of many streams share a send. Server side (measured: 3 sends per
    call -> ~0.25, and the client's CPU per call down 3-4x; docs/benchmarks.md); client side
    (the SDK's channel): a loopback send() cost ~230 us on the busy 2-core machine, two per
    call (cProfile of MemoryClient.search_memories). Everything else is the real transport's,
    so flow control (pause_writing/resume_writing) still reaches the protocol.
    """

    __slots__ = ("_loop", "_pending", "_scheduled", "_transport")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._pending.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()  # what was written before close() still goes out, as with asyncio's own
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class RepeatedHeaderBlocks:
    """h2's HPACK decoder, which does not decode again a header block it has just decoded.

    Used by the server for request headers (ventros_server.server) and by CoalescingProtocol
    for response headers and trailers (SDK client CPU per ListAvailableAgents call -30 us,
    ~7 %, in 3 of 3 alternating runs of 1,500 sequential calls).

    Clients send the same request headers call after call, and once they are in the dynamic
    table the encoded block is the same bytes; decoding it (pure-Python Huffman and literal
    parsing in hpack) was ~9 % of a ListAvailableAgents call's server time one call at a time
    (py-spy). Skipping it: server CPU per call -5 to -16 % in 6 of 7 A/B runs at concurrency 1
    and 16 (+10 % in the other; docs/benchmarks.md). A block's headers depend on its bytes and on the
    dynamic table, so the blocks kept are forgotten whenever a decode changes the table (entries
    are only added at the front, as new tuple objects, and evicted from the back: its newest
    entry object, length and size limit tell) and whenever h2 changes a limit. Everything else
    (attributes h2 reads and sets) is the decoder's own.
    """

    __slots__ = ("_cache", "_decoder")
    max_blocks = 32

    def __init__(self, decoder: Any) -> None:
        object.__setattr__(self, "_decoder", decoder)
        object.__setattr__(self, "_cache", {})

    def _table_state(self) -> tuple[Any, int, int]:
        table = self._decoder.header_table
        entries = table.dynamic_entries
        return (entries[0] if entries else None), len(entries), table.maxsize

    def decode(self, data: bytes, raw: bool = False) -> list[Any]:
        known = self._cache.get((data, raw))
        if known is not None:
            return list(known)
        before = self._table_state()
        headers = list(self._decoder.decode(data, raw))
        after = self._table_state()
        if after[0] is not before[0] or after[1:] != before[1:]:
            self._cache.clear()  # what it holds was decoded against the table as it was
        elif len(self._cache) < self.max_blocks:
            self._cache[(data, raw)] = tuple(headers)
        return headers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._decoder, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._decoder, name, value)  # e.g. max_header_list_size, from SETTINGS
        self._cache.clear()  # a block kept may no longer pass the decoder's checks


class CoalescingProtocol(H2Protocol):
    """grpclib's client protocol, writing through a CoalescingTransport; response header
    blocks that repeat are not decoded again (RepeatedHeaderBlocks)."""

    cache_header_blocks = True

    def connection_made(self, transport: Any) -> None:
        coalescing: Any = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(coalescing)
        if self.cache_header_blocks:
            h2_conn = self.connection._connection
            h2_conn.decoder = RepeatedHeaderBlocks(h2_conn.decoder)  # type: ignore[assignment]
