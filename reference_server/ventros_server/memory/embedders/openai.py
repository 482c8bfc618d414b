"""Embeddings from any OpenAI-compatible ``POST {base_url}/embeddings`` endpoint.

Works with OpenAI itself and with the many servers that speak the same API (vLLM, Ollama,
LiteLLM, text-embeddings-inference...). Texts are sent in batches; a 429 or 5xx answer (or a
connection error) is retried with exponential backoff and jitter, honouring ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from typing import Any

import httpx
import numpy as np

#: Dimensions of well-known models, so the store can check them before the first call.
KNOWN_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


class EmbeddingAPIError(RuntimeError):
    """The endpoint refused the request for good (4xx other than 429) or kept failing."""


class OpenAIEmbedder:
    #: A network call per batch, and a hosted model may change behind its name: vectors are stored.
    recomputable = False

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str = "text-embedding-3-small",
        dim: int | None = None,
        batch_size: int = 96,
        max_retries: int = 5,
        backoff: float = 0.5,
        timeout: float = 30.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip(
            "/"
        )
        self.model = model
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff = backoff
        # `dimensions` is only sent when asked for (text-embedding-3-* accept it; others may not).
        self._requested_dim = dim
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = client or httpx.Client(timeout=timeout, headers=headers)
        self.dim = dim or KNOWN_DIMS.get(model) or self._probe_dim()
        self.name = f"openai:{model}:{self.dim}"

    def _probe_dim(self) -> int:
        return int(self._request(["dimension probe"]).shape[1])

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [
            self._request(list(texts[i : i + self.batch_size])) for i in range(0, len(texts), self.batch_size)
        ]
        vectors = np.concatenate(parts)
        if vectors.shape[1] != self.dim:
            raise EmbeddingAPIError(
                f"{self.model} returned {vectors.shape[1]} dimensions, expected {self.dim}"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)

    def _request(self, batch: list[str]) -> np.ndarray:
        body: dict[str, Any] = {"model": self.model, "input": batch, "encoding_format": "float"}
        if self._requested_dim:
            body["dimensions"] = self._requested_dim
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = self._client.post(f"{self.base_url}/embeddings", json=body)
            except httpx.TransportError as exc:
                if last:
                    raise EmbeddingAPIError(f"embeddings endpoint unreachable: {exc}") from exc
                self._sleep(attempt, None)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                if last:
                    raise EmbeddingAPIError(f"embeddings endpoint kept answering {response.status_code}")
                self._sleep(attempt, response.headers.get("retry-after"))
                continue
            if response.status_code != 200:
                raise EmbeddingAPIError(
                    f"embeddings endpoint answered {response.status_code}: {response.text[:200]}"
                )
            return self._parse(response.json(), len(batch))
        raise AssertionError("unreachable")

    @staticmethod
    def _parse(payload: dict[str, Any], expected: int) -> np.ndarray:
        data = sorted(payload["data"], key=lambda item: item["index"])
        if len(data) != expected:
            raise EmbeddingAPIError(f"asked for {expected} embeddings, got {len(data)}")
        return np.asarray([item["embedding"] for item in data], dtype=np.float32)

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * 2**attempt * (0.5 + random.random() / 2)
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = max(delay, float(retry_after))
        time.sleep(min(delay, 30.0))

    def close(self) -> None:
        self._client.close()
