"""Connections steered by one process: it accepts them all and keeps or hands each one off.

With ``ventros serve --workers N`` and the memory service, the process that owns the store also
serves gRPC with the store in-process, while the N workers forward every store call to it
(~0.25 ms more per search, docs/benchmarks.md). SO_REUSEPORT would spread connections at random,
so a lone client would land on a forwarding worker most of the time. Instead the owner alone
listens (``Steering``): it accepts each connection and either serves it itself or passes its file
descriptor to a worker over a Unix socket (SCM_RIGHTS); the worker (``HandedOff``) serves it with
the same protocol factory its listening socket would have used. The owner keeps a connection
while its weighted count is the lowest (``owner_weight`` connections of a worker weigh as much as
one of the owner's, which also runs every forwarded store call; 2 and 3 could not be told apart
on 2 cores, docs/benchmarks.md); ties go to the owner, so the first connection, and a lone
client, is served without a hop. The price: every new connection waits for the owner's event
loop to accept it, i.e. for at most the one call or store call it is running (short ones run on
the loop, long ones in threads: memory.service's _Placement).

Both objects stand in for grpclib's ``asyncio.Server`` (``server._server``): ``close()`` stops
taking connections, which is what app.py's drain calls first.

The server's own agents (each worker's agent service calls the memory service) connect to the
owner over a Unix socket of their own (``internal_path``, same user only) instead of the memory
port: they are served by the owner, with the store in-process, and are not counted, so that idle
agent connections do not push a lone outside client off the owner onto a worker.

A worker tells the owner, one byte per connection, when a connection it was given closes, so
the counts stay right; a worker that is gone (EOF on its channel) gets no more connections, and a
connection whose hand-off fails is served by the owner rather than dropped. Channels are accepted
from this user only (SO_PEERCRED), on a socket in the store's private 0700 directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

log = logging.getLogger("ventros.handoff")

#: What a worker sends when a connection it was handed closes.
_CLOSED = b"c"
#: Connections accepted per wake-up of the listening socket, at most (others wait for the next).
_ACCEPT_BATCH = 64

ProtocolFactory = Callable[[], asyncio.Protocol]


def choose(owner: int, workers: list[int], owner_weight: int) -> int:
    """Who serves the next connection: -1 for the owner, else a worker's index.

    The owner while ``owner * owner_weight`` is at most every worker's count (so ties go to the
    owner), else the worker with the fewest connections."""
    if not workers:
        return -1
    index = min(range(len(workers)), key=workers.__getitem__)
    return -1 if owner * owner_weight <= workers[index] else index


def _serve(
    loop: asyncio.AbstractEventLoop,
    factory: ProtocolFactory,
    sock: socket.socket,
    ssl: Any,
    on_closed: Callable[[], None],
) -> None:
    """Serve an accepted connection on ``loop`` with ``factory``; ``on_closed`` once it ends."""
    sock.setblocking(False)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ended = False

    def end() -> None:  # once, whether the handshake failed or the connection was lost
        nonlocal ended
        if not ended:
            ended = True
            on_closed()

    def counted() -> asyncio.Protocol:
        protocol = factory()
        lost = protocol.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            try:
                lost(exc)
            finally:
                end()

        protocol.connection_lost = connection_lost  # type: ignore[method-assign]
        return protocol

    async def start() -> None:
        try:
            await loop.connect_accepted_socket(counted, sock, ssl=ssl)
        except Exception as exc:  # e.g. a failed TLS handshake: the connection is gone
            log.debug("connection not served: %r", exc)
            sock.close()
            end()

    loop.create_task(start())


class Steering:
    """The owner's side: accepts on ``listener`` and keeps or hands off each connection."""

    def __init__(
        self,
        listener: socket.socket,
        channel_path: str,
        factory: ProtocolFactory,
        *,
        ssl: Any = None,
        owner_weight: int = 2,
        internal_path: str | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._listener = listener
        self._factory = factory
        self._ssl = ssl
        self.owner_weight = owner_weight
        self.owner_connections = 0
        self._workers: list[socket.socket] = []
        self._counts: list[int] = []
        self._channels = _unix_listener(channel_path)
        #: The server's own agents' connections: always served here, never counted.
        self._internal = _unix_listener(internal_path) if internal_path else None
        self.internal_connections = 0
        self._listener.setblocking(False)
        self._closed = False
        self._loop.add_reader(self._channels.fileno(), self._accept_channel)
        self._loop.add_reader(self._listener.fileno(), self._accept)
        if self._internal is not None:
            self._loop.add_reader(self._internal.fileno(), self._accept_internal)

    @property
    def worker_connections(self) -> list[int]:
        return list(self._counts)

    def _accept_channel(self) -> None:
        channel = _accept_same_user(self._channels, "hand-off channel")
        if channel is None:
            return
        channel.setblocking(False)
        self._workers.append(channel)
        self._counts.append(0)
        self._loop.add_reader(channel.fileno(), self._on_channel, channel)

    def _on_channel(self, channel: socket.socket) -> None:
        try:
            data = channel.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the worker is gone or stopping: no more connections for it
            self._drop(channel)
            return
        index = self._workers.index(channel)
        self._counts[index] = max(self._counts[index] - data.count(_CLOSED), 0)

    def _drop(self, channel: socket.socket) -> None:
        if channel in self._workers:
            index = self._workers.index(channel)
            del self._workers[index], self._counts[index]
        self._loop.remove_reader(channel.fileno())
        channel.close()

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: leave it in the backlog for the next wake-up
                log.warning("accept failed: %s", exc)
                return
            self._place(conn)

    def _place(self, conn: socket.socket) -> None:
        while True:
            target = choose(self.owner_connections, self._counts, self.owner_weight)
            if target < 0:
                self.owner_connections += 1
                _serve(self._loop, self._factory, conn, self._ssl, self._owner_closed)
                return
            channel = self._workers[target]
            try:
                socket.send_fds(channel, [b"f"], [conn.fileno()])
            except BlockingIOError:  # its channel is full (a stalled worker): serve it here
                self.owner_connections += 1
                _serve(self._loop, self._factory, conn, self._ssl, self._owner_closed)
                return
            except OSError as exc:  # the worker died: try the next one, or serve it here
                log.warning("hand-off to a worker failed (%s): it gets no more connections", exc)
                self._drop(channel)
                continue
            self._counts[target] += 1
            conn.close()  # the worker holds its own copy of the descriptor now
            return

    def _owner_closed(self) -> None:
        self.owner_connections -= 1

    def _accept_internal(self) -> None:
        assert self._internal is not None
        conn = _accept_same_user(self._internal, "internal memory connection")
        if conn is not None:  # plain: a same-user Unix socket in a 0700 directory, no TLS
            self.internal_connections += 1
            _serve(self._loop, self._factory, conn, None, self._internal_closed)

    def _internal_closed(self) -> None:
        self.internal_connections -= 1

    # asyncio.Server's part that grpclib and app.py use.

    def close(self) -> None:
        """Stop accepting (connections already placed keep being served where they are)."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._listener.fileno())
        self._loop.remove_reader(self._channels.fileno())
        self._listener.close()
        self._channels.close()
        if self._internal is not None:
            self._loop.remove_reader(self._internal.fileno())
            self._internal.close()
        for channel in list(self._workers):
            self._drop(channel)

    async def wait_closed(self) -> None:
        return None


def _unix_listener(path: str) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    listener.setblocking(False)
    return listener


def _accept_same_user(listener: socket.socket, what: str) -> socket.socket | None:
    """The next connection on a Unix ``listener`` if its peer runs as this user (SO_PEERCRED)."""
    try:
        conn, _ = listener.accept()
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as exc:  # e.g. EMFILE: it stays in the backlog for the next wake-up
        log.warning("accept failed: %s", exc)
        return None
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    if uid != os.getuid():
        log.warning("%s from uid %d refused", what, uid)
        conn.close()
        return None
    return conn


class HandedOff:
    """A worker's side: serves the connections the owner passes over ``channel_path``."""

    def __init__(self, channel_path: str, factory: ProtocolFactory, *, ssl: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._factory = factory
        self._ssl = ssl
        self._channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._channel.connect(channel_path)
        self._channel.setblocking(False)
        self._closed = False
        self.served = 0
        self._loop.add_reader(self._channel.fileno(), self._receive)

    def _receive(self) -> None:
        try:
            _, fds, _, _ = socket.recv_fds(self._channel, 256, 64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            fds = []
            self.close()
        else:
            if not fds:  # EOF: the owner stopped accepting
                self.close()
        for fd in fds:
            self.served += 1
            _serve(self._loop, self._factory, socket.socket(fileno=fd), self._ssl, self._closed_one)

    def _closed_one(self) -> None:
        if not self._closed:
            with contextlib.suppress(OSError):
                self._channel.send(_CLOSED)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._channel.fileno())
        self._channel.close()

    async def wait_closed(self) -> None:
        return None
