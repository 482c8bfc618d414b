"""The one exception hierarchy of ventros, shared by the SDK and the reference server.

    VentrosError
    ├── ConfigurationError            bad client/server settings (raised locally, never on the wire)
    └── StatusError                   a gRPC call ended with a non-OK status
        ├── CancelledError            CANCELLED (1)
        ├── InvalidArgumentError      INVALID_ARGUMENT (3)   never retried
        ├── DeadlineExceededError     DEADLINE_EXCEEDED (4)  retried (idempotent calls)
        ├── NotFoundError             NOT_FOUND (5)          never retried
        ├── PermissionDeniedError     PERMISSION_DENIED (7)
        ├── ResourceExhaustedError    RESOURCE_EXHAUSTED (8)
        ├── UnimplementedError        UNIMPLEMENTED (12)
        ├── InternalError             INTERNAL (13)
        ├── UnavailableError          UNAVAILABLE (14)       retried (idempotent calls)
        └── UnauthenticatedError      UNAUTHENTICATED (16)

Every StatusError carries the decoded ``ventros.common.ErrorDetails`` (``.details``), so
``err.details.code``, ``err.details.suggestions`` and ``err.details.metadata`` are always there
(empty when a foreign server sent none).

The same classes travel the other way on the server: a handler raises
``NotFoundError.of("AGENT_NOT_FOUND", "...", suggestions=[...])`` and the server turns it into
the status code plus ErrorDetails in the ``grpc-status-details-bin`` trailer. One table
(``_BY_STATUS``) maps both directions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from ._generated.ventros.common import ErrorDetails

__all__ = [
    "CancelledError",
    "ConfigurationError",
    "DeadlineExceededError",
    "ErrorDetails",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "StatusError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "VentrosError",
    "error_from_grpc",
]


class VentrosError(Exception):
    """Base of every exception ventros raises on purpose."""


class ConfigurationError(VentrosError):
    """A setting is wrong (address, TLS files, token...). Raised before any call is made."""


class StatusError(VentrosError):
    """A call ended with a non-OK gRPC status; ``details`` is the server's ErrorDetails."""

    status: ClassVar[Status] = Status.UNKNOWN

    def __init__(self, message: str = "", details: ErrorDetails | None = None) -> None:
        self.details = details if details is not None else ErrorDetails(message=message)
        self.message = message or self.details.message
        super().__init__(self.message)

    @classmethod
    def of(
        cls,
        code: str,
        message: str,
        *,
        suggestions: Iterable[str] = (),
        **metadata: str,
    ) -> StatusError:
        """Build the exception a server handler raises: ErrorDetails code, message, hints."""
        details = ErrorDetails(
            code=code,
            message=message,
            metadata={key: str(value) for key, value in metadata.items()},
            suggestions=list(suggestions),
        )
        return cls(message, details)

    @property
    def code(self) -> str:
        """The ErrorDetails code (e.g. "AGENT_NOT_FOUND"); empty when the server sent none."""
        return self.details.code

    @property
    def suggestions(self) -> list[str]:
        return list(self.details.suggestions)

    @property
    def metadata(self) -> Mapping[str, str]:
        return dict(self.details.metadata)

    def to_grpc(self) -> GRPCError:
        """The grpclib error a server raises to send this status with its ErrorDetails."""
        return GRPCError(self.status, self.message, [self.details])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status.name}, code={self.code!r}, message={self.message!r})"


class CancelledError(StatusError):
    status = Status.CANCELLED


class InvalidArgumentError(StatusError):
    status = Status.INVALID_ARGUMENT


class DeadlineExceededError(StatusError):
    status = Status.DEADLINE_EXCEEDED


class NotFoundError(StatusError):
    status = Status.NOT_FOUND


class PermissionDeniedError(StatusError):
    status = Status.PERMISSION_DENIED


class ResourceExhaustedError(StatusError):
    status = Status.RESOURCE_EXHAUSTED


class UnimplementedError(StatusError):
    status = Status.UNIMPLEMENTED


class InternalError(StatusError):
    status = Status.INTERNAL


class UnavailableError(StatusError):
    status = Status.UNAVAILABLE


class UnauthenticatedError(StatusError):
    status = Status.UNAUTHENTICATED


_BY_STATUS: dict[Status, type[StatusError]] = {
    cls.status: cls
    for cls in (
        CancelledError,
        InvalidArgumentError,
        DeadlineExceededError,
        NotFoundError,
        PermissionDeniedError,
        ResourceExhaustedError,
        UnimplementedError,
        InternalError,
        UnavailableError,
        UnauthenticatedError,
    )
}


def error_class_for(status: Status) -> type[StatusError]:
    """The exception class pinned to a status (StatusError itself for the others)."""
    return _BY_STATUS.get(status, StatusError)


def error_from_grpc(error: GRPCError) -> StatusError:
    """Turn a grpclib error (client side) into our typed exception, keeping its ErrorDetails."""
    details = next((d for d in error.details or () if isinstance(d, ErrorDetails)), None)
    cls = error_class_for(error.status)
    exc = cls(error.message or "", details)
    if cls is StatusError:
        exc.status = error.status  # type: ignore[misc]  # per-instance status for the rare codes
    return exc
