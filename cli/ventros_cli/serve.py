"""``ventros serve``: the reference AgentService and MemoryService in one process."""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ._common import EXIT_FAILURE, EXIT_USAGE, command, emit_json_line, fail, parse_pairs, state

SERVER_PANEL = "Server"
DATA_PANEL = "Data"
BACKEND_PANEL = "Backends"
SECURITY_PANEL = "Security"


class Only(enum.StrEnum):
    agent = "agent"
    memory = "memory"


def default_db_path() -> Path:
    """Where the memory store lives unless --db says otherwise (the user's data directory)."""
    import platformdirs

    return platformdirs.user_data_path("ventros", appauthor=False) / "memory.duckdb"


def fixtures_path() -> Path:
    """The conformance suite's fixtures file (ventros_conformance/fixtures.jsonl)."""
    try:
        from ventros_conformance import fixtures_path as shipped
    except ImportError:
        fail("the conformance suite is not installed", hint="pip install 'ventros[conformance]'")
    path = shipped()
    if not path.is_file():
        fail(f"no fixtures file at {path}", hint="Reinstall ventros: pip install 'ventros[all]'")
    return path


@command
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on.", rich_help_panel=SERVER_PANEL)
    ] = "127.0.0.1",
    agent_port: Annotated[
        int,
        typer.Option(
            "--agent-port",
            min=0,
            max=65535,
            help="AgentService port (0: any free port).",
            rich_help_panel=SERVER_PANEL,
        ),
    ] = 50051,
    memory_port: Annotated[
        int,
        typer.Option(
            "--memory-port",
            min=0,
            max=65535,
            help="MemoryService port (0: any free port).",
            rich_help_panel=SERVER_PANEL,
        ),
    ] = 50052,
    only: Annotated[
        Only | None, typer.Option("--only", help="Run one service only.", rich_help_panel=SERVER_PANEL)
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            metavar="N",
            min=1,
            help="Server processes sharing each port (SO_REUSEPORT; the kernel spreads connections "
            "over them). With the memory service, one more process owns the DuckDB store: the "
            "workers forward their store calls to it, and it serves the memory port too, keeping "
            "a lone connection and handing further ones to the workers.",
            rich_help_panel=SERVER_PANEL,
        ),
    ] = 1,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            metavar="SECONDS",
            min=0,
            help="On SIGINT/SIGTERM, how long running calls get to finish.",
            rich_help_panel=SERVER_PANEL,
        ),
    ] = 10.0,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.", rich_help_panel=SERVER_PANEL)
    ] = "info",
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="PATH",
            show_default=False,
            rich_help_panel=DATA_PANEL,
            help="Memory store file, or :memory: [default: memory.duckdb in the user data dir].",
        ),
    ] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Load the demo data set.", rich_help_panel=DATA_PANEL)
    ] = False,
    fixtures: Annotated[
        bool,
        typer.Option("--fixtures", help="Load the conformance suite's fixtures.", rich_help_panel=DATA_PANEL),
    ] = False,
    imports: Annotated[
        list[Path] | None,
        typer.Option(
            "--import",
            metavar="FILE.jsonl",
            exists=True,
            dir_okay=False,
            rich_help_panel=DATA_PANEL,
            help="Import this JSONL file at start-up; repeat for more.",
        ),
    ] = None,
    embedder: Annotated[
        str,
        typer.Option(
            "--embedder",
            help="Embedder of the memory store (offline, openai, minilm...).",
            rich_help_panel=BACKEND_PANEL,
        ),
    ] = "offline",
    embedder_option: Annotated[
        list[str] | None,
        typer.Option(
            "--embedder-option",
            metavar="KEY=VALUE",
            rich_help_panel=BACKEND_PANEL,
            help="Option passed to the embedder; repeat for more.",
        ),
    ] = None,
    reembed: Annotated[
        bool,
        typer.Option(
            "--reembed",
            help="If --db was built with another embedder, re-embed every memory with this one "
            "(otherwise it is refused).",
            rich_help_panel=BACKEND_PANEL,
        ),
    ] = False,
    llm: Annotated[
        str,
        typer.Option(
            "--llm", help="LLM backend of the agents: offline or openai.", rich_help_panel=BACKEND_PANEL
        ),
    ] = "offline",
    llm_option: Annotated[
        list[str] | None,
        typer.Option(
            "--llm-option",
            metavar="KEY=VALUE",
            rich_help_panel=BACKEND_PANEL,
            help="Option passed to the LLM backend (e.g. model=..., base_url=...); repeat for more.",
        ),
    ] = None,
    rate_limit: Annotated[
        float | None,
        typer.Option(
            "--rate-limit",
            metavar="RPS",
            envvar="VENTROS_RATE_LIMIT_RPS",
            show_envvar=True,
            help="Calls per second per caller on each port; beyond it RESOURCE_EXHAUSTED [default: no limit].",
            rich_help_panel=SECURITY_PANEL,
        ),
    ] = None,
    rate_burst: Annotated[
        int | None,
        typer.Option(
            "--rate-burst",
            metavar="N",
            envvar="VENTROS_RATE_LIMIT_BURST",
            show_envvar=True,
            help="Calls a caller may burst above the rate [default: the rate].",
            rich_help_panel=SECURITY_PANEL,
        ),
    ] = None,
    api_keys_file: Annotated[
        Path | None,
        typer.Option(
            "--api-keys-file",
            metavar="FILE",
            envvar="VENTROS_API_KEYS_FILE",
            show_envvar=True,
            exists=True,
            dir_okay=False,
            help="API keys with scopes (TOML or JSON; see docs/operations.md). $VENTROS_API_KEYS "
            "('key:read,write;key2:read') adds more; --token is one key with every scope.",
            rich_help_panel=SECURITY_PANEL,
        ),
    ] = None,
    memory_token: Annotated[
        str | None,
        typer.Option(
            "--memory-token",
            metavar="KEY",
            envvar="VENTROS_MEMORY_TOKEN",
            show_envvar=True,
            help="API key the agent service sends to the memory service at --memory-addr.",
            rich_help_panel=SECURITY_PANEL,
        ),
    ] = None,
    memory_tls_ca: Annotated[
        Path | None,
        typer.Option(
            "--memory-tls-ca",
            metavar="FILE",
            envvar="VENTROS_MEMORY_TLS_CA",
            show_envvar=True,
            exists=True,
            dir_okay=False,
            help="Reach the memory service at --memory-addr over TLS, trusting this CA bundle.",
            rich_help_panel=SECURITY_PANEL,
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            help="Server certificate (PEM); enables TLS.",
            rich_help_panel=SECURITY_PANEL,
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(
            "--tls-key",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            help="Private key of --tls-cert.",
            rich_help_panel=SECURITY_PANEL,
        ),
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(
            "--tls-client-ca",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            help="Require client certificates signed by this CA (mutual TLS).",
            rich_help_panel=SECURITY_PANEL,
        ),
    ] = None,
) -> None:
    """Run the reference server: AgentService and MemoryService, each on its own port.

    Prints "agent|memory service listening on HOST:PORT" for each service once it serves (with
    --json: one JSON line per event). With --token (or $VENTROS_TOKEN), $VENTROS_API_KEYS or
    --api-keys-file every call but health checks must carry an API key with the method's scope. The agent service reaches memory at this process's
    memory port, or at --memory-addr. SIGINT/SIGTERM: health turns NOT_SERVING, new calls are
    refused, running calls get --grace seconds, then the store is closed. --workers N runs the
    services in N processes sharing the ports; the memory store then lives in one more process,
    which every worker's memory service calls and which serves the memory port too (a lone
    client is served there, without the hop).
    """
    from ventros import ConfigurationError

    try:
        from ventros_server.app import ServeConfig
        from ventros_server.app import run as run_app
    except ImportError as exc:  # pragma: no cover - the server code ships with the package
        fail(f"the reference server is not installed ({exc.name})", hint="pip install 'ventros[server]'")

    _configure_logging(log_level)
    db_path = db or str(default_db_path())
    needs_memory = only is not Only.agent
    if needs_memory and db_path != ":memory:":
        Path(db_path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    import_files = [str(p) for p in imports or ()]
    if fixtures:
        import_files.insert(0, str(fixtures_path()))
    config = ServeConfig(
        host=host,
        agent_port=agent_port,
        memory_port=memory_port,
        only=only.value if only else None,
        db=str(Path(db_path).expanduser()) if db_path != ":memory:" else db_path,
        demo=demo,
        imports=import_files,
        embedder=embedder,
        embedder_options=_typed(parse_pairs(embedder_option, "--embedder-option")),
        reembed=reembed,
        llm=llm,
        llm_options=_typed(parse_pairs(llm_option, "--llm-option")),
        memory_addr=state.memory_addr,
        tls_cert=str(tls_cert) if tls_cert else None,
        tls_key=str(tls_key) if tls_key else None,
        tls_client_ca=str(tls_client_ca) if tls_client_ca else None,
        token=state.token,
        api_keys=os.environ.get("VENTROS_API_KEYS") or None,
        api_keys_file=str(api_keys_file) if api_keys_file else None,
        memory_token=memory_token,
        memory_tls_ca=str(memory_tls_ca) if memory_tls_ca else None,
        rate_limit=rate_limit,
        rate_burst=rate_burst,
        grace=grace,
    )
    try:
        if workers > 1:
            _serve_workers(config, workers, log_level)
        else:
            asyncio.run(run_app(config, announce=_announce))
    except KeyboardInterrupt:  # a signal before the handlers were installed
        pass
    except ConfigurationError as exc:
        fail(str(exc), code=EXIT_USAGE, kind="CONFIGURATION_ERROR")
    except ImportError as exc:
        fail(
            f"the reference server needs a package that is not installed ({exc.name})",
            hint="pip install 'ventros[server]'",
        )
    except RuntimeError as exc:
        if workers == 1:
            _could_not_start(exc)
        # A worker or the store process failed (its own log, above, says why).
        fail(
            f"the server stopped: {exc}",
            code=EXIT_FAILURE,
            hint="If the store process could not open --db, another `ventros serve` (or `ventros "
            "memory import`) may have it open.",
        )
    except Exception as exc:  # e.g. the store file is locked by another server
        _could_not_start(exc)


def _could_not_start(exc: Exception) -> NoReturn:
    logging.getLogger("ventros.serve").debug("start-up failed", exc_info=True)
    locked = "lock" in str(exc).lower()
    fail(
        f"the server could not start: {type(exc).__name__}: {exc}",
        code=EXIT_FAILURE,
        hint="Another `ventros serve` (or `ventros memory import`) has this --db open: stop it, or pass "
        "another --db (--db :memory: keeps nothing)."
        if locked
        else "Run with --log-level debug for details.",
    )


def _serve_workers(config: Any, workers: int, log_level: str) -> None:
    """The services in ``workers`` processes sharing the ports (ventros_server.multiproc)."""
    from ventros_server.multiproc import serve_app_workers

    serve_app_workers(config, workers, announce=_announce, log_level=logging.getLevelName(log_level.upper()))


#: Option values that stay strings even when they look like numbers.
_TEXT_OPTIONS = {"api_key", "model", "base_url", "url", "token", "name", "path"}


def _typed(options: dict[str, str]) -> dict[str, Any]:
    """KEY=VALUE strings to the types backends expect: true/false, integers, decimals."""
    typed: dict[str, Any] = {}
    for key, value in options.items():
        typed[key] = value if key in _TEXT_OPTIONS else _parse_scalar(value)
    return typed


def _parse_scalar(value: str) -> Any:
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _announce(line: str) -> None:
    """Start-up and shutdown milestones on stdout, one line each (tests read the ports here)."""
    if state.json:
        emit_json_line(_event(line))
    else:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _event(line: str) -> dict[str, str]:
    """An announcement as a JSON event (for `ventros --json serve`)."""
    match = re.match(r"^(agent|memory) service listening on (\S+)$", line)
    if match:
        return {"event": "listening", "service": match.group(1), "address": match.group(2)}
    if line.startswith("agent service uses the memory service at "):
        return {"event": "memory_address", "address": line.rsplit(" ", 1)[1]}
    if line.startswith("shutting down"):
        return {"event": "shutting_down", "message": line}
    if line == "stopped":
        return {"event": "stopped"}
    return {"event": "log", "message": line}


def _configure_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        fail(f"unknown log level {level!r}", code=EXIT_USAGE, hint="Use debug, info, warning or error.")
    logging.basicConfig(
        level=numeric,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if numeric > logging.DEBUG:
        for noisy in ("grpclib", "asyncio", "hpack", "h2"):
            logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    # hpack logs every header value at DEBUG, API keys included: never let it.
    logging.getLogger("hpack").setLevel(max(numeric, logging.INFO))
