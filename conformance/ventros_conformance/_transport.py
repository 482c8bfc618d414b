"""How the suite talks to the server under test: grpclib calls that never raise, and raw HTTP/2.

Every check observes a call as an :class:`Outcome`: the gRPC status, the ErrorDetails exactly as
the server sent them (``None`` when the ``grpc-status-details-bin`` trailer was absent or held no
``ventros.common.ErrorDetails``; the SDK would paper over that), the response(s) and the time
taken. Nothing here is specific to the reference server: only the public contract over gRPC.

The calls run on one event loop in a background thread (:class:`Target`), so the checks are plain
synchronous pytest functions: the suite needs neither pytest-asyncio nor an async Hypothesis.

:func:`raw_call` speaks HTTP/2 directly (h2, which grpclib already depends on) for what a normal
client will not send: a gzip-compressed frame, an unknown grpc-encoding, a message above the
50 MiB cap, a ``grpc-timeout`` that has already expired.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import struct
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import betterproto2
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from ventros import _wire
from ventros.common import ErrorDetails

T = TypeVar("T")

ERROR_DETAILS_TYPE_URL = _wire.ERROR_DETAILS_TYPE_URL


class RawBytes(bytes):
    """A request already encoded (e.g. with an unknown enum value or a hand-made field)."""


class _ConformanceCodec(_wire.VentrosCodec):
    """Our wire codec, plus pass-through of hand-encoded requests and no client-side size cap."""

    def __init__(self) -> None:
        super().__init__(max_message_bytes=2**31 - 1)

    def encode(self, message: Any, message_type: Any) -> bytes:
        if isinstance(message, RawBytes):
            return bytes(message)
        return super().encode(message, message_type)


class _DetailsCodec(_wire.VentrosStatusDetailsCodec):
    """Keeps every detail (not only ErrorDetails) so a check can say what the server sent instead."""

    def decode(self, status: Status, message: str | None, data: bytes) -> Sequence[Any]:
        try:
            proto = status_pb2.Status.FromString(data)
        except DecodeError:
            return [_Undecodable(data)]
        out: list[Any] = []
        for detail in proto.details:
            if detail.type_url == ERROR_DETAILS_TYPE_URL:
                try:
                    out.append(ErrorDetails.parse(detail.value))
                except Exception:  # a broken detail is reported, not raised
                    out.append(_Undecodable(detail.value))
            else:
                out.append(_Foreign(detail.type_url))
        return out


@dataclass(frozen=True)
class _Undecodable:
    data: bytes


@dataclass(frozen=True)
class _Foreign:
    type_url: str


@dataclass
class Outcome:
    """What one call produced, whatever happened."""

    method: str
    request: Any
    status: Status
    message: str = ""
    details: ErrorDetails | None = None
    #: The reply of a unary call; None unless status is OK.
    response: Any = None
    #: The messages of a server stream, in order (also those sent before a failure).
    messages: list[Any] = field(default_factory=list)
    elapsed: float = 0.0
    #: True when the status was decided on this side (local deadline, broken connection).
    local: bool = False
    #: Other things found in grpc-status-details-bin (type URLs), for the report.
    foreign_details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    def describe(self) -> str:
        if self.ok:
            return "OK"
        text = f"{self.status.name}"
        if self.local:
            text += " (decided by the client)"
        if self.message:
            text += f" {self.message!r}"
        if self.details is None:
            text += " with no ErrorDetails"
            if self.foreign_details:
                text += f" (details present: {', '.join(self.foreign_details)})"
        else:
            d = self.details
            text += f" ErrorDetails(code={d.code!r}, field={d.metadata.get('field', '')!r}"
            if d.suggestions:
                text += f", suggestions={list(d.suggestions)!r}"
            text += ")"
        return text


class Target:
    """The server under test: one event loop thread, one grpclib channel, synchronous calls."""

    def __init__(self, address: str, *, token: str | None = None, call_timeout: float = 30.0) -> None:
        from ventros._settings import split_address

        _wire.install()
        self.address = address
        self.host, self.port = split_address(address)
        self.token = token
        self.call_timeout = call_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ventros-conformance", daemon=True
        )
        self._thread.start()
        self._channel: Channel = self.run(self._open())

    async def _open(self) -> Channel:
        return Channel(self.host, self.port, codec=_ConformanceCodec(), status_details_codec=_DetailsCodec())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the suite's loop and wait for it (bounded, so no check hangs)."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout if timeout is not None else self.call_timeout + 30)
        except TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        async def _close() -> None:
            self._channel.close()

        try:
            self.run(_close(), timeout=5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    @property
    def metadata(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    # -- grpclib calls -------------------------------------------------------------------------

    def unary(
        self,
        method: str,
        request: Any,
        response_type: type,
        *,
        timeout: float | None = None,
    ) -> Outcome:
        return self.run(self._unary(method, request, response_type, timeout or self.call_timeout))

    def stream(
        self, method: str, request: Any, response_type: type, *, timeout: float | None = None
    ) -> Outcome:
        return self.run(self._stream(method, request, response_type, timeout or self.call_timeout))

    async def _unary(self, method: str, request: Any, response_type: type, timeout: float) -> Outcome:
        outcome = Outcome(method=method, request=request, status=Status.OK)
        start = time.perf_counter()
        request_type = type(request)
        try:
            call: Any = self._channel.request(
                method, Cardinality.UNARY_UNARY, request_type, response_type,
                timeout=timeout, metadata=self.metadata,
            )  # fmt: skip
            async with call as stream:
                await stream.send_message(request, end=True)
                outcome.response = await stream.recv_message()
                await stream.recv_trailing_metadata()
        except GRPCError as exc:
            _fill_error(outcome, exc)
        except TimeoutError:
            outcome.status, outcome.local = Status.DEADLINE_EXCEEDED, True
            outcome.message = f"no answer within the {timeout:g} s deadline"
        except (StreamTerminatedError, ConnectionError, OSError) as exc:
            outcome.status, outcome.local = Status.UNAVAILABLE, True
            outcome.message = f"{type(exc).__name__}: {exc}"
        outcome.elapsed = time.perf_counter() - start
        if not outcome.ok:
            outcome.response = None
        return outcome

    async def _stream(self, method: str, request: Any, response_type: type, timeout: float) -> Outcome:
        outcome = Outcome(method=method, request=request, status=Status.OK)
        start = time.perf_counter()
        try:
            call: Any = self._channel.request(
                method, Cardinality.UNARY_STREAM, type(request), response_type,
                timeout=timeout, metadata=self.metadata,
            )  # fmt: skip
            async with call as stream:
                await stream.send_message(request, end=True)
                async for message in stream:
                    outcome.messages.append(message)
        except GRPCError as exc:
            _fill_error(outcome, exc)
        except TimeoutError:
            outcome.status, outcome.local = Status.DEADLINE_EXCEEDED, True
            outcome.message = f"the stream did not end within {timeout:g} s"
        except (StreamTerminatedError, ConnectionError, OSError) as exc:
            outcome.status, outcome.local = Status.UNAVAILABLE, True
            outcome.message = f"{type(exc).__name__}: {exc}"
        outcome.elapsed = time.perf_counter() - start
        return outcome

    # -- raw HTTP/2 ----------------------------------------------------------------------------

    def raw(
        self,
        path: str,
        body: bytes,
        *,
        headers: Sequence[tuple[str, str]] = (),
        timeout: float = 30.0,
    ) -> RawOutcome:
        extra = [*headers]
        if self.token:
            extra.append(("authorization", f"Bearer {self.token}"))
        return self.run(
            raw_call(self.host, self.port, path, body, headers=extra, timeout=timeout), timeout + 5
        )


def _fill_error(outcome: Outcome, exc: GRPCError) -> None:
    outcome.status = exc.status
    outcome.message = exc.message or ""
    for detail in exc.details or ():
        if isinstance(detail, ErrorDetails) and outcome.details is None:
            outcome.details = detail
        elif isinstance(detail, _Foreign):
            outcome.foreign_details.append(detail.type_url)
        elif isinstance(detail, _Undecodable):
            outcome.foreign_details.append("<undecodable>")


def frame(message: bytes | betterproto2.Message, *, compress: bool = False) -> bytes:
    """One gRPC length-prefixed message, optionally gzip-compressed (flag 1)."""
    data = bytes(message)
    if compress:
        data = gzip.compress(data)
    return struct.pack(">?I", compress, len(data)) + data


@dataclass
class RawOutcome:
    """The answer to a hand-made HTTP/2 request."""

    http_status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    trailers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    reset_code: int | None = None
    error: str = ""
    elapsed: float = 0.0

    @property
    def grpc_status(self) -> Status | None:
        # Trailers-Only responses carry grpc-status in the (only) HEADERS frame.
        value = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        if value is None or not value.isdigit():
            return None
        try:
            return Status(int(value))
        except ValueError:
            return None

    @property
    def grpc_message(self) -> str:
        return self.trailers.get("grpc-message", self.headers.get("grpc-message", ""))

    @property
    def details(self) -> ErrorDetails | None:
        raw = self.trailers.get("grpc-status-details-bin", self.headers.get("grpc-status-details-bin"))
        if not raw:
            return None
        try:
            proto = status_pb2.Status.FromString(base64.b64decode(raw + "=" * (-len(raw) % 4)))
        except (ValueError, DecodeError):
            return None
        for detail in proto.details:
            if detail.type_url == ERROR_DETAILS_TYPE_URL:
                try:
                    return ErrorDetails.parse(detail.value)
                except Exception:
                    return None
        return None

    def messages(self) -> list[bytes]:
        """The response messages (uncompressed when the server compressed them with gzip)."""
        out, data = [], self.data
        while len(data) >= 5:
            compressed, length = struct.unpack(">?I", data[:5])
            body = data[5 : 5 + length]
            data = data[5 + length :]
            out.append(gzip.decompress(body) if compressed else body)
        return out

    def describe(self) -> str:
        if self.error and self.grpc_status is None:
            return f"no gRPC status ({self.error})"
        status = self.grpc_status
        text = status.name if status is not None else f"no grpc-status (HTTP {self.http_status})"
        if self.grpc_message:
            text += f" {self.grpc_message!r}"
        d = self.details
        text += (
            " with no ErrorDetails"
            if d is None
            else f" ErrorDetails(code={d.code!r}, field={d.metadata.get('field', '')!r})"
        )
        if self.reset_code is not None:
            text += f" [stream reset, code {self.reset_code}]"
        return text


async def raw_call(
    host: str,
    port: int,
    path: str,
    body: bytes,
    *,
    headers: Sequence[tuple[str, str]] = (),
    timeout: float = 30.0,
) -> RawOutcome:
    """POST one gRPC request over a new HTTP/2 connection (prior knowledge, no TLS).

    ``headers`` are added to (or, for grpc-* names, replace) the standard request headers. The
    body is sent as flow control allows; sending stops as soon as the server ends or resets the
    stream (a server that rejects an over-cap message need not read it).
    """
    out = RawOutcome()
    start = time.perf_counter()
    try:
        await asyncio.wait_for(_raw(host, port, path, body, headers, out), timeout)
    except TimeoutError:
        out.error = f"no complete answer within {timeout:g} s"
    except (ConnectionError, OSError, h2.exceptions.ProtocolError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    out.elapsed = time.perf_counter() - start
    return out


async def _raw(
    host: str, port: int, path: str, body: bytes, extra: Sequence[tuple[str, str]], out: RawOutcome
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="utf-8", validate_inbound_headers=False)
    )
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    conn.increment_flow_control_window(2**31 - 1 - 65535)
    writer.write(conn.data_to_send())
    names = {name for name, _ in extra}
    base = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", f"{host}:{port}"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", "ventros-conformance"),
    ]
    request_headers = [(k, v) for k, v in base if k not in names] + list(extra)
    stream_id = conn.get_next_available_stream_id()
    conn.send_headers(stream_id, request_headers, end_stream=not body)
    writer.write(conn.data_to_send())
    await writer.drain()

    done = asyncio.Event()
    window_open = asyncio.Event()

    async def read() -> None:
        try:
            while not done.is_set():
                data = await reader.read(65536)
                if not data:
                    out.error = out.error or "the server closed the connection"
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        out.headers = dict(event.headers)  # type: ignore[arg-type]
                        out.http_status = int(out.headers.get(":status", "0"))
                    elif isinstance(event, h2.events.TrailersReceived):
                        out.trailers = dict(event.headers)  # type: ignore[arg-type]
                    elif isinstance(event, h2.events.DataReceived):
                        out.data += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        done.set()
                    elif isinstance(event, h2.events.StreamReset):
                        out.reset_code = int(event.error_code)
                        done.set()
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        out.error = out.error or f"GOAWAY (code {event.error_code})"
                        done.set()
                    elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                        window_open.set()
                pending = conn.data_to_send()
                if pending:
                    writer.write(pending)
                    await writer.drain()
        except (h2.exceptions.ProtocolError, ConnectionError, OSError) as exc:
            out.error = out.error or f"{type(exc).__name__}: {exc}"
        finally:
            done.set()
            window_open.set()

    reader_task = asyncio.create_task(read())
    try:
        offset = 0
        while offset < len(body) and not done.is_set():
            try:
                window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            except (h2.exceptions.StreamClosedError, KeyError):
                break
            if window <= 0:
                window_open.clear()
                await window_open.wait()
                continue
            chunk = body[offset : offset + window]
            offset += len(chunk)
            try:
                conn.send_data(stream_id, chunk, end_stream=offset >= len(body))
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                break
            writer.write(conn.data_to_send())
            await writer.drain()
        await done.wait()
    finally:
        reader_task.cancel()
        try:
            conn.close_connection()
            writer.write(conn.data_to_send())
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 2)
        except Exception:
            pass
