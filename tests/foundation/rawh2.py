"""A deliberately naive HTTP/2 client that sends whatever a test asks, valid or not."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions


@dataclass
class RawResponse:
    headers: dict[str, str] = field(default_factory=dict)
    trailers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    reset: bool = False
    closed: bool = False

    @property
    def grpc_status(self) -> int | None:
        value = self.trailers.get("grpc-status") or self.headers.get("grpc-status")
        return int(value) if value is not None else None


def grpc_frame(payload: bytes, *, compressed: bool = False, declared: int | None = None) -> bytes:
    length = len(payload) if declared is None else declared
    return struct.pack(">?I", compressed, length) + payload


def request_headers(path: str, **overrides: str | None) -> list[tuple[str, str]]:
    headers = {
        ":method": "POST",
        ":scheme": "http",
        ":path": path,
        ":authority": "localhost",
        "content-type": "application/grpc",
        "te": "trailers",
    }
    headers.update(overrides)  # type: ignore[arg-type]
    return [(k, v) for k, v in headers.items() if v is not None]


async def send_raw_bytes(address: str, data: bytes, timeout: float = 5) -> bytes:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), timeout)
    except (ConnectionError, TimeoutError):
        return b""
    finally:
        writer.close()


async def h2_request(
    address: str, headers: list[tuple[str, str]], body: bytes = b"", timeout: float = 5
) -> RawResponse:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, validate_outbound_headers=False, header_encoding="utf-8")
    )
    conn.initiate_connection()
    response = RawResponse()
    try:
        conn.send_headers(1, headers, end_stream=not body)
        if body:
            conn.send_data(1, body, end_stream=True)
        writer.write(conn.data_to_send())
        await writer.drain()
        await asyncio.wait_for(_read_until_done(reader, writer, conn, response), timeout)
    except (ConnectionError, h2.exceptions.ProtocolError, TimeoutError):
        response.closed = True
    finally:
        writer.close()
    return response


async def _read_until_done(reader, writer, conn, response: RawResponse) -> None:  # type: ignore[no-untyped-def]
    while True:
        data = await reader.read(65536)
        if not data:
            response.closed = True
            return
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                response.headers = dict(event.headers)
            elif isinstance(event, h2.events.TrailersReceived):
                response.trailers = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                response.data += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                response.reset = True
                return
            elif isinstance(event, h2.events.StreamEnded | h2.events.ConnectionTerminated):
                return
        writer.write(conn.data_to_send())
        await writer.drain()
