"""``ventros``: serve, call and check the Ventros CRM gRPC services from a terminal.

The console script ``ventros`` runs ``app``. Commands live one module per noun.
"""

from __future__ import annotations

from typing import Annotated

import typer

from . import _common, agents, conformance, demo, health, memory, serve
from ._common import GLOBAL_PANEL

app = typer.Typer(
    name="ventros",
    help=(
        "Serve, call and check the Ventros CRM gRPC services (AgentService, MemoryService).\n\n"
        "New here? Run **ventros demo**: it starts a server with demo data, "
        "calls it and stops it."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from ventros import __version__

        typer.echo(f"ventros {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    agent_addr: _common.AgentAddrOpt = None,
    memory_addr: _common.MemoryAddrOpt = None,
    json_output: _common.JsonOpt = False,
    tls: _common.TlsOpt = False,
    tls_ca: Annotated[
        str | None,
        typer.Option(
            "--tls-ca",
            metavar="FILE",
            rich_help_panel=GLOBAL_PANEL,
            show_default=False,
            help="Trust this CA bundle (PEM); implies --tls.",
        ),
    ] = None,
    tls_cert: Annotated[
        str | None,
        typer.Option(
            "--tls-cert",
            metavar="FILE",
            rich_help_panel=GLOBAL_PANEL,
            show_default=False,
            help="Client certificate (PEM) for mutual TLS; implies --tls.",
        ),
    ] = None,
    tls_key: Annotated[
        str | None,
        typer.Option(
            "--tls-key",
            metavar="FILE",
            rich_help_panel=GLOBAL_PANEL,
            show_default=False,
            help="Private key of --tls-cert.",
        ),
    ] = None,
    tls_server_name: Annotated[
        str | None,
        typer.Option(
            "--tls-server-name",
            metavar="NAME",
            rich_help_panel=GLOBAL_PANEL,
            show_default=False,
            help="Expect this name in the server certificate (instead of the host).",
        ),
    ] = None,
    token: _common.TokenOpt = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    _common.state.merge(
        agent_addr=agent_addr,
        memory_addr=memory_addr,
        json=json_output,
        tls=tls,
        tls_ca=tls_ca,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_server_name=tls_server_name,
        token=token,
    )


app.add_typer(agents.app, name="agents")
app.add_typer(memory.app, name="memory")
app.command("serve")(serve.serve)
app.command("health")(health.health)
app.command("conformance")(conformance.conformance)
app.command("demo")(demo.demo)


if __name__ == "__main__":  # pragma: no cover
    app()
