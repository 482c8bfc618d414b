"""One pooled grpclib channel per client: keepalive, TLS, token, codecs and error mapping."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from grpclib.client import Channel, Handler
from grpclib.config import Configuration
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.protocol import H2Protocol

from . import _wire
from ._exceptions import (
    ConfigurationError,
    DeadlineExceededError,
    ErrorDetails,
    StatusError,
    UnavailableError,
    error_from_grpc,
)
from ._settings import KEEPALIVE_TIME, KEEPALIVE_TIMEOUT, split_address, unix_path
from ._transport import CoalescingProtocol

T = TypeVar("T")


@dataclass(frozen=True)
class TLSConfig:
    """TLS for a channel: a CA bundle to trust, and optionally a client certificate (mutual TLS)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def context(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"cannot load TLS files: {exc}") from exc
        ctx.set_alpn_protocols(["h2"])
        return ctx


@dataclass
class ChannelOptions:
    tls: TLSConfig | bool = False
    token: str | None = None
    max_message_bytes: int = _wire.MAX_MESSAGE_BYTES
    metadata: dict[str, str] = field(default_factory=dict)


def open_channel(address: str, options: ChannelOptions) -> Channel:
    """A lazily-connecting channel; the first call opens the HTTP/2 connection, later calls reuse it.
    ``address``: HOST:PORT, or unix:PATH for a Unix socket."""
    _wire.install()
    path = unix_path(address)
    host, port = (None, None) if path is not None else split_address(address)
    tls = options.tls
    ssl_arg: ssl.SSLContext | bool | None
    ssl_arg = tls.context() if isinstance(tls, TLSConfig) else tls or None
    config = Configuration(
        _keepalive_time=KEEPALIVE_TIME,
        _keepalive_timeout=KEEPALIVE_TIMEOUT,
        _keepalive_permit_without_calls=True,
        _http2_max_pings_without_data=0,
        ssl_target_name_override=tls.server_name if isinstance(tls, TLSConfig) else None,
    )
    return _CoalescingChannel(
        host,
        port,
        path=path,
        ssl=ssl_arg,
        config=config,
        codec=_wire.VentrosCodec(options.max_message_bytes),
        status_details_codec=_wire.VentrosStatusDetailsCodec(),
    )


class _CoalescingChannel(Channel):
    """grpclib's Channel whose connection sends each loop iteration's frames in one write
    (a request's HEADERS and DATA: one send() instead of two; see _transport.py)."""

    def _protocol_factory(self) -> H2Protocol:
        return CoalescingProtocol(Handler(), self._config, self._h2_config)


def call_metadata(options: ChannelOptions) -> dict[str, str]:
    metadata = dict(options.metadata)
    if options.token:
        metadata["authorization"] = f"Bearer {options.token}"
    return metadata


def _unreachable(address: str, exc: BaseException) -> UnavailableError:
    details = ErrorDetails(
        code="UNREACHABLE",
        message=f"cannot reach {address}: {exc}",
        suggestions=[
            "Start a server with `ventros serve` or check the address "
            "(--agent-addr/--memory-addr, PYTHON_ADK_GRPC, MEMORY_SERVICE_GRPC)."
        ],
    )
    return UnavailableError(details.message, details)


def translate(address: str, exc: BaseException) -> StatusError:
    """Any failure of a call, as one of our typed exceptions."""
    if isinstance(exc, StatusError):
        return exc
    if isinstance(exc, GRPCError):
        return error_from_grpc(exc)
    if isinstance(exc, asyncio.TimeoutError):
        details = ErrorDetails(code="DEADLINE_EXCEEDED", message="the call's deadline passed")
        return DeadlineExceededError(details.message, details)
    return _unreachable(address, exc)


_TRANSPORT_ERRORS = (GRPCError, asyncio.TimeoutError, OSError, StreamTerminatedError, ConnectionError)


async def guarded(address: str, call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except _TRANSPORT_ERRORS as exc:
        raise translate(address, exc) from exc


async def guarded_stream(address: str, iterator: AsyncIterator[T]) -> AsyncIterator[T]:
    """Re-raise a stream's failures as typed exceptions, item by item."""
    try:
        async for item in iterator:
            yield item
    except _TRANSPORT_ERRORS as exc:
        raise translate(address, exc) from exc
