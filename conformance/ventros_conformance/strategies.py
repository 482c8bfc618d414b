"""Hypothesis strategies derived from the generated message types.

``any_message(cls)`` walks a betterproto2 dataclass (its FieldMetadata: proto type, repeated,
map, optional, nested message or enum class) and draws every field from a strategy for its
type: strings (empty, blank, unicode, huge), int32 (negatives, the contract's boundaries, the
extremes), floats (NaN, infinities, boundaries), enums (known and unknown values), maps and
repeated fields (sizes around the contract's caps). Field names the contract gives a meaning to
(``*_id``, ``memory_type``, ``limit``...) get values around their rules, so most examples probe
a boundary instead of being rejected for the first random field.

``request(rpc_name)`` mixes mostly-valid requests with one or two fields replaced by arbitrary
values: each example is judged by the validators in ``contract`` (the oracle).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import betterproto2
from hypothesis import strategies as st
from ventros import agents as pb_agents
from ventros import memory as pb_memory

from . import contract as c

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

#: Text without surrogates (not encodable) and without the whitespace Go and Python trim differently.
_alphabet = st.characters(blacklist_categories=["Cs"], blacklist_characters=c.TRIM_AMBIGUOUS)
_short_text = st.text(_alphabet, max_size=24)
_blank = st.sampled_from(["", " ", "\t", "\n \r\t", "\u00a0", "\u3000"])
#: Characters of 1, 2, 3 and 4 UTF-8 bytes, to cross byte limits with few characters.
_wide_chars = st.sampled_from(["a", "é", "€", "😀"])


def _around_bytes(limit: int) -> st.SearchStrategy[str]:
    """Strings just under, at or just over ``limit`` UTF-8 bytes, in 1- to 4-byte characters."""

    def build(ch: str, delta: int) -> str:
        width = len(ch.encode())
        return ch * max(1, -(-(limit + delta) // width))

    return st.builds(build, _wide_chars, st.sampled_from([-1, 0, 1]))


def text(limit: int | None = None) -> st.SearchStrategy[str]:
    options = [_short_text, _blank]
    if limit is not None:
        options.append(_around_bytes(limit))
    return st.one_of(*options)


def uuids_valid() -> st.SearchStrategy[str]:
    return st.builds(lambda u, upper: str(u).upper() if upper else str(u), st.uuids(), st.booleans())


def uuid_like() -> st.SearchStrategy[str]:
    """Valid UUIDs (any case) and near misses: no dashes, braces, trailing newline, short, blank."""
    base = st.uuids().map(str)
    return st.one_of(
        uuids_valid(),
        base.map(lambda u: u.replace("-", "")),
        base.map(lambda u: "{" + u + "}"),
        base.map(lambda u: u + "\n"),
        base.map(lambda u: " " + u),
        base.map(lambda u: u[:-1]),
        base.map(lambda u: u[:-1] + "g"),
        base.map(lambda u: "urn:uuid:" + u),
        st.just(""),
        _short_text,
    )


def snake_like(limit: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["fact", "preference", "agent_insight", "product", "v2_note", "x"]),
        st.sampled_from(["", "Fact", "has space", "kebab-case", "a__b", "_lead", "trail_", "2fa", "ünï"]),
        st.just("x" * limit),
        st.just("x" * (limit + 1)),
        st.from_regex(r"[a-z][a-z0-9]{0,6}(_[a-z0-9]{1,6}){0,2}", fullmatch=True),
        _short_text,
    )


def entity_id_like() -> st.SearchStrategy[str]:
    return st.one_of(
        st.uuids().map(str),
        st.sampled_from(["product:123", "sku.42-a", "T_1"]),
        st.sampled_from(["", "has space", "slash/bad", "ünï"]),
        st.just("e" * c.MAX_ENTITY_ID_BYTES),
        st.just("e" * (c.MAX_ENTITY_ID_BYTES + 1)),
        _short_text,
    )


def int32_around(*bounds: int) -> st.SearchStrategy[int]:
    points = {INT32_MIN, -1, 0, 1, INT32_MAX}
    for b in bounds:
        points.update({b - 1, b, b + 1})
    return st.one_of(st.sampled_from(sorted(points)), st.integers(INT32_MIN, INT32_MAX))


def float32_around(*bounds: float) -> st.SearchStrategy[float]:
    points = {0.0, -0.0, 1.0, -1.0, float("nan"), float("inf"), float("-inf")}
    for b in bounds:
        points.update({b, b - 0.25, b + 0.25})
    return st.one_of(st.sampled_from(sorted(points, key=repr)), st.floats(width=32))


def _sized_list(element: st.SearchStrategy[Any], cap: int | None) -> st.SearchStrategy[list[Any]]:
    small = st.lists(element, max_size=3)
    if cap is None:
        return small
    return st.one_of(
        small, st.integers(cap, cap + 1).flatmap(lambda n: st.lists(element, min_size=n, max_size=n))
    )


def _sized_map(
    keys: st.SearchStrategy[str], values: st.SearchStrategy[str], cap: int | None
) -> st.SearchStrategy[dict[str, str]]:
    small = st.dictionaries(keys, values, max_size=3)
    if cap is None:
        return small
    many = st.integers(cap, cap + 1).map(lambda n: {f"k{i}": "v" for i in range(n)})
    return st.one_of(small, many)


#: Field-name hints: value strategies that sit on the contract's rules.
_INT_BOUNDS = {
    "limit": (c.SEARCH_DEFAULT_LIMIT, c.SEARCH_MAX_LIMIT, c.RELATED_DEFAULT_LIMIT),
    "history_limit": (c.HISTORY_DEFAULT, c.HISTORY_MAX),
    "max_depth": (c.DEPTH_DEFAULT, c.DEPTH_MAX),
    "timeout_ms": (c.TIMEOUT_DEFAULT_MS, c.TIMEOUT_MAX_MS),
    "max_tokens": (c.MAX_TOKENS_DEFAULT, c.MAX_TOKENS_MAX),
}
_LIST_CAPS = {"memory_types": c.MAX_MEMORY_TYPES, "related": c.MAX_RELATED, "requests": c.BATCH_MAX}
_MAP_CAPS = {"metadata": c.MAX_METADATA_ENTRIES, "context": c.MAX_CONTEXT_ENTRIES}


def _string_for(name: str) -> st.SearchStrategy[str]:
    if name in ("contact_id", "channel_id", "session_id"):
        return uuid_like()
    if name == "entity_id":
        return entity_id_like()
    if name in ("memory_type", "entity_type", "relationship"):
        return snake_like(c.MAX_MEMORY_TYPE_BYTES)
    if name == "query":
        return text(c.MAX_QUERY_BYTES)
    if name in ("content", "message"):
        return text(c.MAX_CONTENT_BYTES)
    if name == "include_fields":
        return st.sampled_from([*c.INCLUDE_FIELDS, "Content", "bogus", ""])
    if name == "tools":
        return st.sampled_from([*c.KNOWN_TOOLS, "rm_rf", ""])
    if name in ("memory_types", "entity_types", "target_types"):
        return snake_like(c.MAX_MEMORY_TYPE_BYTES)
    return text(64)


def _scalar(proto_type: str, name: str, enum_cls: Any) -> st.SearchStrategy[Any]:
    if proto_type == betterproto2.TYPE_STRING:
        return _string_for(name)
    if proto_type == betterproto2.TYPE_INT32:
        return int32_around(*_INT_BOUNDS.get(name, ()))
    if proto_type == betterproto2.TYPE_FLOAT:
        return float32_around(0.0, 1.0, 2.0)
    if proto_type == betterproto2.TYPE_BOOL:
        return st.booleans()
    if proto_type == betterproto2.TYPE_ENUM:
        known = st.sampled_from(list(enum_cls))
        unknown = st.integers(len(list(enum_cls)), 1000)
        return st.one_of(known, unknown)
    raise NotImplementedError(f"no strategy for proto type {proto_type} ({name})")


def field_strategy(cls: Any, name: str, depth: int = 0) -> st.SearchStrategy[Any]:
    """Arbitrary values for one field of ``cls`` (derived from its FieldMetadata)."""
    meta = next(f.metadata["betterproto"] for f in dataclasses.fields(cls) if f.name == name)
    sub: Any = cls._betterproto.cls_by_field.get(name)
    if meta.proto_type == betterproto2.TYPE_MAP:
        key_meta, _value_meta = meta.map_meta
        keys = _scalar(key_meta.proto_type, f"{name}.key", None)
        if name in _MAP_CAPS:
            keys = st.one_of(_short_text, st.just(""), _around_bytes(c.MAX_METADATA_KEY_BYTES))
        values = st.one_of(_short_text, _around_bytes(c.MAX_METADATA_VALUE_BYTES))
        return _sized_map(keys, values, _MAP_CAPS.get(name))
    if meta.proto_type == betterproto2.TYPE_MESSAGE:
        element: st.SearchStrategy[Any] = any_message(sub, depth + 1) if depth < 2 else st.builds(sub)
        if meta.repeated:
            return _sized_list(element, _LIST_CAPS.get(name))
        return st.one_of(st.none(), element)
    element = _scalar(meta.proto_type, name, sub)
    if meta.repeated:
        return _sized_list(element, _LIST_CAPS.get(name))
    if meta.optional:
        return st.one_of(st.none(), element)
    return element


def message_fields(cls: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if "betterproto" in f.metadata]


def any_message(cls: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """A message of ``cls`` with every field drawn arbitrarily."""
    return st.builds(cls, **{name: field_strategy(cls, name, depth) for name in message_fields(cls)})


# -- valid requests (one per RPC), mutated below ------------------------------------------------

_valid_text = st.text(_alphabet, min_size=1, max_size=40).filter(lambda s: s.strip())
_snake = st.from_regex(r"[a-z][a-z0-9]{0,8}(_[a-z0-9]{1,6}){0,2}", fullmatch=True)
_include = st.lists(st.sampled_from(c.INCLUDE_FIELDS), max_size=4, unique=True)


def _valid_related_entity() -> st.SearchStrategy[pb_memory.RelatedEntity]:
    return st.builds(
        pb_memory.RelatedEntity,
        entity_type=_snake,
        entity_id=st.uuids().map(str),
        relationship=st.one_of(st.just(""), _snake),
        strength=st.floats(0.0, 1.0, width=32),
    )


def _valid_options() -> st.SearchStrategy[pb_agents.ExecutionOptions | None]:
    return st.one_of(
        st.none(),
        st.builds(
            pb_agents.ExecutionOptions,
            timeout_ms=st.sampled_from([0, 20000, c.TIMEOUT_MAX_MS]),
            stream_response=st.booleans(),
            tools=st.lists(st.sampled_from(c.KNOWN_TOOLS), max_size=3, unique=True),
            max_tokens=st.integers(0, c.MAX_TOKENS_MAX),
            temperature=st.one_of(st.none(), st.floats(0.0, 2.0, width=32)),
        ),
    )


def valid_request(name: str, agent_types: tuple[str, ...] = ()) -> st.SearchStrategy[Any]:
    """Requests the contract calls valid (agent_type: a listed type or an unknown one)."""
    uid = st.uuids().map(str)
    agent_type = st.sampled_from(["NoSuchAgentConformance", *agent_types])
    if name == "SearchMemories":
        return st.builds(
            pb_memory.SearchMemoriesRequest,
            contact_id=uid,
            query=_valid_text,
            limit=st.integers(0, c.SEARCH_MAX_LIMIT),
            memory_types=st.lists(_snake, max_size=3),
            mode=st.sampled_from(list(pb_memory.SearchMode)),
            include_fields=_include,
        )
    if name == "GetContactContext":
        return st.builds(
            pb_memory.GetContactContextRequest,
            contact_id=uid,
            include_graph=st.booleans(),
            history_limit=st.integers(0, c.HISTORY_MAX),
            entity_types=st.lists(_snake, max_size=3),
        )
    if name == "StoreMemory":
        return st.builds(
            pb_memory.StoreMemoryRequest,
            contact_id=uid,
            content=_valid_text,
            memory_type=_snake,
            metadata=st.dictionaries(_snake, _short_text, max_size=3),
            auto_embed=st.one_of(st.none(), st.booleans()),
            related=st.lists(_valid_related_entity(), max_size=2),
        )
    if name == "GetRelatedEntities":
        return st.builds(
            pb_memory.GetRelatedEntitiesRequest,
            entity_id=uid,
            entity_type=st.one_of(st.just(""), _snake),
            target_types=st.lists(_snake, max_size=2),
            max_depth=st.integers(0, c.DEPTH_MAX),
            limit=st.integers(0, c.RELATED_MAX_LIMIT),
        )
    if name == "GetAgentCapabilities":
        return st.builds(pb_agents.GetAgentCapabilitiesRequest, agent_type=agent_type)
    if name in ("ExecuteAgent", "StreamAgentExecution"):
        cls = pb_agents.ExecuteAgentRequest if name == "ExecuteAgent" else pb_agents.StreamAgentRequest
        return st.builds(
            cls,
            agent_type=agent_type,
            contact_id=uid,
            message=_valid_text,
            channel_id=uid,
            session_id=st.one_of(st.just(""), uid),
            context=st.dictionaries(_snake, _short_text, max_size=3),
            options=_valid_options(),
        )
    if name == "ExecuteAgentBatch":
        item = valid_request("ExecuteAgent", ())  # unknown agent type: cheap, and reported per item
        return st.builds(pb_agents.ExecuteAgentBatchRequest, requests=st.lists(item, min_size=1, max_size=3))
    raise KeyError(name)


@st.composite
def request(draw: st.DrawFn, name: str, agent_types: tuple[str, ...] = ()) -> Any:
    """A valid request with 0, 1 or 2 fields replaced by arbitrary values of their type."""
    message = draw(valid_request(name, agent_types))
    cls = type(message)
    fields = message_fields(cls)
    if name == "ExecuteAgentBatch":
        mutate = draw(st.lists(st.sampled_from(fields), max_size=1))
    else:
        mutate = draw(st.lists(st.sampled_from(fields), max_size=2, unique=True))
    for field_name in mutate:
        if name == "ExecuteAgentBatch":
            value = draw(
                st.one_of(st.just([]), st.integers(c.BATCH_MAX, c.BATCH_MAX + 1).map(
                    lambda n: [pb_agents.ExecuteAgentRequest(agent_type="NoSuchAgentConformance")] * n
                ))
            )  # fmt: skip
        else:
            value = draw(field_strategy(cls, field_name))
        setattr(message, field_name, value)
    return message


def fresh_contact() -> str:
    """A contact id no one has used (not drawn by Hypothesis, so it differs on every run)."""
    return str(uuid.uuid4())
