"""What every command shares: global options, clients, output (rich or --json) and errors.

Global options may be given before the command (``ventros --json agents list``) or after it
(``ventros agents list --json``): ``@command`` adds them to each command's own options.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import math
import os
import struct
import sys
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

T = TypeVar("T")

GLOBAL_PANEL = "Global options"

#: Exit codes other than the gRPC status numbers (docs/cli.md lists them all).
EXIT_OK = 0
EXIT_FAILURE = 1  # an unexpected error, a failed check, or CANCELLED / UNKNOWN
EXIT_USAGE = 2  # bad flags or settings (typer's own usage errors exit 2 as well)
EXIT_INTERRUPTED = 130

#: gRPC status number -> exit code. 1 and 2 are taken by general failure and usage errors.
_STATUS_EXIT = {1: EXIT_FAILURE, 2: EXIT_FAILURE}

console = Console(highlight=False, soft_wrap=False)
err_console = Console(stderr=True, highlight=False)


@dataclass
class Globals:
    agent_addr: str | None = None
    memory_addr: str | None = None
    json: bool = False
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_server_name: str | None = None
    token: str | None = None

    def merge(self, **overrides: Any) -> None:
        for name, value in overrides.items():
            if value not in (None, False):
                setattr(self, name, value)


#: The options of the current invocation; set by the app callback, refined by each command.
state = Globals()


# -- per-command copies of the global options ------------------------------------------------

JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Machine output: plain JSON on stdout (errors: JSON on stderr).",
        rich_help_panel=GLOBAL_PANEL,
        show_default=False,
    ),
]
AgentAddrOpt = Annotated[
    str | None,
    typer.Option(
        "--agent-addr",
        metavar="HOST:PORT",
        show_default=False,
        rich_help_panel=GLOBAL_PANEL,
        help="AgentService address [default: $PYTHON_ADK_GRPC or localhost:50051].",
    ),
]
MemoryAddrOpt = Annotated[
    str | None,
    typer.Option(
        "--memory-addr",
        metavar="HOST:PORT",
        show_default=False,
        rich_help_panel=GLOBAL_PANEL,
        help="MemoryService address [default: $MEMORY_SERVICE_GRPC, $GO_MEMORY_SERVICE or localhost:50052].",
    ),
]
TlsOpt = Annotated[
    bool,
    typer.Option(
        "--tls",
        help="Connect with TLS (system trust store unless --tls-ca is given).",
        rich_help_panel=GLOBAL_PANEL,
        show_default=False,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="VENTROS_TOKEN",
        show_envvar=True,
        show_default=False,
        rich_help_panel=GLOBAL_PANEL,
        help="Bearer token, sent as 'authorization: Bearer TOKEN' on every call.",
    ),
]

_GLOBAL_PARAMS = [
    inspect.Parameter("json_output", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOpt),
    inspect.Parameter("agent_addr", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=AgentAddrOpt),
    inspect.Parameter("memory_addr", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=MemoryAddrOpt),
    inspect.Parameter("tls", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=TlsOpt),
    inspect.Parameter("token", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=TokenOpt),
]


def command(func: Callable[..., T]) -> Callable[..., T]:
    """Give a command the global options too (values given here win over the ones before it)."""
    signature = inspect.signature(func, eval_str=True)
    names = [p.name for p in _GLOBAL_PARAMS]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        overrides = {name: kwargs.pop(name, None) for name in names}
        state.merge(
            json=overrides["json_output"],
            agent_addr=overrides["agent_addr"],
            memory_addr=overrides["memory_addr"],
            tls=overrides["tls"],
            token=overrides["token"],
        )
        return func(*args, **kwargs)

    params = [*signature.parameters.values(), *_GLOBAL_PARAMS]
    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


# -- clients ---------------------------------------------------------------------------------


def _client_kwargs() -> dict[str, Any]:
    from ventros import RetryPolicy, TLSConfig

    tls: Any = False
    if state.tls_ca or state.tls_cert or state.tls_server_name:
        tls = TLSConfig(
            ca_file=state.tls_ca,
            cert_file=state.tls_cert,
            key_file=state.tls_key,
            server_name=state.tls_server_name,
        )
    elif state.tls:
        tls = True
    # One attempt: a person at a terminal wants the error now, not after 3 s of backoff.
    return {"tls": tls, "token": state.token, "retry": RetryPolicy(attempts=1)}


def agent_client() -> Any:
    from ventros import AgentClient

    return AgentClient(state.agent_addr, **_client_kwargs())


def memory_client() -> Any:
    from ventros import MemoryClient

    return MemoryClient(state.memory_addr, **_client_kwargs())


def agent_address() -> str:
    from ventros import _settings

    return _settings.agent_address(state.agent_addr)


def memory_address() -> str:
    from ventros import _settings

    return _settings.memory_address(state.memory_addr)


# -- running ---------------------------------------------------------------------------------


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine; expected failures become a short message and an exit code."""
    from ventros import ConfigurationError, StatusError

    try:
        return asyncio.run(coro)
    except StatusError as exc:
        fail_status(exc)
    except ConfigurationError as exc:
        fail(str(exc), code=EXIT_USAGE, kind="CONFIGURATION_ERROR")
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def exit_code_for(status_number: int) -> int:
    return _STATUS_EXIT.get(status_number, status_number)


def fail_status(exc: Any) -> NoReturn:
    """Show a StatusError (panel, or JSON on stderr) and exit with its code."""
    status = exc.status
    details = exc.details
    code = exit_code_for(int(status.value))
    message = details.message or exc.message or status.name
    if state.json:
        _json_error(
            {
                "status": status.name,
                "status_code": int(status.value),
                "code": details.code,
                "message": message,
                "metadata": dict(details.metadata),
                "suggestions": list(details.suggestions),
            },
            code,
        )
    body = Text(message)
    for key, value in sorted(details.metadata.items()):
        body.append(f"\n{key}: ", style="dim")
        body.append(value)
    if details.suggestions:
        body.append("\n")
        for suggestion in details.suggestions:
            body.append("\n• ", style="cyan")
            body.append(suggestion)
    title = f"{status.name} ({int(status.value)})" + (f" · {details.code}" if details.code else "")
    err_console.print(Panel(body, title=escape(title), title_align="left", border_style="red", expand=False))
    if status.name == "UNAVAILABLE" and details.code == "UNREACHABLE":
        err_console.print("Hint: no server there? Start one with: ventros serve --demo", markup=False)
    raise typer.Exit(code)


def fail(message: str, *, code: int = EXIT_FAILURE, kind: str = "ERROR", hint: str | None = None) -> NoReturn:
    """A local failure (bad flag, missing file, missing extra): one line, or JSON on stderr."""
    if state.json:
        _json_error(
            {
                "status": None,
                "status_code": None,
                "code": kind,
                "message": message,
                "metadata": {},
                "suggestions": [hint] if hint else [],
            },
            code,
        )
    err_console.print(Text.assemble(("Error: ", "bold red"), message))
    if hint:
        err_console.print(f"Hint: {hint}", markup=False)
    raise typer.Exit(code)


def _json_error(error: dict[str, Any], code: int) -> NoReturn:
    error["exit_code"] = code
    sys.stderr.write(json.dumps({"error": error}, ensure_ascii=False) + "\n")
    sys.stderr.flush()
    raise typer.Exit(code)


# -- output ----------------------------------------------------------------------------------


def to_data(message: Any) -> Any:
    """A betterproto2 message as plain JSON data: proto field names, defaults included,
    enums by name, timestamps as RFC 3339 and float32 fields without float64 noise."""
    import betterproto2

    data = message.to_dict(casing=betterproto2.Casing.SNAKE, include_default_values=True)
    return _short_floats(data)


def _short_floats(value: Any) -> Any:
    if isinstance(value, float):
        return _float32_repr(value)
    if isinstance(value, dict):
        return {k: _short_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_short_floats(v) for v in value]
    return value


def _float32_repr(value: float) -> float:
    """The shortest decimal that is the same float32 (every float in the contract is 32-bit)."""
    if not math.isfinite(value):
        return value
    try:
        packed = struct.pack("<f", value)
    except OverflowError:
        return value
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return value


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def emit_json_line(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def parse_pairs(pairs: Iterable[str] | None, flag: str) -> dict[str, str]:
    """["k=v", ...] (a flag given several times) into a dict; a bad pair is a usage error."""
    result: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=flag)
        result[key.strip()] = value
    return result


class DataTable(Table):
    """A rich Table for server data: cells and title are literal text (never rich markup, since
    a memory may well contain "[brackets]"), long words fold instead of being cut."""

    def __init__(self, title: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("title_justify", "left")
        super().__init__(title=Text(title) if title is not None else None, **kwargs)

    def add_column(self, header: str = "", **kwargs: Any) -> None:  # type: ignore[override]
        kwargs.setdefault("overflow", "fold")
        super().add_column(header, **kwargs)

    def add_row(self, *cells: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().add_row(*(Text(c) if isinstance(c, str) else c for c in cells), **kwargs)


def fmt_float(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def fmt_time(value: Any) -> str:
    """A timestamp for tables: UTC, to the minute; empty when unset."""
    if value is None:
        return ""
    try:
        return value.strftime("%Y-%m-%d %H:%M")
    except AttributeError:
        return str(value)


def is_tty() -> bool:
    return console.is_terminal and not os.environ.get("NO_COLOR")
