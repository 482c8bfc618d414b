"""Synthetic CRM memories at any scale, for the memory benchmarks (deterministic per seed).

Sentences come from the demo data's templates (Portuguese and English), filled with one of
~2,000 generated product names, dates and a few random descriptive words, so the vocabulary and
the document frequencies look like a real CRM's rather than like random tokens.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ventros_server import demo_data as demo

SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ra",
    "to",
    "ve",
    "su",
    "pa",
    "ne",
    "di",
    "bo",
    "ru",
    "sa",
    "te",
    "fi",
    "go",
    "la",
    "mo",
    "ni",
    "xe",
]
EXTRA = [
    "quickly",
    "again",
    "yesterday",
    "online",
    "store",
    "app",
    "premium",
    "basic",
    "gift",
    "urgent",
    "weekend",
    "night",
    "rapidamente",
    "ontem",
    "loja",
    "aplicativo",
    "presente",
    "urgente",
    "semana",
    "noite",
    "cliente",
    "pedido",
]
TEMPLATES = [
    demo.PURCHASE, demo.DELAY, demo.DAMAGED, demo.RESOLVED, demo.COUPON, demo.CAMPAIGN,
    *demo.PREFERENCES, *demo.FACTS, *demo.INSIGHTS,
]  # fmt: skip
START = datetime(2024, 1, 1, tzinfo=UTC)


def product_names(rng: random.Random, count: int = 2000) -> list[str]:
    return [
        "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize() + f" {rng.randint(1, 99)}"
        for _ in range(count)
    ]


def contact_ids(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def sentences(count: int, seed: int = 1) -> Iterator[tuple[str, str]]:
    """(memory_type, content) pairs."""
    rng = random.Random(seed)
    products = product_names(rng)
    campaigns = [name for _, name in demo.CAMPAIGNS]
    for _ in range(count):
        memory_type, english, portuguese = rng.choice(TEMPLATES)
        template = english if rng.random() < 0.5 else portuguese
        when = (START + timedelta(days=rng.randint(0, 300))).date().isoformat()
        text = template.format(product=rng.choice(products), date=when, campaign=rng.choice(campaigns))
        extra = " ".join(rng.sample(EXTRA, k=rng.randint(0, 3)))
        yield memory_type, f"{text} {extra}".strip()


def owner(i: int, count: int, contacts: list[str], hot: int) -> str:
    """The contact of the i-th of ``count`` memories: with ``hot`` > 0, ``contacts[0]`` (the hot
    contact) gets ``hot`` of them, spread evenly through the file; the rest go round-robin to
    the other contacts."""
    if hot <= 0 or len(contacts) < 2:
        return contacts[i % len(contacts)]
    step = max(count // hot, 1)
    if i % step == 0 and i // step < hot:
        return contacts[0]
    return contacts[1 + i % (len(contacts) - 1)]


def memory_records(
    count: int, contacts: list[str], seed: int = 1, *, hot: int = 0
) -> Iterator[dict[str, object]]:
    """Importer records: memories spread evenly over ``contacts`` (``hot``: see owner())."""
    rng = random.Random(seed + 1)
    for i, (memory_type, content) in enumerate(sentences(count, seed)):
        yield {
            "kind": "memory",
            "contact_id": owner(i, count, contacts, hot),
            "content": content,
            "memory_type": memory_type,
            "created_at": (START + timedelta(minutes=i)).isoformat(),
            "related": [
                {"entity_type": "product", "entity_id": f"prod-{rng.randint(0, 1999)}", "strength": 1.0}
            ]
            if rng.random() < 0.3
            else [],
        }


def jsonl_lines(count: int, contacts: list[str], seed: int = 1, *, hot: int = 0) -> Iterator[str]:
    for record in memory_records(count, contacts, seed, hot=hot):
        yield json.dumps(record, ensure_ascii=False)


def write_jsonl(path: str | Path, count: int, contacts: list[str], *, hot: int = 0) -> None:
    """jsonl_lines(count, contacts, hot=hot) into a JSONL file: what the importer reads."""
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(line + "\n" for line in jsonl_lines(count, contacts, hot=hot))
