"""The search's own shortcuts give exactly what the general (batch) code gives.

* text.query_terms (one query hashed in Python ints) against term_hashes (the numpy batch
  hasher the keyword index is built with): a term that differed would never match.
* MemoryRows.fetch against the rows that were added, in the asked order, unknown seqs left out.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ventros_server.memory import text
from ventros_server.memory.memory_rows import MemoryRows

EDGE_QUERIES = [
    "",
    " ",
    "\x01",
    "a\x01b",
    "the and of",
    "Fone Bluetooth delivery damaged purchased",
    "Reclamação: NÃO recebi o pedido!",
    "STRASSE straße Æther Ĳssel",
    "ΟΔΟΣ σοφός ΣΟΦΟΣ",
    "snake_case __init__ a_b",
    "½ ² ① ٣ 中文 한국어",
    "emoji 😀 and \U0001d518nicode",
    "İstanbul",
    "x" * 600,
]

ALPHABET = list("abcxyz ABCXYZ 0189 _-.,!?'\t\nçãéíóúâêôüñßæøĳİΣ\u03c3ς中한½²\x01😀")
WORDS = ["the", "and", "a", "Bluetooth", "Reclamação", "entrega", "não", "order", "ÉCOLE", "straße"]


def random_queries(count: int) -> list[str]:
    rng = random.Random(7)
    out = []
    for i in range(count):
        if i % 2:
            out.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40))))
        else:
            out.append(" ".join(rng.choice([*WORDS, rng.choice(ALPHABET)]) for _ in range(rng.randint(0, 8))))
    return out


def _differs(query: str) -> bool:
    expected = np.unique(text.term_hashes([query]).hash)
    got = text.query_terms(query)
    return got.dtype != expected.dtype or got.tolist() != expected.tolist()


@pytest.mark.parametrize("query", EDGE_QUERIES)
def test_query_terms_are_the_index_terms(query: str) -> None:
    assert not _differs(query)


def test_query_terms_are_the_index_terms_for_random_queries() -> None:
    # One test over 2,000 seeded queries (not 2,000 test cases): the first mismatches are shown.
    mismatches = [q for q in random_queries(2000) if _differs(q)]
    assert mismatches[:5] == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_query_terms_are_the_index_terms_for_any_text(query: str) -> None:
    assert not _differs(query)


def test_query_terms_drop_stop_words() -> None:
    assert text.query_terms("the and of").tolist() == []
    assert len(text.query_terms("the bluetooth")) == 1


def test_memory_rows_fetch_in_asked_order_skipping_unknown() -> None:
    rows = MemoryRows()
    t0 = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    rows.add(
        np.array([3, 7, 9]),
        ["id-3", "id-7", "id-9"],
        ["c1", "c2", "c1"],
        ["três", "", "nine 😀"],
        ["note", "ticket", "note"],
        ['{"k": "v"}', "", "{}"],
        [int((t0 - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)) + i for i in range(3)],
    )
    got = rows.fetch([9, 1, 3, 8, 7, 100])
    assert got == [
        (9, "id-9", "c1", "nine 😀", "note", "{}", t0 + timedelta(microseconds=2)),
        (3, "id-3", "c1", "três", "note", '{"k": "v"}', t0),
        (7, "id-7", "c2", "", "ticket", None, t0 + timedelta(microseconds=1)),
    ]
    assert MemoryRows().fetch([1]) == []
