"""The reference server as one process: MemoryService and AgentService on their own ports.

``VentrosApp(ServeConfig(...))`` opens the memory store, loads the requested data, builds one
server per service (ventros_server.server.build_server: codecs, health, reflection) and starts
them; ``await app.stop()`` shuts them down gracefully:

1. new calls are refused with UNAVAILABLE ("SHUTTING_DOWN") and every health status turns
   NOT_SERVING, so load balancers and ``ventros health`` see the drain at once;
2. the listening sockets close (no new connections);
3. calls already running get ``grace`` seconds to finish: the agent server drains first,
   because a running agent may still call the memory service;
4. whatever is still running is cancelled, the servers close and the store is closed last.

``run(config)`` does all of this around SIGINT/SIGTERM (a second signal skips the grace period)
and is what ``ventros serve`` calls. Port 0 picks a free port; the chosen addresses are in
``app.addresses`` and announced as "<service> service listening on HOST:PORT".

Optional transport security, applied to both ports:
* TLS with ``tls_cert``/``tls_key``; with ``tls_client_ca`` clients must present a certificate
  signed by that CA (mutual TLS);
* API keys with scopes (ventros_server.auth): ``token`` is one key with every scope, and
  ``api_keys`` ("key:read,write;...", i.e. $VENTROS_API_KEYS) and ``api_keys_file`` add more;
  every call except grpc.health.v1 (and reflection) must send ``authorization: Bearer <key>``,
  else UNAUTHENTICATED (MISSING_CREDENTIALS / INVALID_CREDENTIALS), and a key without the
  method's scope gets PERMISSION_DENIED (INSUFFICIENT_SCOPE);
* a per-caller rate limit (ventros_server.ratelimit): RESOURCE_EXHAUSTED ("RATE_LIMITED") beyond
  ``rate_limit`` calls per second, each port with its own budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import signal
import socket
import ssl
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from grpclib.const import Status
from grpclib.events import RecvRequest, listen
from grpclib.exceptions import GRPCError
from grpclib.health.check import ServiceStatus
from ventros import ConfigurationError, ErrorDetails, StatusError, _settings

from .auth import READ, WRITE, ApiKey, ApiKeys, digest
from .server import VentrosServer, build_server, listen_socket, tune_gc

log = logging.getLogger("ventros.serve")

ServiceName = Literal["agent", "memory"]
SERVICES: tuple[ServiceName, ...] = ("agent", "memory")
_HEALTH_PREFIX = "/grpc.health.v1.Health/"
_WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}


@dataclass
class ServeConfig:
    """Everything ``ventros serve`` can be told. Ports may be 0 (a free port is chosen)."""

    host: str = "127.0.0.1"
    agent_port: int = 50051
    memory_port: int = 50052
    #: Run one service only; None runs both.
    only: ServiceName | None = None
    #: DuckDB file of the memory store, or ":memory:".
    db: str = ":memory:"
    demo: bool = False
    #: JSONL files imported into the store at start-up (e.g. the conformance fixtures).
    imports: list[str] = field(default_factory=list)
    embedder: str = "offline"
    embedder_options: dict[str, Any] = field(default_factory=dict)
    #: Re-embed every memory if the store was built with another embedder (else refused).
    reembed: bool = False
    llm: str = "offline"
    llm_options: dict[str, Any] = field(default_factory=dict)
    #: Where the agent service finds memory. Default: this process's memory port when both run,
    #: else $MEMORY_SERVICE_GRPC / $GO_MEMORY_SERVICE / localhost:50052.
    memory_addr: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    token: str | None = None
    #: More API keys with scopes: "key1:read,write;key2:read" (what $VENTROS_API_KEYS holds).
    api_keys: str | None = None
    #: A TOML or JSON keys file (ventros_server.auth), e.g. $VENTROS_API_KEYS_FILE.
    api_keys_file: str | None = None
    #: The key the agent service presents to a memory service at ``memory_addr``.
    memory_token: str | None = None
    #: CA bundle the agent service trusts for a TLS memory service at ``memory_addr``.
    memory_tls_ca: str | None = None
    #: Calls per second per caller on each port (RESOURCE_EXHAUSTED beyond); None: no limit.
    rate_limit: float | None = None
    #: Bucket size of the rate limit (default: the rate, rounded up).
    rate_burst: int | None = None
    #: Seconds running calls get to finish once shutdown starts.
    grace: float = 10.0
    #: Listen with SO_REUSEPORT, so that several processes share the ports (multiproc workers).
    reuse_port: bool = False
    #: Worker processes: the Unix socket of the process that owns the memory store, and its key
    #: (ventros_server.memory.remote); the memory service then forwards every store call there.
    store_address: str | None = None
    store_authkey: bytes | None = field(default=None, repr=False)
    #: Worker processes: the key every worker's agent service presents to the (shared) memory
    #: port, chosen once by the parent so that any worker accepts any other's calls.
    internal_key: str | None = field(default=None, repr=False)
    #: Worker processes: the store owner alone listens on the memory port and passes some of its
    #: connections over this Unix socket (ventros_server.handoff). ``memory_steering`` in the
    #: owner: where workers ask for connections; ``memory_handoff`` in a worker: where it does.
    memory_steering: str | None = None
    memory_handoff: str | None = None
    #: Worker processes: the owner's Unix socket for this server's own agents; the owner listens
    #: there (served in-process, not counted by the steering), the workers' agents connect there.
    memory_internal: str | None = None

    @property
    def services(self) -> tuple[ServiceName, ...]:
        return (self.only,) if self.only else SERVICES

    def validate(self) -> None:
        if self.only not in (None, *SERVICES):
            raise ConfigurationError(f"--only must be 'agent' or 'memory', not {self.only!r}")
        for name, port in (("agent", self.agent_port), ("memory", self.memory_port)):
            if not 0 <= port < 65536:
                raise ConfigurationError(f"invalid {name} port {port}: expected 0..65535")
        if self.only is None and self.agent_port == self.memory_port != 0:
            raise ConfigurationError("the agent and memory ports must differ")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigurationError("TLS needs both --tls-cert and --tls-key")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigurationError("--tls-client-ca needs --tls-cert and --tls-key")
        if self.token is not None and not self.token.strip():
            raise ConfigurationError("the token must not be empty")
        if self.grace < 0:
            raise ConfigurationError("the grace period must not be negative")
        if self.rate_burst is not None and self.rate_limit is None:
            raise ConfigurationError("--rate-burst needs --rate-limit")
        self.rate_limiter()  # raises ConfigurationError for a bad rate or burst
        self.keys()  # raises ConfigurationError for a bad key, scope or keys file

    def keys(self) -> ApiKeys | None:
        """The API keys every call must present (None: no authentication)."""
        environ = {"VENTROS_API_KEYS": self.api_keys} if self.api_keys else {}
        return ApiKeys.from_env(environ, token=self.token, keys_file=self.api_keys_file)

    def security_warning(self) -> str | None:
        """A loud warning when personal data would be served to the network unprotected."""
        if _is_loopback(self.host) or (self.token or self.api_keys or self.api_keys_file) or self.tls_cert:
            return None
        return (
            f"\n{'!' * 78}\n"
            f"!! WARNING: listening on {self.host}, beyond this machine, WITHOUT authentication or TLS.\n"
            "!! Anyone who can reach these ports can read and change the memory store (names,\n"
            "!! phones, e-mails, messages) and run agents. Set API keys ($VENTROS_API_KEYS,\n"
            "!! --api-keys-file or --token) and TLS (--tls-cert/--tls-key), or bind to 127.0.0.1.\n"
            f"{'!' * 78}"
        )

    def rate_limiter(self) -> Any:
        """A fresh RateLimiter (one per port: each service has its own budget), or None."""
        if self.rate_limit is None:
            return None
        from .ratelimit import RateLimiter

        return RateLimiter(self.rate_limit, self.rate_burst)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls_cert:
            return None
        try:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
            if self.tls_client_ca:
                ctx.load_verify_locations(self.tls_client_ca)
                ctx.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"cannot load TLS files: {exc}") from exc
        ctx.set_alpn_protocols(["h2"])
        return ctx


class CallGate:
    """A RecvRequest listener: API key check, refusal while draining, and in-flight accounting."""

    def __init__(self, service: str, keys: ApiKeys | None = None) -> None:
        self.service = service
        self.keys = keys
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._aborting = False

    def install(self, server: VentrosServer) -> None:
        listen(server, RecvRequest, self._on_request)

    async def _on_request(self, event: RecvRequest) -> None:
        if event.method_name.startswith(_HEALTH_PREFIX):
            return  # health answers even while draining (NOT_SERVING) and needs no token
        inner = event.method_func
        refusal = self._refusal(event.metadata, event.method_name)

        async def gated(stream: Any) -> None:
            if self.draining:
                raise _status(
                    Status.UNAVAILABLE,
                    "SHUTTING_DOWN",
                    f"the {self.service} service is shutting down",
                    "Retry against another instance, or once the server has restarted.",
                )
            if refusal is not None:
                raise refusal
            # Count the whole request task, not just this function: the call is over once
            # grpclib has also sent its trailers, which happens after we return.
            task = asyncio.current_task()
            assert task is not None
            self.in_flight += 1
            self._tasks.add(task)
            self._idle.clear()
            task.add_done_callback(self._done)
            try:
                await inner(stream)
            except asyncio.CancelledError:
                if not self._aborting:
                    raise
                # Cut off by the end of the grace period: tell the caller instead of going silent.
                raise _status(
                    Status.UNAVAILABLE,
                    "SHUTTING_DOWN",
                    f"the {self.service} service shut down before the call finished",
                    "Retry against another instance, or once the server has restarted.",
                ) from None

        event.method_func = gated

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    def _refusal(self, metadata: Mapping[str, Any], method: str) -> GRPCError | None:
        if self.keys is None:
            return None
        try:
            self.keys.check(metadata, method)
        except StatusError as exc:
            return exc.to_grpc()
        return None

    async def abort_running(self, timeout: float = 1.0) -> None:
        """Cancel the calls still running; each ends with UNAVAILABLE ("SHUTTING_DOWN")."""
        self._aborting = True
        for task in list(self._tasks):
            task.cancel()
        await self.wait_idle(timeout)

    async def wait_idle(self, timeout: float) -> bool:
        """True when no call is running any more, False when ``timeout`` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


def _status(status: Status, code: str, message: str, suggestion: str) -> GRPCError:
    return GRPCError(status, message, [ErrorDetails(code=code, message=message, suggestions=[suggestion])])


@dataclass
class _Running:
    name: ServiceName
    server: VentrosServer
    statuses: dict[str, ServiceStatus]
    gate: CallGate
    host: str
    port: int
    connections: weakref.WeakSet[Any]
    servicer: Any


ServiceFactory = Callable[["VentrosApp"], Any]


class VentrosApp:
    """Both services (or one) with their store, started and stopped as a unit.

    ``services`` overrides how a servicer is built (tests use it to serve small fakes);
    by default the memory servicer wraps ``ventros_server.memory.open_store(config.db)`` and
    the agent servicer is ``ventros_server.agents.AgentService``.
    """

    def __init__(
        self,
        config: ServeConfig,
        *,
        services: Mapping[ServiceName, ServiceFactory] | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.store: Any = None
        self._factories = {"memory": _memory_service, "agent": _agent_service, **(services or {})}
        self._announce = announce or (lambda line: log.info("%s", line))
        self._running: dict[ServiceName, _Running] = {}
        self._stopped = asyncio.Event()
        self._stopping: asyncio.Task[None] | None = None
        self._on_close: list[Callable[[], Any]] = []
        self.keys = config.keys()
        #: The key the agent service uses on this process's memory port (read and write only).
        self.internal_key: str | None = None
        if self.keys is not None and not config.memory_addr and (config.only is None or config.internal_key):
            # A memory-only store owner (multiproc) accepts the workers' agents' key too.
            self.internal_key = config.internal_key or secrets.token_urlsafe(32)

    # -- addresses -------------------------------------------------------------------------

    @property
    def addresses(self) -> dict[ServiceName, str]:
        """ "host:port" each running service listens on (the real port when 0 was asked)."""
        return {name: _join(r.host, r.port) for name, r in self._running.items()}

    def memory_address(self) -> str:
        """Where the agent service reaches memory."""
        if self.config.memory_addr:
            return self.config.memory_addr
        running = self._running.get("memory")
        if running is None:
            return _settings.memory_address()
        if self.config.memory_internal and self.config.memory_handoff:
            return f"unix:{self.config.memory_internal}"  # a worker: straight to the store's owner
        host = "127.0.0.1" if running.host in _WILDCARD_HOSTS else running.host
        return _join(host, running.port)

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, load data, start the servers (memory first) and mark them SERVING."""
        ssl_context = self.config.ssl_context()
        try:
            for name in ("memory", "agent"):
                if name not in self.config.services:
                    continue
                servicer = await _maybe_await(self._factories[name](self))
                await self._start_one(name, servicer, ssl_context)
        except BaseException:
            await self._shutdown(grace=0)
            raise
        for running in self._running.values():
            for status in running.statuses.values():
                status.set(True)
        scheme = "https" if ssl_context else "http"
        for name, running in self._running.items():
            self._announce(f"{name} service listening on {_join(running.host, running.port)}")
        if "agent" in self._running:
            self._announce(f"agent service uses the memory service at {self.memory_address()}")
        log.debug("transport: %s, API keys %s", scheme, "required" if self.keys else "not required")
        warning = self.config.security_warning()
        if warning:
            log.warning("%s", warning)

    async def _start_one(self, name: ServiceName, servicer: Any, ssl_context: ssl.SSLContext | None) -> None:
        keys = self.keys
        if keys is not None and name == "memory" and self.internal_key is not None:
            internal = ApiKey("agent-service (internal)", digest(self.internal_key), frozenset({READ, WRITE}))
            keys = ApiKeys([*keys, internal], open_reflection=keys.open_reflection)
        gate = CallGate(name, keys)
        limiter = self.config.rate_limiter()
        # The gate goes last so that it runs first: refusals while draining and token checks
        # come before the rate limit.
        listeners = [limiter, gate.install] if limiter is not None else [gate.install]
        server, statuses = build_server([servicer], listeners=listeners)
        connections = _track_connections(server)
        port = self.config.agent_port if name == "agent" else self.config.memory_port
        handoff = self.config.memory_handoff if name == "memory" else None
        steering = self.config.memory_steering if name == "memory" else None
        sock = None  # a worker given connections by the store owner (handoff) listens on nothing
        if not handoff and self.config.reuse_port:  # worker processes (multiproc.serve_app_workers)
            sock = _bind(self.config.host, port, name, reuse_port=True)
        elif not handoff:
            sock = _bind(self.config.host, port, name)
        self._running[name] = _Running(
            name, server, statuses, gate, self.config.host, sock.getsockname()[1] if sock else port,
            connections, servicer,
        )  # fmt: skip
        if handoff or steering:  # multiproc workers: one process accepts, the others are handed
            from .handoff import HandedOff, Steering

            factory = server._protocol_factory  # after _track_connections: tracked too
            if sock is None:
                server.serve_from(HandedOff(str(handoff), factory, ssl=ssl_context))
            else:
                steered = Steering(
                    sock, str(steering), factory, ssl=ssl_context, internal_path=self.config.memory_internal
                )
                server.serve_from(steered)
        else:
            await server.start(sock=sock, ssl=ssl_context)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown (idempotent; concurrent callers wait for the same shutdown)."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(
                self._shutdown(self.config.grace if grace is None else grace)
            )
        await asyncio.shield(self._stopping)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def _shutdown(self, grace: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        running = [self._running[n] for n in ("agent", "memory") if n in self._running]
        for r in running:
            for status in r.statuses.values():
                status.set(False)
            _stop_listening(r.server)
        if running:
            self._announce("shutting down: health is NOT_SERVING, no new calls accepted")
        for r in running:
            # Agent first: its running calls may still need the memory service.
            r.gate.draining = True
            if r.gate.in_flight:
                log.info("waiting up to %.1fs for %d running %s call(s)", grace, r.gate.in_flight, r.name)
            if not await r.gate.wait_idle(max(deadline - loop.time(), 0)):
                log.warning(
                    "%d %s call(s) still running after the grace period: cancelled", r.gate.in_flight, r.name
                )
                await r.gate.abort_running()
        for r in running:
            await _settle(r.connections)  # clients read the last answers before the GOAWAY
            r.server.close()  # cancels what is left (health watches) and closes the handlers
            _close_connections(r.connections)
        for r in running:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await r.server.wait_closed()
        for r in running:
            aclose = getattr(r.servicer, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()  # e.g. the agent service's memory client and LLM backend
        self._running.clear()
        for close in self._on_close:
            with contextlib.suppress(Exception):
                close()
        self._on_close.clear()
        if self.store is not None:
            store, self.store = self.store, None
            await asyncio.to_thread(store.close)
        self._stopped.set()
        if running:
            self._announce("stopped")


async def run(
    config: ServeConfig,
    *,
    services: Mapping[ServiceName, ServiceFactory] | None = None,
    announce: Callable[[str], None] | None = None,
    ready: Callable[[VentrosApp], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, then shut down gracefully (a second signal: immediately)."""
    loop = asyncio.get_running_loop()
    app = VentrosApp(config, services=services, announce=announce)
    stop_requested = asyncio.Event()
    signals = 0
    aborts: list[asyncio.Future[None]] = []

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("received %s, draining for up to %.1fs", signal.Signals(signum).name, config.grace)
            stop_requested.set()
        else:
            log.warning("received %s again, stopping now", signal.Signals(signum).name)
            for r in app._running.values():
                aborts.append(asyncio.ensure_future(r.gate.abort_running()))  # end the grace period

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
    try:
        await app.start()
        tune_gc()  # after the store and the demo data are loaded
        if ready is not None:
            ready(app)
        await stop_requested.wait()
    finally:
        await app.stop()
        for signum in installed:
            loop.remove_signal_handler(signum)


# -- servicers -----------------------------------------------------------------------------


async def _memory_service(app: VentrosApp) -> Any:
    from . import memory  # the [server] extra: duckdb, hnswlib

    config = app.config
    if config.store_address:  # a worker process: the store lives in the store-owner process
        from .memory.remote import RemoteStore

        app.store = RemoteStore(config.store_address, config.store_authkey or b"")
    else:
        app.store = await asyncio.to_thread(open_memory_store, config)
    return memory.MemoryService(app.store)


def open_memory_store(config: ServeConfig) -> Any:
    """Open the store of ``config`` and load its data (demo, imports): blocking; also what the
    store-owner process of ``ventros serve --workers N`` runs."""
    from . import memory

    store = memory.open_store(
        config.db, embedder=config.embedder, reembed=config.reembed, **config.embedder_options
    )
    try:
        if config.demo:
            log.info("loading the demo data set")
            memory.load_demo(store)
        for path in config.imports:
            log.info("importing %s", path)
            memory.import_jsonl(store, path)
    except BaseException:
        store.close()
        raise
    return store


def _agent_service(app: VentrosApp) -> Any:
    from . import agents

    config = app.config
    llm = agents.make_llm(config.llm, **config.llm_options)
    memory_client = None
    own_memory = "memory" in app._running and not config.memory_addr
    over_unix = _settings.unix_path(app.memory_address()) is not None
    tls: Any = False
    token: str | None = None
    if own_memory and over_unix:  # the store owner's private socket: the key, no TLS
        token = app.internal_key
    elif own_memory and (app.internal_key or config.tls_cert):
        # Our own memory port wants a key/TLS too: give the agents a client that has them.
        from ventros import TLSConfig

        if config.tls_cert:
            # With mutual TLS the server's certificate doubles as the client certificate.
            mutual = bool(config.tls_client_ca)
            tls = TLSConfig(
                ca_file=config.tls_cert,
                cert_file=config.tls_cert if mutual else None,
                key_file=config.tls_key if mutual else None,
            )
        token = app.internal_key
    elif not own_memory and (config.memory_token or config.memory_tls_ca):
        from ventros import TLSConfig

        tls = TLSConfig(ca_file=config.memory_tls_ca) if config.memory_tls_ca else False
        token = config.memory_token
    if token is not None or tls is not False:
        from ventros import MemoryClient

        from .agents.service import MEMORY_RETRY

        memory_client = MemoryClient(app.memory_address(), tls=tls, token=token, retry=MEMORY_RETRY)
        app._on_close.append(memory_client.close)
    return agents.AgentService(memory_address=app.memory_address(), llm=llm, memory_client=memory_client)


# -- helpers -------------------------------------------------------------------------------


async def _maybe_await(value: Any) -> Any:
    return await value if isinstance(value, Awaitable) else value


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind(host: str, port: int, name: str, *, reuse_port: bool = False) -> socket.socket:
    """One listening socket (so port 0 means one free port, even for a name with two addresses)."""
    bind_host = "" if host in _WILDCARD_HOSTS else host.strip("[]")
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    try:
        if bind_host and family == socket.AF_INET and not _is_ip(bind_host):
            info = socket.getaddrinfo(bind_host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family = info[0][0]
            bind_host = str(info[0][4][0])
        if family == socket.AF_INET6 and not bind_host:
            bind_host = "::"
        return listen_socket(bind_host or "0.0.0.0", port, reuse_port=reuse_port, backlog=128)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot listen on {_join(host, port)} for the {name} service: {exc}"
        ) from exc


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, host)
    except OSError:
        return False
    return True


def _stop_listening(server: VentrosServer) -> None:
    # grpclib's Server.close() also cancels running calls; to drain we only stop accepting
    # connections first (asyncio.Server.close leaves established connections open on 3.11+).
    listener = getattr(server, "_server", None)
    if listener is not None:
        listener.close()


def _track_connections(server: VentrosServer) -> weakref.WeakSet[Any]:
    """Remember each connection's protocol so shutdown can close the connections themselves:
    grpclib leaves them open, and clients would keep waiting on a cancelled call."""
    connections: weakref.WeakSet[Any] = weakref.WeakSet()
    factory = server._protocol_factory

    def tracking_factory() -> Any:
        protocol = factory()
        connections.add(protocol)
        return protocol

    server._protocol_factory = tracking_factory  # type: ignore[method-assign]
    return connections


#: How long shutdown waits for clients to acknowledge the PING of ``_settle``.
_SETTLE_TIMEOUT = 1.0


async def _settle(connections: weakref.WeakSet[Any], timeout: float = _SETTLE_TIMEOUT) -> None:
    """PING every open connection and wait (at most ``timeout``) for the acknowledgements.

    grpclib clients fail every stream still open on a connection when a GOAWAY arrives, even one
    whose complete answer arrived in the same read, so a call that finished during the drain
    would be reported as UNAVAILABLE. A client acknowledges the PING only after it has processed
    every frame sent before it, so once the ACK is back the GOAWAY can no longer overtake them.
    """
    loop = asyncio.get_running_loop()
    acks: list[asyncio.Future[None]] = []
    for protocol in list(connections):
        connection = getattr(protocol, "connection", None)
        if connection is None or connection.is_closing():
            continue
        ack: asyncio.Future[None] = loop.create_future()
        original = connection.ping_ack_process

        def on_ack(original: Callable[[], None] = original, ack: asyncio.Future[None] = ack) -> None:
            if not ack.done():
                ack.set_result(None)
            original()

        with contextlib.suppress(Exception):
            connection.ping_ack_process = on_ack
            connection._connection.ping(b"vdrain00")
            connection.flush()
            acks.append(ack)
    if acks:
        await asyncio.wait(acks, timeout=timeout)


def _close_connections(connections: weakref.WeakSet[Any]) -> None:
    for protocol in list(connections):
        connection = getattr(protocol, "connection", None)
        if connection is None:
            continue
        with contextlib.suppress(Exception):
            connection._connection.close_connection()  # HTTP/2 GOAWAY, then close
            connection.flush()
        with contextlib.suppress(Exception):
            connection.close()
