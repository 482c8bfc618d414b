"""The grpclib server every ventros service runs in: codecs, compression, health, reflection.

``build_server(services)`` returns a server with
* our codecs (betterproto2 + protobuf runtime) and the 50 MiB cap (ventros._wire);
* gzip request decompression, ``grpc-accept-encoding`` advertised on every response and
  UNIMPLEMENTED for an encoding we cannot read (grpclib has no compression at all);
* call context and error mapping around every handler (ventros_server.context);
* grpc.health.v1.Health, where "" means the whole server and "agent"/"memory" are aliases
  of the fully-qualified service names (spec section 7.3);
* server reflection (v1 and v1alpha), so grpcurl and ``buf curl`` need no schema.
"""

from __future__ import annotations

import asyncio
import gc
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2
from grpclib import server as grpclib_server
from grpclib.const import Status
from grpclib.events import RecvRequest, listen
from grpclib.health.check import ServiceStatus
from grpclib.health.service import OVERALL, Health
from grpclib.metadata import Deadline, encode_bin_value, encode_grpc_message
from grpclib.protocol import H2Protocol
from grpclib.reflection.service import ServerReflection
from grpclib.server import Handler, Server
from grpclib.utils import DeadlineWrapper, _service_name
from h2.connection import H2Connection
from h2.settings import SettingCodes
from ventros import _wire
from ventros._generated.google_proto_descriptor_pool import default_google_proto_descriptor_pool
from ventros._transport import CoalescingTransport, RepeatedHeaderBlocks
from ventros.common import ErrorDetails

from .context import on_recv_request

#: Spec section 7.3 names services "agent" and "memory"; these are their full names.
SERVICE_ALIASES = {
    "agent": "ventros.agents.AgentService",
    "memory": "ventros.memory.MemoryService",
}


#: The gRPC protocol's TimeoutValue (at most 8 digits) and TimeoutUnit.
_GRPC_TIMEOUT = re.compile(r"[0-9]{1,8}[HMSmun]")


@dataclass(frozen=True)
class _Refusal:
    """Why a request is answered before any handler runs."""

    http_status: int
    status: Status
    code: str
    message: str


def _precheck(headers: dict[str, str], mapping: Mapping[str, Any]) -> _Refusal | None:
    """The protocol-level checks grpclib answers with UNKNOWN (or not at all), answered properly."""
    if headers.get(":method") != "POST":
        return None  # grpclib answers HTTP 405, which is what gRPC clients expect
    content_type = headers.get("content-type", "")
    base, _, subtype = content_type.partition("+")
    if base != "application/grpc" or subtype not in ("", "proto"):
        return _Refusal(
            415, Status.INVALID_ARGUMENT, "UNSUPPORTED_CONTENT_TYPE",
            f"content-type {content_type!r} is not application/grpc or application/grpc+proto",
        )  # fmt: skip
    encoding = headers.get("grpc-encoding", "identity")
    if encoding not in _wire.SUPPORTED_ENCODINGS:
        return _Refusal(
            200, Status.UNIMPLEMENTED, "UNSUPPORTED_ENCODING",
            f"grpc-encoding {encoding!r} is not supported; use one of {_wire.ACCEPT_ENCODING}",
        )  # fmt: skip
    timeout = headers.get("grpc-timeout")
    if timeout is not None and not _GRPC_TIMEOUT.fullmatch(timeout):
        return _Refusal(
            200, Status.INVALID_ARGUMENT, "INVALID_TIMEOUT",
            f"grpc-timeout {timeout!r} is not a gRPC timeout (1-8 digits and a unit of H, M, S, m, u, n)",
        )  # fmt: skip
    if headers.get(":path") not in mapping:
        return _Refusal(
            200, Status.UNIMPLEMENTED, "UNKNOWN_METHOD", f"method {headers.get(':path')} is not served here"
        )
    return None


class VentrosHandler(Handler):
    """grpclib's per-connection handler, plus what it lacks at the protocol level.

    grpclib answers an unknown method, a bad content-type or a malformed grpc-timeout with
    UNKNOWN, and its Trailers-Only responses omit the content-type, which gRPC clients (grpclib's
    own included) then report as UNKNOWN too. ``_precheck`` answers these with documented codes
    and ErrorDetails; it also negotiates grpc-encoding (UNIMPLEMENTED for what we cannot read).
    """

    def accept(self, stream: Any, headers: Any, release_stream: Callable[[], Any]) -> None:
        header_map = dict(headers)
        _advertise_accept_encoding(stream)
        refusal = _precheck(header_map, self.mapping)
        if refusal is None:
            stream.ventros_encoding = header_map.get("grpc-encoding", "identity")
            super().accept(stream, headers, release_stream)
            return

        async def refuse() -> None:
            try:
                await _send_trailers_only(stream, refusal)
            finally:
                release_stream()

        self._tasks[stream] = self.loop.create_task(refuse())


_STATUS_DETAILS = _wire.VentrosStatusDetailsCodec()


async def _send_trailers_only(stream: Any, refusal: _Refusal) -> None:
    details = ErrorDetails(code=refusal.code, message=refusal.message)
    status_details = _STATUS_DETAILS.encode(refusal.status, refusal.message, [details])
    await stream.send_headers(
        [
            (":status", str(refusal.http_status)),
            ("content-type", "application/grpc+proto"),
            ("grpc-status", str(refusal.status.value)),
            ("grpc-message", encode_grpc_message(refusal.message)),
            ("grpc-status-details-bin", encode_bin_value(status_details).decode("ascii")),
        ],
        end_stream=True,
    )


def _advertise_accept_encoding(stream: Any) -> None:
    """Add grpc-accept-encoding to the first HEADERS frame we send on this stream."""
    send_headers = stream.send_headers

    async def send_headers_with_accept(headers: Any, end_stream: bool = False) -> None:
        stream.send_headers = send_headers  # only the first frame carries it
        await send_headers([*headers, ("grpc-accept-encoding", _wire.ACCEPT_ENCODING)], end_stream=end_stream)

    stream.send_headers = send_headers_with_accept


class _DeadlineWrapper(DeadlineWrapper):
    """grpclib's deadline timer, minus its one flaw for our contract.

    grpclib raises a bare TimeoutError when the deadline has already passed as the handler
    starts, and answers that with UNKNOWN. Scheduling the timer at 0 instead cancels the handler
    at its first await, which ends the call as DEADLINE_EXCEEDED like any other late call.
    """

    @contextmanager
    def start(self, deadline: Deadline) -> Iterator[None]:
        def expire() -> None:
            self.cancel(TimeoutError("Deadline exceeded"))

        timer = asyncio.get_running_loop().call_later(deadline.time_remaining(), expire)
        try:
            yield
        finally:
            timer.cancel()


def _install_server_patches() -> None:
    _wire.install()
    grpclib_server.DeadlineWrapper = _DeadlineWrapper  # type: ignore[misc]


#: Streams one connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
#: gRPC clients queue calls beyond it; a peer that ignores it loses the connection.
MAX_CONCURRENT_STREAMS = 128


# h2 remembers how each closed stream ended (72 B each) up to 65,536 per connection, so a
# long-lived connection grew by ~4.7 MB: a write-free soak grew +24.1 % and was still rising;
# with 1,024, +8.0 % and flat (docs/operations.md "Soak"). 1,024 is 8x the streams a
# connection may have open (MAX_CONCURRENT_STREAMS): a frame arriving for a stream closed
# more than 1,024 streams earlier is then a connection error rather than a stream reset.
H2Connection.MAX_CLOSED_STREAMS = 1024


class _VentrosProtocol(H2Protocol):
    max_concurrent_streams = MAX_CONCURRENT_STREAMS
    coalesce_writes = True

    def connection_made(self, transport: Any) -> None:
        if self.coalesce_writes:
            # The protocol object stays grpclib's own (app.py tracks it to drain connections);
            # only the transport it writes to is wrapped.
            transport = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(transport)
        h2_conn = self.connection._connection
        h2_conn.decoder = RepeatedHeaderBlocks(h2_conn.decoder)  # type: ignore[assignment]
        h2_conn.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: self.max_concurrent_streams})
        self.connection.flush()


class VentrosServer(Server):
    """grpclib.server.Server with VentrosHandler, a per-connection stream limit and coalesced
    writes (one send per connection per loop iteration, see ventros._transport)."""

    max_concurrent_streams = MAX_CONCURRENT_STREAMS
    coalesce_writes = True

    def _protocol_factory(self) -> Any:
        self.__gc_step__()
        handler = VentrosHandler(self._mapping, self._codec, self._status_details_codec, self.__dispatch__)
        self._handlers.add(handler)
        protocol = _VentrosProtocol(handler, self._config, self._h2_config)
        protocol.max_concurrent_streams = self.max_concurrent_streams
        protocol.coalesce_writes = self.coalesce_writes
        return protocol

    def serve_from(self, source: Any) -> None:
        """Start without a listening socket of our own: ``source`` (ventros_server.handoff)
        brings accepted connections to ``_protocol_factory`` and stands in for the asyncio
        server that ``start()`` would create (its ``close()`` stops taking connections)."""
        if self._server is not None:
            raise RuntimeError("Server is already started")
        self._server = source
        self._server_closed_fut = self._loop.create_future()


class _Alias:
    """Stands for a service name in grpclib's Health check table."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __mapping__(self) -> dict[str, Any]:
        return {f"/{self._name}/Check": None}


def _health(services: Sequence[Any], statuses: dict[str, ServiceStatus]) -> Health:
    checks: dict[Any, list[ServiceStatus]] = {}
    for service in services:
        name = _service_name(service)
        status = statuses.setdefault(name, ServiceStatus())
        checks[service] = [status]
        for alias, full in SERVICE_ALIASES.items():
            if full == name:
                checks[_Alias(alias)] = [status]
    checks[OVERALL] = list(statuses.values())
    return Health(checks)


def _reflection_pool() -> Any:
    """Our descriptors plus the standard services', so reflection can describe all of them."""
    from grpclib.health.v1 import health_pb2
    from grpclib.reflection.v1 import reflection_pb2

    pool = default_google_proto_descriptor_pool
    for module in (health_pb2, reflection_pb2):
        try:
            pool.FindFileByName(module.DESCRIPTOR.name)
        except KeyError:
            proto = descriptor_pb2.FileDescriptorProto()
            module.DESCRIPTOR.CopyToProto(proto)
            pool.AddSerializedFile(proto.SerializeToString())
    return pool


def build_server(
    services: Iterable[Any],
    *,
    max_message_bytes: int = _wire.MAX_MESSAGE_BYTES,
    max_concurrent_streams: int = MAX_CONCURRENT_STREAMS,
    listeners: Iterable[Callable[[Any], Any]] = (),
    coalesce_writes: bool = True,
) -> tuple[VentrosServer, dict[str, ServiceStatus]]:
    """A ready-to-start server and the health status of each service (set them as they come up).

    ``coalesce_writes=False`` sends every HTTP/2 frame with its own write, as grpclib does."""
    _install_server_patches()
    services = list(services)
    statuses: dict[str, ServiceStatus] = {}
    health = _health(services, statuses)
    all_services = ServerReflection.extend([*services, health], pool=_reflection_pool())
    server = VentrosServer(
        all_services,
        codec=_wire.VentrosCodec(max_message_bytes),
        status_details_codec=_wire.VentrosStatusDetailsCodec(),
    )
    server.max_concurrent_streams = max_concurrent_streams
    server.coalesce_writes = coalesce_writes
    listen(server, RecvRequest, on_recv_request)
    for listener in listeners:
        listener(server)
    return server, statuses


#: The cyclic GC's thresholds once a server is up: the youngest generation is collected every
#: 20,000 net container allocations instead of 700. A unary call allocates a few hundred
#: containers (h2 events, header tuples, messages), so the default collects every few calls.
GC_THRESHOLDS = (20_000, 50, 100)


def tune_gc() -> None:
    """Call once the services are loaded: what exists now (modules, the demo data set, caches)
    is frozen out of the collector's reach and the youngest generation is collected less often.

    Measured on ListAvailableAgents at 16 concurrent calls: GC time 19-22 -> 10-11 us per call,
    server CPU ~265 -> ~250 us per call (docs/benchmarks.md). Reference cycles are still
    collected; only the cadence changes. Process-wide, so it is called by the serving entry
    points (app.run, multiproc.serve_one), not by build_server.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def listen_socket(host: str, port: int, *, reuse_port: bool = False, backlog: int = 512) -> socket.socket:
    """A listening TCP socket for ``server.start(sock=...)``.

    IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the
    listening socket says proto == IPPROTO_TCP (socket.socket(...) and socket.create_server say
    0), and without it Nagle + delayed ACKs add ~40 ms to every unary call (measured: 44.6 ms per
    ListAvailableAgents through `ventros serve` before this, see docs/benchmarks.md).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
