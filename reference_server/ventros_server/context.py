"""What a handler knows about the call it serves, and the one place errors become statuses.

betterproto2's generated servicer methods receive only the request message. The server wraps
every method (through grpclib's RecvRequest event) so that, while a handler runs,
``current_call()`` returns the call's metadata, deadline and peer, and so that any exception
leaves as a documented status with ErrorDetails: a StatusError as itself, anything unexpected
as INTERNAL, never UNKNOWN.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from grpclib.events import RecvRequest
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.metadata import Deadline
from ventros import DeadlineExceededError, InternalError, StatusError

log = logging.getLogger("ventros.server")

#: Our own timer fires this much before grpclib's, so a handler that overruns the caller's
#: deadline ends with DEADLINE_EXCEEDED *and* ErrorDetails instead of a bare status.
_DEADLINE_HEADROOM = 0.001


@dataclass(frozen=True)
class CallContext:
    method_name: str
    metadata: dict[str, str] = field(default_factory=dict)
    deadline: Deadline | None = None
    peer: str = ""
    user_agent: str | None = None

    def time_remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline.time_remaining()


class _Call:
    """The RecvRequest of the call a task serves; its CallContext is built on first use only
    (most handlers never ask, and building it costs a metadata copy and a peer lookup)."""

    __slots__ = ("_context", "event")

    def __init__(self, event: RecvRequest) -> None:
        self.event = event
        self._context: CallContext | None = None

    def context(self) -> CallContext:
        if self._context is None:
            event = self.event
            self._context = CallContext(
                method_name=event.method_name,
                metadata={k: v for k, v in event.metadata.items() if isinstance(v, str)},
                deadline=event.deadline,
                peer=_peer_address(event.peer),
                user_agent=event.user_agent,
            )
        return self._context


_current: contextvars.ContextVar[_Call] = contextvars.ContextVar("ventros_call")


def current_call() -> CallContext:
    """The call being served by this task (a neutral context outside any call, e.g. in tests)."""
    call = _current.get(None)
    return CallContext(method_name="") if call is None else call.context()


def _peer_address(peer: Any) -> str:
    addr = peer.addr() if peer is not None else None
    return f"{addr[0]}:{addr[1]}" if addr else ""


def wrap_handler(event: RecvRequest) -> Callable[[Any], Awaitable[None]]:
    """The method function grpclib will run: context + deadline + error mapping around it."""
    func = event.method_func
    method_name = event.method_name
    deadline = event.deadline

    async def run(stream: Any) -> None:
        token = _current.set(_Call(event))
        try:
            if deadline is None:
                await func(stream)
            else:
                remaining = deadline.time_remaining()
                if remaining <= _DEADLINE_HEADROOM:
                    raise TimeoutError  # already late: do no work at all
                async with asyncio.timeout(remaining - _DEADLINE_HEADROOM):
                    await func(stream)
        except TimeoutError as exc:
            raise DeadlineExceededError.of(
                "DEADLINE_EXCEEDED",
                f"the caller's deadline passed before {method_name} could answer",
                suggestions=["Retry with a longer deadline."],
            ).to_grpc() from exc
        except StatusError as exc:
            raise exc.to_grpc() from exc
        except (GRPCError, asyncio.CancelledError, StreamTerminatedError):
            raise
        except Exception as exc:
            log.exception("unexpected error in %s", method_name)
            raise InternalError.of(
                "INTERNAL",
                f"{method_name} failed unexpectedly ({type(exc).__name__})",
                suggestions=["Retry later; if it persists, report it with the server log."],
            ).to_grpc() from exc
        finally:
            _current.reset(token)

    return run


async def on_recv_request(event: RecvRequest) -> None:
    event.method_func = wrap_handler(event)  # type: ignore[assignment]
