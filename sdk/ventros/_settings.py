"""Where the services are and how long calls may take (spec sections 5.1, 5.2 and 7)."""

from __future__ import annotations

import os

from ._exceptions import ConfigurationError
from ._generated.ventros.memory import SearchMode

#: Environment variables the spec's deployment (section 7) uses, in order of preference.
AGENT_ADDRESS_ENV = ("PYTHON_ADK_GRPC",)
MEMORY_ADDRESS_ENV = ("MEMORY_SERVICE_GRPC", "GO_MEMORY_SERVICE")
DEFAULT_AGENT_ADDRESS = "localhost:50051"
DEFAULT_MEMORY_ADDRESS = "localhost:50052"

#: Spec section 5.2, in seconds. Streams have no default deadline (the caller controls it).
EXECUTE_AGENT_TIMEOUT = 30.0
EXECUTE_AGENT_MAX_TIMEOUT = 60.0
SEARCH_TIMEOUTS = {
    SearchMode.HYBRID: 0.5,
    SearchMode.VECTOR_ONLY: 0.2,
    SearchMode.KEYWORD_ONLY: 0.1,
    SearchMode.GRAPH_ONLY: 0.5,
}
#: Our choice for calls the spec gives no figure for (catalogue, context, store, graph).
DEFAULT_UNARY_TIMEOUT = 5.0

#: Spec section 5.1 keepalive: ping after 10 s idle, give up after 3 s without an answer.
KEEPALIVE_TIME = 10.0
KEEPALIVE_TIMEOUT = 3.0


def agent_address(explicit: str | None = None) -> str:
    return explicit or _from_env(AGENT_ADDRESS_ENV) or DEFAULT_AGENT_ADDRESS


def memory_address(explicit: str | None = None) -> str:
    return explicit or _from_env(MEMORY_ADDRESS_ENV) or DEFAULT_MEMORY_ADDRESS


def _from_env(names: tuple[str, ...]) -> str | None:
    return next((os.environ[name] for name in names if os.environ.get(name)), None)


def split_address(address: str) -> tuple[str, int]:
    """ "host:port" (or "[v6]:port") into its parts, with a clear error for anything else."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(
            f"invalid address {address!r}: expected HOST:PORT (e.g. localhost:50052) or unix:PATH"
        )
    return host.strip("[]"), int(port)


def unix_path(address: str) -> str | None:
    """The socket path of a Unix-socket address, in gRPC's naming: "unix:PATH" (relative or
    absolute) or "unix:///ABSOLUTE/PATH"; None for any other address."""
    if not address.startswith("unix:"):
        return None
    path = address[len("unix:") :]
    if path.startswith("///"):
        path = path[2:]
    if not path or path.startswith("//"):
        raise ConfigurationError(
            f"invalid address {address!r}: expected unix:PATH or unix:///ABSOLUTE/PATH, e.g. unix:/run/ventros/memory.sock"
        )
    return path


def check_address(address: str) -> None:
    """Raise ConfigurationError unless ``address`` is HOST:PORT or a unix: address."""
    if unix_path(address) is None:
        split_address(address)
