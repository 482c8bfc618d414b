"""API keys with scopes for every ventros service (UNAUTHENTICATED / PERMISSION_DENIED).

    keys = ApiKeys.from_spec("k3y-for-crm:read,write,execute;k3y-for-bi:read")
    server, health = build_server(services, listeners=[keys])

A caller sends ``authorization: Bearer <key>`` (what ``ventros --token`` and the SDK's
``token=`` send). Each key has scopes; each method needs one:

=========  ===========================================================================
scope      methods
=========  ===========================================================================
read       ListAvailableAgents, GetAgentCapabilities, SearchMemories, GetContactContext,
           GetRelatedEntities
write      StoreMemory
execute    ExecuteAgent, StreamAgentExecution, ExecuteAgentBatch
=========  ===========================================================================

``*`` (or ``all``) grants every scope, including methods this table does not name (a servicer
added later needs an all-scopes key until it is listed: unknown methods fail closed).

Answers, each with one ErrorDetails and a suggestion:

* no ``authorization`` metadata: UNAUTHENTICATED, code ``MISSING_CREDENTIALS``;
* a malformed header or a key that is not configured: UNAUTHENTICATED, ``INVALID_CREDENTIALS``;
* a valid key without the scope: PERMISSION_DENIED, ``INSUFFICIENT_SCOPE`` with
  ``metadata["required_scope"]``, ``["method"]`` and ``["key"]`` (the key's *name*, never the key).

Health checks (``grpc.health.v1``) are always open: load balancers and orchestrators probe
without credentials. Server reflection is open by default (it describes the public contract,
the same ``.proto`` files this package ships, and no data); ``open_reflection=False`` makes it
need a valid key of any scope.

Keys are kept only as SHA-256 digests. A presented key is hashed and compared with *every*
configured digest by ``hmac.compare_digest`` (no early exit), so the time a check takes tells
nothing about which key, or how much of one, matched. The rejection is decided in the
RecvRequest listener, before the request message is read or any handler runs.

Where keys come from (``ApiKeys.from_env``):

* ``VENTROS_API_KEYS="key1:read,write;key2:read"``: entries separated by ``;`` (or newlines),
  each ``KEY:SCOPES`` with scopes separated by ``,`` (the last ``:`` splits, so a key may contain
  ``:``); names are ``env#1``, ``env#2``...;
* ``VENTROS_API_KEYS_FILE=/etc/ventros/keys.toml`` (or ``.json``)::

      [[keys]]
      name = "go-crm"                  # shown in logs and errors instead of the key
      sha256 = "9f86d081884c7d65..."   # hex SHA-256 of the key: the file holds no usable secret
      scopes = ["read", "write", "execute"]

      [[keys]]
      name = "analytics"
      key = "plain-text-key"           # or the key itself
      scopes = ["read"]

  JSON has the same shape: ``{"keys": [{"name": ..., "sha256" | "key": ..., "scopes": [...]}]}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import stat
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpclib.events import RecvRequest, listen
from ventros import ConfigurationError, PermissionDeniedError, StatusError, UnauthenticatedError

log = logging.getLogger("ventros.auth")

KEYS_ENV = "VENTROS_API_KEYS"
KEYS_FILE_ENV = "VENTROS_API_KEYS_FILE"

READ, WRITE, EXECUTE = "read", "write", "execute"
SCOPES: tuple[str, ...] = (READ, WRITE, EXECUTE)
#: Grants every scope, and methods the table below does not list.
ALL = "*"
_ALL_ALIASES = {"*", "all"}
#: What a method the table does not know needs: only an all-scopes key has it.
UNLISTED = "admin"

METHOD_SCOPES: dict[str, str] = {
    "/ventros.agents.AgentService/ListAvailableAgents": READ,
    "/ventros.agents.AgentService/GetAgentCapabilities": READ,
    "/ventros.agents.AgentService/ExecuteAgent": EXECUTE,
    "/ventros.agents.AgentService/StreamAgentExecution": EXECUTE,
    "/ventros.agents.AgentService/ExecuteAgentBatch": EXECUTE,
    "/ventros.memory.MemoryService/SearchMemories": READ,
    "/ventros.memory.MemoryService/GetContactContext": READ,
    "/ventros.memory.MemoryService/GetRelatedEntities": READ,
    "/ventros.memory.MemoryService/StoreMemory": WRITE,
}

HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIX = "/grpc.reflection."

_HOW_TO_SEND = (
    "Send the metadata 'authorization: Bearer <key>' (ventros --token KEY or $VENTROS_TOKEN; "
    "token= in the SDK)."
)


def digest(key: str) -> bytes:
    """The SHA-256 of a key, the only form in which keys are kept."""
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class ApiKey:
    """One configured key: a name for logs and errors, the key's digest, its scopes."""

    name: str
    digest: bytes
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return ALL in self.scopes or scope in self.scopes

    def __repr__(self) -> str:  # never print the digest either
        return f"ApiKey(name={self.name!r}, scopes={sorted(self.scopes)})"


def _scopes(raw: Iterable[str], where: str) -> frozenset[str]:
    scopes: set[str] = set()
    for item in raw:
        scope = str(item).strip().lower()
        if not scope:
            continue
        if scope in _ALL_ALIASES:
            scopes.add(ALL)
        elif scope in SCOPES:
            scopes.add(scope)
        else:
            raise ConfigurationError(
                f"{where}: unknown scope {item!r}; use {', '.join(SCOPES)} or * (every scope)"
            )
    if not scopes:
        raise ConfigurationError(f"{where}: a key needs at least one scope ({', '.join(SCOPES)} or *)")
    return frozenset(scopes)


def _check_key_text(key: str, where: str) -> str:
    if not key or key != key.strip() or any(c.isspace() for c in key):
        raise ConfigurationError(f"{where}: a key must be non-empty and contain no whitespace")
    if not key.isprintable() or not key.isascii():
        raise ConfigurationError(f"{where}: a key must be printable ASCII (it travels in an HTTP/2 header)")
    return key


class ApiKeys:
    """The configured keys, and the RecvRequest listener that enforces them."""

    def __init__(
        self,
        keys: Iterable[ApiKey],
        *,
        open_reflection: bool = True,
        method_scopes: Mapping[str, str] = METHOD_SCOPES,
    ) -> None:
        self.keys: tuple[ApiKey, ...] = tuple(keys)
        if not self.keys:
            raise ConfigurationError("no API keys configured")
        seen: set[bytes] = set()
        names: set[str] = set()
        for key in self.keys:
            if key.digest in seen:
                raise ConfigurationError(f"API key {key.name!r} is configured twice")
            if key.name in names:
                raise ConfigurationError(f"two API keys are named {key.name!r}")
            seen.add(key.digest)
            names.add(key.name)
        self.open_reflection = open_reflection
        self.method_scopes = dict(method_scopes)

    def __repr__(self) -> str:
        return f"ApiKeys({list(self.keys)!r})"

    def __iter__(self) -> Iterator[ApiKey]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    # -- building ------------------------------------------------------------------------------

    @classmethod
    def from_spec(cls, spec: str, *, source: str = KEYS_ENV, **kwargs: Any) -> ApiKeys:
        """Parse ``"key1:read,write;key2:read"`` (entries split by ``;`` or newlines)."""
        keys = []
        entries = [e.strip() for e in spec.replace("\n", ";").split(";")]
        for position, entry in enumerate((e for e in entries if e), start=1):
            where = f"{source} entry {position}"
            key, sep, scopes = entry.rpartition(":")
            if not sep:
                raise ConfigurationError(f"{where}: expected KEY:SCOPES (e.g. mykey:read,write)")
            name = f"env#{position}" if source == KEYS_ENV else f"{source}#{position}"
            keys.append(ApiKey(name, digest(_check_key_text(key, where)), _scopes(scopes.split(","), where)))
        if not keys:
            raise ConfigurationError(f"{source} is set but holds no KEY:SCOPES entry")
        return cls(keys, **kwargs)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> ApiKeys:
        """Read a TOML or JSON keys file (see the module docstring for the format)."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
            mode = file.stat().st_mode
        except OSError as exc:
            raise ConfigurationError(f"cannot read the API keys file {file}: {exc}") from exc
        if mode & stat.S_IROTH:
            log.warning("the API keys file %s is readable by every user: chmod 600 it", file)
        suffix = file.suffix.lower()
        try:
            if suffix == ".json" or (suffix != ".toml" and text.lstrip().startswith("{")):
                data: Any = json.loads(text)
            else:
                data = tomllib.loads(text)
        except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError
            raise ConfigurationError(
                f"the API keys file {file} is neither valid TOML nor JSON: {exc}"
            ) from exc
        entries = data.get("keys") if isinstance(data, dict) else data
        if not isinstance(entries, list) or not entries:
            raise ConfigurationError(f"the API keys file {file} needs a non-empty 'keys' list")
        return cls([_entry(item, f"{file} key {i}", i) for i, item in enumerate(entries, start=1)], **kwargs)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        token: str | None = None,
        keys_file: str | None = None,
        **kwargs: Any,
    ) -> ApiKeys | None:
        """The keys of $VENTROS_API_KEYS, $VENTROS_API_KEYS_FILE (or ``keys_file``) and ``token``.

        ``token`` (``ventros serve --token``) is one more key, named "token", with every scope.
        None when none of them is set: the server then requires no credentials.
        """
        env = os.environ if environ is None else environ
        keys: list[ApiKey] = []
        spec = env.get(KEYS_ENV, "").strip()
        if spec:
            keys.extend(cls.from_spec(spec))
        path = keys_file or env.get(KEYS_FILE_ENV, "").strip()
        if path:
            keys.extend(cls.from_file(path))
        if token is not None:
            keys.append(
                ApiKey("token", digest(_check_key_text(token.strip(), "the token")), frozenset({ALL}))
            )
        return cls(keys, **kwargs) if keys else None

    # -- checking ------------------------------------------------------------------------------

    def required_scope(self, method: str) -> str | None:
        """The scope ``method`` needs; None when it is open to everyone."""
        if method.startswith(HEALTH_PREFIX):
            return None
        if method.startswith(REFLECTION_PREFIX):
            return None if self.open_reflection else ""  # "": any valid key
        return self.method_scopes.get(method, UNLISTED)

    def find(self, presented: str) -> ApiKey | None:
        """The key whose digest matches, comparing with every key so timing reveals nothing."""
        candidate = digest(presented)
        found: ApiKey | None = None
        for key in self.keys:
            if hmac.compare_digest(candidate, key.digest):
                found = key
        return found

    def authenticate(self, metadata: Mapping[str, Any]) -> ApiKey:
        """The caller's key, or UnauthenticatedError (MISSING_CREDENTIALS / INVALID_CREDENTIALS)."""
        values = _all_values(metadata, "authorization")
        if not values:
            raise UnauthenticatedError.of(
                "MISSING_CREDENTIALS",
                "this server requires an API key and the call carried none",
                suggestions=[_HOW_TO_SEND],
            )
        if len(values) > 1:
            raise _invalid("the call carried more than one authorization header")
        scheme, _, credential = values[0].strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise _invalid("the authorization header is not 'Bearer <key>'")
        key = self.find(credential)
        if key is None:
            raise _invalid("the API key is not valid for this server")
        return key

    def authorize(self, key: ApiKey, method: str, scope: str) -> None:
        if scope == "" or key.allows(scope):
            return
        needed = scope if scope != UNLISTED else "* (every scope)"
        raise PermissionDeniedError.of(
            "INSUFFICIENT_SCOPE",
            f"the API key {key.name!r} lacks the {needed!r} scope that {method} needs",
            suggestions=[f"Call with a key that has the {needed!r} scope, or add it to this key's scopes."],
            required_scope=scope if scope != UNLISTED else ALL,
            method=method,
            key=key.name,
        )

    def check(self, metadata: Mapping[str, Any], method: str) -> ApiKey | None:
        """Raise the status a call to ``method`` gets; the caller's key when it may proceed."""
        scope = self.required_scope(method)
        if scope is None:
            return None
        key = self.authenticate(metadata)
        self.authorize(key, method, scope)
        return key

    # -- grpclib integration --------------------------------------------------------------------

    def install(self, server: Any) -> None:
        """Listen to ``server``'s RecvRequest events (what ``build_server(listeners=[...])`` calls)."""
        listen(server, RecvRequest, self._on_recv_request)

    __call__ = install

    async def _on_recv_request(self, event: RecvRequest) -> None:
        try:
            self.check(event.metadata, event.method_name)
        except StatusError as exc:
            log.debug("refused %s: %s", event.method_name, exc.code)
            grpc_error = exc.to_grpc()

            async def refuse(stream: Any) -> None:
                raise grpc_error

            event.method_func = refuse


def _invalid(why: str) -> UnauthenticatedError:
    return UnauthenticatedError.of(  # type: ignore[return-value]
        "INVALID_CREDENTIALS",
        why,
        suggestions=[
            _HOW_TO_SEND,
            "Check the key against the server's VENTROS_API_KEYS / keys file (keys are case-sensitive).",
        ],
    )


def _all_values(metadata: Mapping[str, Any], name: str) -> list[str]:
    getall = getattr(metadata, "getall", None)
    raw = list(getall(name, ())) if getall is not None else [metadata[name]] if name in metadata else []
    return [v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in raw]


def _entry(item: Any, where: str, position: int) -> ApiKey:
    if not isinstance(item, dict):
        raise ConfigurationError(f"{where}: expected a table/object with key or sha256, and scopes")
    unknown = set(item) - {"name", "key", "sha256", "scopes"}
    if unknown:
        raise ConfigurationError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    name = str(item.get("name") or f"key#{position}").strip()
    if "key" in item and "sha256" in item:
        raise ConfigurationError(f"{where}: give either key or sha256, not both")
    if "key" in item:
        key_digest = digest(_check_key_text(str(item["key"]), where))
    elif "sha256" in item:
        try:
            key_digest = bytes.fromhex(str(item["sha256"]).strip())
        except ValueError:
            key_digest = b""
        if len(key_digest) != 32:
            raise ConfigurationError(f"{where}: sha256 must be 64 hexadecimal digits")
    else:
        raise ConfigurationError(f"{where}: needs key (the key) or sha256 (its hex SHA-256)")
    scopes = item.get("scopes")
    if isinstance(scopes, str):
        scopes = scopes.split(",")
    if not isinstance(scopes, list):
        raise ConfigurationError(f'{where}: scopes must be a list such as ["read", "write"]')
    return ApiKey(name, key_digest, _scopes(scopes, where))


__all__ = [
    "ALL",
    "EXECUTE",
    "KEYS_ENV",
    "KEYS_FILE_ENV",
    "METHOD_SCOPES",
    "READ",
    "SCOPES",
    "WRITE",
    "ApiKey",
    "ApiKeys",
    "digest",
]
