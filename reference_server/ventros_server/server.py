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
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from google.protobuf import descriptor_pb2
from grpclib.const import Status
from grpclib.events import RecvRequest, listen
from grpclib.health.check import ServiceStatus
from grpclib.health.service import OVERALL, Health
from grpclib.metadata import encode_bin_value, encode_grpc_message
from grpclib.reflection.service import ServerReflection
from grpclib.server import Handler, Server
from grpclib.utils import _service_name
from ventros import _wire
from ventros._generated.google_proto_descriptor_pool import default_google_proto_descriptor_pool
from ventros.common import ErrorDetails

from .context import on_recv_request

#: Spec section 7.3 names services "agent" and "memory"; these are their full names.
SERVICE_ALIASES = {
    "agent": "ventros.agents.AgentService",
    "memory": "ventros.memory.MemoryService",
}


class VentrosHandler(Handler):
    """grpclib's per-connection handler, plus what it lacks at the protocol level.

    * grpc-encoding negotiation: an encoding we cannot read is UNIMPLEMENTED (gRPC protocol);
    * an unknown method is UNIMPLEMENTED as a proper Trailers-Only response: grpclib omits the
      content-type there, which makes gRPC clients (grpclib's own included) report UNKNOWN.
    """

    def accept(self, stream: Any, headers: Any, release_stream: Callable[[], Any]) -> None:
        header_map = dict(headers)
        encoding = header_map.get("grpc-encoding", "identity")
        _advertise_accept_encoding(stream)
        if encoding not in _wire.SUPPORTED_ENCODINGS:
            message = f"grpc-encoding {encoding!r} is not supported; use one of {_wire.ACCEPT_ENCODING}"
            self._reject(stream, release_stream, "UNSUPPORTED_ENCODING", message)
        elif header_map.get(":method") == "POST" and header_map.get(":path") not in self.mapping:
            message = f"method {header_map.get(':path')} is not served here"
            self._reject(stream, release_stream, "UNKNOWN_METHOD", message)
        else:
            stream.ventros_encoding = encoding
            super().accept(stream, headers, release_stream)

    def _reject(self, stream: Any, release_stream: Callable[[], Any], code: str, message: str) -> None:
        async def reject() -> None:
            try:
                await _send_trailers_only(stream, Status.UNIMPLEMENTED, code, message)
            finally:
                release_stream()

        self._tasks[stream] = self.loop.create_task(reject())


async def _send_trailers_only(stream: Any, status: Status, code: str, message: str) -> None:
    details = ErrorDetails(code=code, message=message)
    status_details = _wire.VentrosStatusDetailsCodec().encode(status, message, [details])
    await stream.send_headers(
        [
            (":status", "200"),
            ("content-type", "application/grpc+proto"),
            ("grpc-status", str(status.value)),
            ("grpc-message", encode_grpc_message(message)),
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


class VentrosServer(Server):
    """grpclib.server.Server with VentrosHandler on every connection."""

    def _protocol_factory(self) -> Any:
        self.__gc_step__()
        handler = VentrosHandler(self._mapping, self._codec, self._status_details_codec, self.__dispatch__)
        self._handlers.add(handler)
        from grpclib.protocol import H2Protocol

        return H2Protocol(handler, self._config, self._h2_config)


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
    listeners: Iterable[Callable[[Any], Any]] = (),
) -> tuple[VentrosServer, dict[str, ServiceStatus]]:
    """A ready-to-start server and the health status of each service (set them as they come up)."""
    _wire.install()
    services = list(services)
    statuses: dict[str, ServiceStatus] = {}
    health = _health(services, statuses)
    all_services = ServerReflection.extend([*services, health], pool=_reflection_pool())
    server = VentrosServer(
        all_services,
        codec=_wire.VentrosCodec(max_message_bytes),
        status_details_codec=_wire.VentrosStatusDetailsCodec(),
    )
    listen(server, RecvRequest, on_recv_request)
    for listener in listeners:
        listener(server)
    return server, statuses


async def serve_forever(server: VentrosServer, host: str, port: int) -> None:
    await server.start(host, port)
    try:
        await server.wait_closed()
    except asyncio.CancelledError:
        server.close()
        await server.wait_closed()
        raise
