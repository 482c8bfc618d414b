from __future__ import annotations

import pytest

from .grpcio_peer import generate


@pytest.fixture(scope="session")
def pb2(tmp_path_factory):
    """grpcio-generated modules of the contract: pb2["memory"], pb2["agents"], pb2["errors"]."""
    return generate(tmp_path_factory.mktemp("grpcio_stubs"))
