"""Mutual TLS: only clients with a certificate signed by --tls-client-ca get through."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from ventros import MemoryClient, RetryPolicy, TLSConfig, UnavailableError
from ventros_server.app import ServeConfig, VentrosApp

from .conftest import Pki
from .servicers import CountingAgents, CountingMemory

ONCE = RetryPolicy(attempts=1)
CONTACT = "550e8400-e29b-41d4-a716-446655440000"


@pytest.fixture
async def mtls_app(pki: Pki) -> AsyncIterator[tuple[VentrosApp, CountingMemory]]:
    memory = CountingMemory()
    config = ServeConfig(
        agent_port=0,
        memory_port=0,
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        tls_client_ca=str(pki.ca),
    )
    app = VentrosApp(config, services={"agent": lambda app: CountingAgents(), "memory": lambda app: memory})
    await app.start()
    try:
        yield app, memory
    finally:
        await app.stop(grace=0)


async def _search(address: str, tls: TLSConfig | bool) -> None:
    async with MemoryClient(address, retry=ONCE, tls=tls) as client:
        await client.search_memories(contact_id=CONTACT, query="x", timeout=5)


async def test_client_certificate_signed_by_the_ca_is_accepted(mtls_app, pki: Pki) -> None:
    app, memory = mtls_app
    tls = TLSConfig(ca_file=str(pki.ca), cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    await _search(app.addresses["memory"], tls)
    assert memory.calls["SearchMemories"] == 1


@pytest.mark.parametrize("client", ["no certificate", "self-signed certificate", "plaintext"])
async def test_clients_without_a_ca_signed_certificate_are_refused(mtls_app, pki: Pki, client: str) -> None:
    app, memory = mtls_app
    tls: TLSConfig | bool = {
        "no certificate": TLSConfig(ca_file=str(pki.ca)),
        "self-signed certificate": TLSConfig(
            ca_file=str(pki.ca), cert_file=str(pki.rogue_cert), key_file=str(pki.rogue_key)
        ),
        "plaintext": False,
    }[client]
    with pytest.raises(UnavailableError):
        await _search(app.addresses["memory"], tls)
    assert memory.calls["SearchMemories"] == 0


async def test_client_refuses_a_server_its_ca_did_not_sign(mtls_app, pki: Pki) -> None:
    app, memory = mtls_app
    tls = TLSConfig(ca_file=str(pki.rogue_cert), cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    with pytest.raises(UnavailableError):
        await _search(app.addresses["memory"], tls)
    assert memory.calls["SearchMemories"] == 0
