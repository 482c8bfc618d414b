"""What the check modules share: the marker, call helpers and the seeded-contact fixture."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from .. import contract as c
from .._transport import Outcome, Target
from ..expect import expect_ok

Factory = Callable[[], Any]


def check(source: str, service: str) -> pytest.MarkDecorator:
    """Mark a check: the spec section / contract decision it enforces, and its service."""
    return pytest.mark.conformance(source=source, service=service)


def call(
    target: Target, name: str, request: Any = None, *, timeout: float | None = None, **fields: Any
) -> Outcome:
    rpc = c.RPCS[name]
    req = request if request is not None else rpc.request(**fields)
    if rpc.streaming:
        return target.stream(rpc.path, req, rpc.response, timeout=timeout)
    return target.unary(rpc.path, req, rpc.response, timeout=timeout)


def fresh_id() -> str:
    return str(uuid.uuid4())


def token() -> str:
    """A word no memory contains yet (letters and digits only, so every tokenizer keeps it)."""
    return "cfz" + uuid.uuid4().hex[:12]


def store(target: Target, contact_id: str, content: str, memory_type: str = "fact", **fields: Any) -> str:
    outcome = call(
        target, "StoreMemory", contact_id=contact_id, content=content, memory_type=memory_type, **fields
    )
    response = expect_ok(outcome, target.address, "from StoreMemory (setting up the check's data)")
    return str(response.memory_id)


SEED_SIZE = 55
SEED_TYPES = ("fact", "preference", "agent_insight")


@dataclass
class Seed:
    """One fresh contact with SEED_SIZE memories that all contain ``word`` (stored oldest first)."""

    contact_id: str
    word: str
    ids: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)

    def ids_of(self, memory_type: str) -> set[str]:
        return {i for i, t in zip(self.ids, self.types, strict=True) if t == memory_type}


@pytest.fixture(scope="session")
def seeded(target: Target) -> Seed:
    seed = Seed(contact_id=fresh_id(), word=token())
    topics = ("delivery", "invoice", "discount", "warranty", "catalogue")
    for i in range(SEED_SIZE):
        memory_type = SEED_TYPES[i % len(SEED_TYPES)]
        content = f"{seed.word} note {i} about the {topics[i % len(topics)]} of order {1000 + i}"
        seed.ids.append(store(target, seed.contact_id, content, memory_type, metadata={"n": str(i)}))
        seed.types.append(memory_type)
    return seed
