"""``ventros conformance``: check a server against the contract (ventros_conformance.run)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from ._common import EXIT_FAILURE, EXIT_INTERRUPTED, agent_address, command, fail, memory_address


class Service(enum.StrEnum):
    memory = "memory"
    agent = "agent"
    all = "all"


@command
def conformance(
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            metavar="HOST:PORT",
            show_default=False,
            help="Server to check [default: --agent-addr for --service agent, else --memory-addr].",
        ),
    ] = None,
    service: Annotated[
        Service, typer.Option("--service", help="What the target serves (all: both services on one port).")
    ] = Service.memory,
    junit: Annotated[
        Path | None,
        typer.Option("--junit", metavar="FILE", dir_okay=False, help="Also write a JUnit XML report."),
    ] = None,
    thorough: Annotated[
        bool, typer.Option("--thorough", help="The long profile: 500 generated cases per RPC (slower).")
    ] = False,
    fixtures: Annotated[
        bool | None,
        typer.Option(
            "--fixtures/--no-fixtures",
            show_default=False,
            help="Require the fixture checks (the target must have loaded fixtures.jsonl), or skip them "
            "[default: run them when the target has the fixtures].",
        ),
    ] = None,
    select: Annotated[
        str | None,
        typer.Option(
            "--select", "-k", metavar="EXPR", help="Only the checks matching this pytest -k expression."
        ),
    ] = None,
) -> None:
    """Run the conformance suite against a server; exit 0 when it conforms.

    The fixture checks need the target to serve the suite's fixtures, e.g. a reference server
    started with `ventros serve --fixtures --db :memory:`. The exit code is pytest's: 0 passed,
    1 some check failed, 2 interrupted, 4 usage error, 5 no check selected.
    """
    try:
        import ventros_conformance
    except ImportError as exc:
        fail(
            f"the conformance suite is not installed ({exc.name})", hint="pip install 'ventros[conformance]'"
        )
    address = target or (agent_address() if service is Service.agent else memory_address())
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
    try:
        code = ventros_conformance.run(
            address,
            service.value,
            junit=str(junit) if junit else None,
            thorough=thorough,
            fixtures=fixtures,
            extra_args=["-k", select] if select else [],
        )
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # the suite itself broke (not a failed check): say so, briefly
        fail(f"the conformance suite could not run: {type(exc).__name__}: {exc}", code=EXIT_FAILURE)
    raise typer.Exit(int(code))
