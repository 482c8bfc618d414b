"""ventros: typed async clients for the Ventros CRM AgentService and MemoryService.

    import ventros

    async with ventros.MemoryClient() as memory:
        found = await memory.search_memories(contact_id=cid, query="late delivery")

Messages live in ``ventros.agents``, ``ventros.memory`` and ``ventros.common``; errors are the
classes below, one per gRPC status the contract uses, each carrying ``.details`` (ErrorDetails).
"""

from . import agents, common, memory
from ._channel import TLSConfig
from ._client import AgentClient, MemoryClient
from ._exceptions import (
    CancelledError,
    ConfigurationError,
    DeadlineExceededError,
    ErrorDetails,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    StatusError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    VentrosError,
)
from ._retry import RetryPolicy
from ._sync import SyncAgentClient, SyncMemoryClient

__version__ = "0.1.0"

__all__ = [
    "AgentClient",
    "CancelledError",
    "ConfigurationError",
    "DeadlineExceededError",
    "ErrorDetails",
    "InternalError",
    "InvalidArgumentError",
    "MemoryClient",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "StatusError",
    "SyncAgentClient",
    "SyncMemoryClient",
    "TLSConfig",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "VentrosError",
    "__version__",
    "agents",
    "common",
    "memory",
]
