"""What goes on the wire: message codec, status details, compression and the message cap.

grpclib 0.4.9 (pinned) leaves three gaps that the Ventros contract needs closed:

* its ProtoCodec only speaks the protobuf runtime, while our messages are betterproto2
  dataclasses (health and reflection still use the protobuf runtime, so we speak both);
* it has no message compression: a gzip-compressed message from grpc-go (spec section 5.3)
  makes it raise NotImplementedError, which the caller sees as UNKNOWN;
* it has no message size limit, while the spec caps messages at 50 MiB both ways.

grpclib frames messages in two module-level functions (grpclib.stream.recv_message and
send_message) that grpclib.server and grpclib.client import by name, with no hook. ``install()``
replaces those two names with the framing below. It is idempotent, process-wide, and exercised
by tests against grpcio peers, so a grpclib upgrade that moves these names fails loudly.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Any

import betterproto2
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from grpclib import client as _grpclib_client
from grpclib import server as _grpclib_server
from grpclib.const import Status
from grpclib.encoding.base import CodecBase, StatusDetailsCodecBase
from grpclib.exceptions import GRPCError

from . import _fastcodec
from ._generated.ventros.common import ErrorDetails

#: Spec section 5.1: 50 MiB in both directions (grpc.max_send/receive_message_length).
MAX_MESSAGE_BYTES = 50 * 1024 * 1024
#: Encodings we can read; anything else in grpc-encoding is answered with UNIMPLEMENTED.
SUPPORTED_ENCODINGS = ("identity", "gzip")
ACCEPT_ENCODING = ",".join(SUPPORTED_ENCODINGS)
ERROR_DETAILS_TYPE_URL = "type.googleapis.com/ventros.common.ErrorDetails"

_PREFIX = struct.Struct(">?I")


class VentrosCodec(CodecBase):
    """Encodes betterproto2 messages and protobuf-runtime messages (health, reflection)."""

    __content_subtype__ = "proto"

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes

    def encode(self, message: Any, message_type: Any) -> bytes:
        if not isinstance(message, message_type):
            raise TypeError(f"message must be {message_type!r}, not {type(message)!r}")
        if isinstance(message, betterproto2.Message):
            return _fastcodec.encode(message)
        return message.SerializeToString()  # type: ignore[no-any-return]

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            if issubclass(message_type, betterproto2.Message):
                return _fastcodec.decode(message_type, data)
            return message_type.FromString(data)
        except Exception as exc:  # any parse failure means the peer sent malformed bytes
            raise _status_error(
                Status.INVALID_ARGUMENT,
                "MALFORMED_MESSAGE",
                f"the message is not a valid {message_type.__name__}: {exc}",
                "Encode the request with a protobuf library from the published .proto files.",
            ) from exc


class VentrosStatusDetailsCodec(StatusDetailsCodecBase):
    """google.rpc.Status in grpc-status-details-bin, with ErrorDetails packed in Any."""

    def encode(self, status: Status, message: str | None, details: Any) -> bytes:
        proto = status_pb2.Status(code=status.value, message=message or "")
        for detail in details or ():
            container = proto.details.add()
            if isinstance(detail, betterproto2.Message):
                container.type_url = ERROR_DETAILS_TYPE_URL
                container.value = bytes(detail)
            else:
                container.Pack(detail)
        return proto.SerializeToString()  # type: ignore[no-any-return]

    def decode(self, status: Status, message: str | None, data: bytes) -> Sequence[Any]:
        try:
            proto = status_pb2.Status.FromString(data)
        except DecodeError:
            return []
        return [ErrorDetails.parse(d.value) for d in proto.details if d.type_url == ERROR_DETAILS_TYPE_URL]


def _status_error(status: Status, code: str, message: str, suggestion: str) -> GRPCError:
    details = ErrorDetails(code=code, message=message, suggestions=[suggestion])
    return GRPCError(status, message, [details])


def _too_large(size: int, limit: int) -> GRPCError:
    return _status_error(
        Status.RESOURCE_EXHAUSTED,
        "MESSAGE_TOO_LARGE",
        f"message of {size} bytes exceeds the {limit}-byte cap",
        "Send fewer items per call (e.g. a smaller limit) or split the request.",
    )


def _message_encoding(stream: Any) -> str:
    """The grpc-encoding that applies to messages received on this HTTP/2 stream."""
    # Server side: set by VentrosHandler.accept from the request headers.
    encoding = getattr(stream, "ventros_encoding", None)
    if encoding is None and getattr(stream, "headers", None):
        # Client side: the response headers grpclib stored on the stream.
        encoding = dict(stream.headers).get("grpc-encoding", "identity")
    return encoding or "identity"


def _gunzip(data: bytes, limit: int) -> bytes:
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, limit + 1)
    except zlib.error as exc:
        raise _status_error(
            Status.INVALID_ARGUMENT,
            "MALFORMED_MESSAGE",
            f"the gzip-compressed message cannot be decompressed: {exc}",
            "Compress each message with gzip, as grpc-encoding: gzip declares.",
        ) from exc
    if len(out) > limit:  # a decompression bomb stops here, before it is fully inflated
        raise _too_large(len(out), limit)
    return out


def _truncated() -> GRPCError:
    return _status_error(
        Status.INVALID_ARGUMENT,
        "MALFORMED_MESSAGE",
        "the stream ended inside a message",
        "Send each length-prefixed message whole.",
    )


async def _recv_data(stream: Any, size: int) -> bytes:
    """``size`` bytes, or b"" at a clean end of stream; a partial read is a malformed message."""
    try:
        data: bytes = await stream.recv_data(size)
    except AssertionError as exc:  # grpclib's buffer asserts when the stream ends mid-read
        raise _truncated() from exc
    return data


async def recv_message(stream: Any, codec: CodecBase, message_type: Any) -> Any:
    meta = await _recv_data(stream, 5)
    if not meta:
        return None
    compressed, length = _PREFIX.unpack(meta)
    limit = getattr(codec, "max_message_bytes", MAX_MESSAGE_BYTES)
    if length > limit:
        raise _too_large(length, limit)
    data = await _recv_data(stream, length) if length else b""
    if len(data) != length:
        raise _truncated()
    if compressed:
        encoding = _message_encoding(stream)
        if encoding != "gzip":
            raise _status_error(
                Status.INTERNAL,
                "UNSUPPORTED_ENCODING",
                f"compressed message with grpc-encoding {encoding!r}",
                f"Use one of: {ACCEPT_ENCODING}.",
            )
        data = _gunzip(data, limit)
    return codec.decode(data, message_type)


async def send_message(
    stream: Any, codec: CodecBase, message: Any, message_type: Any, *, end: bool = False
) -> None:
    data = codec.encode(message, message_type)
    limit = getattr(codec, "max_message_bytes", MAX_MESSAGE_BYTES)
    if len(data) > limit:
        raise _too_large(len(data), limit)
    await stream.send_data(_PREFIX.pack(False, len(data)) + data, end_stream=end)


_installed = False


def install() -> None:
    """Route grpclib's message framing through ours (compression + cap). Idempotent."""
    global _installed
    if _installed:
        return
    for module in (_grpclib_server, _grpclib_client):
        module.recv_message = recv_message  # type: ignore[attr-defined]
        module.send_message = send_message  # type: ignore[attr-defined]
    _installed = True
