from __future__ import annotations

import pytest

from tests.foundation.grpcio_peer import generate


@pytest.fixture(scope="session")
def upb(tmp_path_factory):
    """The contract compiled for the protobuf runtime (upb): upb["memory"], upb["agents"]."""
    return generate(tmp_path_factory.mktemp("upb_stubs"))
