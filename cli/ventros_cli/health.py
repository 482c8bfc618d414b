"""``ventros health``: grpc.health.v1 checks of the agent and memory services."""

from __future__ import annotations

import asyncio
import enum
from typing import Annotated, Any

import typer
from rich.text import Text

from ._common import (
    EXIT_FAILURE,
    DataTable,
    _client_kwargs,
    agent_address,
    command,
    console,
    emit_json,
    exit_code_for,
    memory_address,
    run,
    state,
)


class Service(enum.StrEnum):
    agent = "agent"
    memory = "memory"


@command
def health(
    service: Annotated[
        Service | None,
        typer.Option("--service", help="Check one service only [default: both, each at its own address]."),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS", min=0.01)] = 3.0,
) -> None:
    """Ask each service whether it is SERVING (grpc.health.v1.Health/Check).

    Exit code 0 when every checked service is SERVING, 1 when one is NOT_SERVING, else the gRPC
    status of the failed check (e.g. 14 unreachable, 5 unknown service).
    """
    services = [service.value] if service else ["agent", "memory"]
    results = run(_check_all(services, timeout))
    if state.json:
        emit_json({name: result for name, result in results})
    else:
        table = DataTable(title="Health")
        table.add_column("Service", style="bold", no_wrap=True)
        table.add_column("Address", no_wrap=True)
        table.add_column("Status", no_wrap=True)
        table.add_column("Detail")
        for name, result in results:
            style = "green" if result["status"] == "SERVING" else "red"
            table.add_row(
                name, result["address"], Text(result["status"], style=style), result.get("error", "")
            )
        console.print(table)
        if any(r.get("error_code") == "UNREACHABLE" for _, r in results):
            console.print("Hint: no server there? Start one with: ventros serve --demo", markup=False)
    codes = [result["exit_code"] for _, result in results]
    failed = [code for code in codes if code]
    if failed:
        raise typer.Exit(failed[0])


async def _check_all(services: list[str], timeout: float) -> list[tuple[str, dict[str, Any]]]:
    checks = [
        _check(name, agent_address() if name == "agent" else memory_address(), timeout) for name in services
    ]
    return list(zip(services, await asyncio.gather(*checks), strict=True))


async def _check(service: str, address: str, timeout: float) -> dict[str, Any]:
    from grpclib.health.v1.health_grpc import HealthStub
    from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
    from ventros import StatusError
    from ventros._channel import ChannelOptions, call_metadata, guarded, open_channel

    kwargs = _client_kwargs()
    options = ChannelOptions(tls=kwargs["tls"], token=kwargs["token"])
    channel = open_channel(address, options)
    try:
        stub = HealthStub(channel)
        response = await guarded(
            address,
            lambda: stub.Check(
                HealthCheckRequest(service=service), timeout=timeout, metadata=call_metadata(options)
            ),
        )
    except StatusError as exc:
        return {
            "address": address,
            "status": "UNREACHABLE" if exc.code == "UNREACHABLE" else exc.status.name,
            "error": exc.details.message or exc.message,
            "error_code": exc.code,
            "exit_code": exit_code_for(int(exc.status.value)),
        }
    finally:
        channel.close()
    status = HealthCheckResponse.ServingStatus.Name(response.status)
    return {"address": address, "status": status, "exit_code": 0 if status == "SERVING" else EXIT_FAILURE}
