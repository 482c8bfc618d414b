"""Encode/decode cost of a SearchMemoriesResponse with 10 memories of 1536-dim embeddings.

    python -m benchmarks.codec          # about 20 seconds

Compared, on the same message (63 KB on the wire; betterproto2 and _fastcodec byte-identical,
upb equal up to the order of map entries):

* betterproto2 0.10 (``bytes(msg)`` / ``Cls.parse``), what VentrosCodec used before;
* ventros._fastcodec (``encode`` / ``decode``), byte-identical to betterproto2;
* the upb protobuf runtime (grpcio-tools-generated message), two ways:
  - "serialize only" / "parse only": a prebuilt upb message to bytes, bytes to a upb message
    whose fields are read lazily, i.e. the C-level cost;
  - "from/to Python values": build the upb message from the same Python lists and strings,
    then serialize; parse, then read every embedding into a Python list. This is the work a
    Python handler actually asks of it, and the like-for-like comparison for betterproto2,
    whose messages hold Python lists.

Every figure is the best of 5 timed rounds (each at least ~0.2 s), in microseconds per message.
"""

from __future__ import annotations

import datetime
import random
import sys
import tempfile
import timeit
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import _peers  # noqa: E402

DIMS = 1536
MEMORIES = 10


def betterproto_response(embedding_type: Callable[[list[float]], Any] = list) -> Any:
    from ventros.memory import Memory, RelatedEntity, SearchMemoriesResponse, SearchMetadata

    rnd = random.Random(42)
    memories = []
    for i in range(MEMORIES):
        # float32-representable values, as an embedder returns them.
        values = array("f", [rnd.uniform(-1, 1) for _ in range(DIMS)]).tolist()
        memories.append(
            Memory(
                id=f"00000000-0000-4000-8000-{i:012d}",
                content=f"Customer said the order #{1000 + i} arrived late and asked for a refund.",
                memory_type="interaction",
                relevance_score=0.9 - i / 100,
                created_at=datetime.datetime(2025, 1, 1, 12, i, tzinfo=datetime.UTC),
                embedding=embedding_type(values),
                metadata={"channel": "whatsapp", "source": "crm"},
                related=[
                    RelatedEntity(
                        entity_type="product", entity_id=f"sku-{i}", relationship="mentioned", strength=0.8
                    )
                ],
            )
        )
    return SearchMemoriesResponse(
        memories=memories,
        search_latency_ms=3.5,
        total_count=42,
        metadata=SearchMetadata(vector_matches=42, vector_weight=1.0),
    )


def upb_response(pm: Any, source: Any) -> Any:
    out = pm.SearchMemoriesResponse(
        search_latency_ms=source.search_latency_ms, total_count=source.total_count
    )
    for m in source.memories:
        memory = out.memories.add(
            id=m.id,
            content=m.content,
            memory_type=m.memory_type,
            relevance_score=m.relevance_score,
            embedding=m.embedding,
            metadata=m.metadata,
        )
        memory.created_at.FromDatetime(m.created_at)
        for r in m.related:
            memory.related.add(
                entity_type=r.entity_type,
                entity_id=r.entity_id,
                relationship=r.relationship,
                strength=r.strength,
            )
    out.metadata.vector_matches = source.metadata.vector_matches
    out.metadata.vector_weight = source.metadata.vector_weight
    return out


def best_us(fn: Callable[[], Any]) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(number, 1)
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def main() -> None:
    from ventros import _fastcodec
    from ventros.memory import SearchMemoriesResponse

    with tempfile.TemporaryDirectory(prefix="ventros-codec-") as tmp:
        pm = _peers.grpcio_modules(Path(tmp))["memory"]
    response = betterproto_response()
    data = bytes(response)
    upb = upb_response(pm, response)
    assert _fastcodec.encode(response) == data, "fastcodec and betterproto2 disagree"
    # Same content (map entries may come in another order: protobuf leaves it open).
    assert pm.SearchMemoriesResponse.FromString(data) == upb
    assert len(upb.SerializeToString()) == len(data)
    assert _fastcodec.decode(SearchMemoriesResponse, data) == SearchMemoriesResponse.parse(data)
    with_arrays = betterproto_response(lambda values: array("f", values))
    assert _fastcodec.encode(with_arrays) == data

    def upb_to_python() -> list[list[float]]:
        parsed = pm.SearchMemoriesResponse.FromString(data)
        return [list(m.embedding) for m in parsed.memories]

    rows = [
        ("encode", "betterproto2 bytes(msg)", best_us(lambda: bytes(response))),
        ("encode", "ventros._fastcodec.encode", best_us(lambda: _fastcodec.encode(response))),
        ("encode", "  ... embeddings held as array('f')", best_us(lambda: _fastcodec.encode(with_arrays))),
        (
            "encode",
            "upb: build from Python values + serialize",
            best_us(lambda: upb_response(pm, response).SerializeToString()),
        ),
        ("encode", "upb: serialize only (prebuilt message)", best_us(upb.SerializeToString)),
        ("decode", "betterproto2 Cls.parse", best_us(lambda: SearchMemoriesResponse.parse(data))),
        (
            "decode",
            "ventros._fastcodec.decode",
            best_us(lambda: _fastcodec.decode(SearchMemoriesResponse, data)),
        ),
        ("decode", "upb: parse + embeddings to Python lists", best_us(upb_to_python)),
        (
            "decode",
            "upb: parse only (lazy fields)",
            best_us(lambda: pm.SearchMemoriesResponse.FromString(data)),
        ),
    ]
    print(f"SearchMemoriesResponse: {MEMORIES} memories x {DIMS}-dim embeddings, {len(data):,} bytes\n")
    print("| op | implementation | us/message | vs upb (like for like) | vs upb (C only) |")
    print("|---|---|---:|---:|---:|")
    ref = {op: t for op, name, t in rows if name.startswith("upb: build") or name.startswith("upb: parse +")}
    c_only = {op: t for op, name, t in rows if "only" in name}
    for op, name, t in rows:
        print(f"| {op} | {name} | {t:,.0f} | {t / ref[op]:.2f}x | {t / c_only[op]:.0f}x |")


if __name__ == "__main__":
    main()
