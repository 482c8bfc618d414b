"""``ventros conformance``: check a server against the contract (ventros_conformance.run)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from ._common import EXIT_FAILURE, agent_address, command, fail, memory_address


class Service(enum.StrEnum):
    memory = "memory"
    agent = "agent"


@command
def conformance(
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            metavar="HOST:PORT",
            show_default=False,
            help="Server to check [default: --memory-addr or --agent-addr, by --service].",
        ),
    ] = None,
    service: Annotated[
        Service, typer.Option("--service", help="Which service the target runs.")
    ] = Service.memory,
    junit: Annotated[
        Path | None,
        typer.Option("--junit", metavar="FILE", dir_okay=False, help="Also write a JUnit XML report."),
    ] = None,
    thorough: Annotated[bool, typer.Option("--thorough", help="Many more generated cases (slower).")] = False,
    fixtures: Annotated[
        Path | None,
        typer.Option(
            "--fixtures",
            metavar="FILE.jsonl",
            exists=True,
            dir_okay=False,
            help="Fixtures the target was loaded with [default: the suite's own fixtures.jsonl].",
        ),
    ] = None,
) -> None:
    """Run the conformance suite against a server; exit 0 when it conforms.

    The target should serve the suite's fixtures, e.g. `ventros serve --fixtures --db :memory:`.
    """
    try:
        import ventros_conformance
    except ImportError as exc:
        fail(
            f"the conformance suite is not installed ({exc.name})", hint="pip install 'ventros[conformance]'"
        )
    address = target or (memory_address() if service is Service.memory else agent_address())
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
    try:
        code = ventros_conformance.run(
            address,
            service.value,
            junit=str(junit) if junit else None,
            thorough=thorough,
            fixtures=str(fixtures) if fixtures else None,
        )
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    raise typer.Exit(int(code) if code is not None else EXIT_FAILURE)
