"""Write coalescing for grpclib connections, shared by the SDK's channel and the server."""

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


class CoalescingProtocol(H2Protocol):
    """grpclib's client protocol, writing through a CoalescingTransport."""

    def connection_made(self, transport: Any) -> None:
        coalescing: Any = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(coalescing)
