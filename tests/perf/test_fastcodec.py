"""ventros._fastcodec gives exactly betterproto2's bytes (and upb's), and equal messages back."""

from __future__ import annotations

import datetime
import math
import struct

import betterproto2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ventros import _fastcodec as fc
from ventros._generated.ventros import agents as pb_agents
from ventros._generated.ventros import common as pb_common
from ventros._generated.ventros import memory as pb_memory

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(max_size=20)
# Scalars: float32 values; -0.0 excluded because betterproto2 (like proto3 "zero is default")
# skips it while upb writes it: a difference between the two runtimes, not of ours.
f32 = st.floats(width=32, allow_nan=False).filter(lambda x: not (x == 0 and math.copysign(1, x) < 0))
# Embeddings: anything a float32 can hold, NaN and infinities and -0.0 included.
embedding_value = st.floats(width=32, allow_nan=True, allow_infinity=True)
str_map = st.dictionaries(text, text, max_size=3)
# Protobuf leaves the order of map entries unspecified (upb's "deterministic" order is its own),
# so messages compared with upb's bytes carry at most one entry per map.
one_entry_map = st.dictionaries(text, text, max_size=1)
timestamps = st.datetimes(
    min_value=datetime.datetime(1900, 1, 1), max_value=datetime.datetime(2200, 1, 1)
).map(lambda d: d.replace(tzinfo=datetime.UTC))

related = st.builds(
    pb_memory.RelatedEntity, entity_type=text, entity_id=text, relationship=text, strength=f32
)


def memories_with(maps):
    return st.builds(
        pb_memory.Memory,
        id=text,
        content=text,
        memory_type=text,
        relevance_score=f32,
        created_at=st.none() | timestamps,
        embedding=st.lists(embedding_value, max_size=40)
        | st.lists(embedding_value, min_size=1536, max_size=1536),
        metadata=maps,
        related=st.lists(related, max_size=3),
    )


int32 = st.integers(-(2**31), 2**31 - 1)


def responses_with(maps):
    return st.builds(
        pb_memory.SearchMemoriesResponse,
        memories=st.lists(memories_with(maps), max_size=4),
        search_latency_ms=f32,
        total_count=int32,
        metadata=st.none()
        | st.builds(
            pb_memory.SearchMetadata,
            vector_matches=int32,
            keyword_matches=int32,
            graph_matches=int32,
            vector_weight=f32,
            keyword_weight=f32,
            graph_weight=f32,
        ),
    )


responses = responses_with(str_map)
execute_requests = st.builds(
    pb_agents.ExecuteAgentRequest,
    agent_type=text,
    contact_id=text,
    message=text,
    context=one_entry_map,
    options=st.none()
    | st.builds(
        pb_agents.ExecutionOptions,
        timeout_ms=int32,
        stream_response=st.booleans(),
        tools=st.lists(text, max_size=3),
        max_tokens=int32,
        temperature=st.none() | f32 | st.just(0.0),
    ),
)
agent_infos = st.builds(
    pb_agents.AgentInfo,
    type=text,
    name=text,
    capabilities=st.lists(text, max_size=3),
    avg_latency_ms=int32,
    category=st.sampled_from(list(pb_agents.AgentCategory)),
)


def _upb_memory(upb, m: pb_memory.Memory):
    out = upb["memory"].Memory(
        id=m.id,
        content=m.content,
        memory_type=m.memory_type,
        relevance_score=m.relevance_score,
        embedding=m.embedding,
        metadata=m.metadata,
    )
    if m.created_at is not None:
        out.created_at.FromDatetime(m.created_at)
    for r in m.related:
        out.related.add(
            entity_type=r.entity_type, entity_id=r.entity_id, relationship=r.relationship, strength=r.strength
        )
    return out


def _upb_response(upb, r: pb_memory.SearchMemoriesResponse):
    out = upb["memory"].SearchMemoriesResponse(
        search_latency_ms=r.search_latency_ms, total_count=r.total_count
    )
    for m in r.memories:
        out.memories.append(_upb_memory(upb, m))
    if r.metadata is not None:
        out.metadata.SetInParent()
        md = r.metadata
        for name in ("vector_matches", "keyword_matches", "graph_matches"):
            setattr(out.metadata, name, getattr(md, name))
        for name in ("vector_weight", "keyword_weight", "graph_weight"):
            setattr(out.metadata, name, getattr(md, name))
    return out


def _same_message(a: betterproto2.Message, b: betterproto2.Message) -> None:
    """Equal, treating NaN embedding values as equal when their bits are."""
    assert type(a) is type(b)
    assert bytes(a) == bytes(b)
    assert a._unknown_fields == b._unknown_fields
    if "nan" not in repr(a):
        assert a == b


@SETTINGS
@given(responses_with(one_entry_map))
def test_search_response_bytes_match_betterproto2_and_upb(upb, response):
    data = fc.encode(response)
    assert data == bytes(response)
    assert data == _upb_response(upb, response).SerializeToString(deterministic=True)


@SETTINGS
@given(responses)
def test_search_response_encodes_like_betterproto2(response):
    assert fc.encode(response) == bytes(response)


@SETTINGS
@given(responses)
def test_search_response_decodes_like_betterproto2(response):
    data = bytes(response)
    decoded = fc.decode(pb_memory.SearchMemoriesResponse, data)
    _same_message(decoded, pb_memory.SearchMemoriesResponse.parse(data))
    assert fc.encode(decoded) == data  # float32 values survive the round trip bit for bit


@SETTINGS
@given(st.lists(embedding_value, max_size=2000))
def test_embedding_bits_survive(values):
    data = fc.encode(pb_memory.Memory(embedding=values))
    decoded = fc.decode(pb_memory.Memory, data).embedding
    assert [struct.pack("<f", v) for v in decoded] == [struct.pack("<f", v) for v in values]


@SETTINGS
@given(execute_requests)
def test_agent_request_matches_betterproto2_and_upb(upb, request):
    data = fc.encode(request)
    assert data == bytes(request)
    assert data == upb["agents"].ExecuteAgentRequest.FromString(data).SerializeToString(deterministic=True)
    _same_message(fc.decode(pb_agents.ExecuteAgentRequest, data), pb_agents.ExecuteAgentRequest.parse(data))


@SETTINGS
@given(st.lists(agent_infos, max_size=6))
def test_agent_catalogue_matches_betterproto2(agents):
    response = pb_agents.ListAgentsResponse(agents=agents, total_count=len(agents))
    data = fc.encode(response)
    assert data == bytes(response)
    _same_message(fc.decode(pb_agents.ListAgentsResponse, data), pb_agents.ListAgentsResponse.parse(data))


def test_cached_strings_encode_like_betterproto2_every_time():
    # Short strings come from a per-field cache after the first encode; long ones never do.
    info = pb_agents.AgentInfo(type="SalesAgent", name="x" * 200, capabilities=["a", "é", "a"])
    first, second = fc.encode(info), fc.encode(info)
    assert first == second == bytes(info)
    other = pb_agents.AgentInfo(type="SalesAgent", name="y", capabilities=["é"])
    assert fc.encode(other) == bytes(other)


def test_string_cache_stays_bounded():
    for i in range(3 * fc._STRING_CACHE_ENTRIES):
        info = pb_agents.AgentInfo(type=f"t{i}")
        assert fc.encode(info) == bytes(info)
    encoder = fc._string_encoder(b"\x0a")
    for i in range(3 * fc._STRING_CACHE_ENTRIES):
        encoder(f"s{i}")
    cache = next(c.cell_contents for c in encoder.__closure__ if isinstance(c.cell_contents, dict))
    assert 0 < len(cache) <= fc._STRING_CACHE_ENTRIES


def test_str_subclass_is_encoded_by_value_not_looked_up():
    class Loud(str):
        # Claims to be "cached": a cache lookup would return the field of "cached".
        def __eq__(self, other):
            return other == "cached" or str.__eq__(self, other)

        def __hash__(self):
            return hash("cached")

    fc.encode(pb_agents.AgentInfo(type="cached"))
    info = pb_agents.AgentInfo(type=Loud("other"))
    assert fc.encode(info) == bytes(pb_agents.AgentInfo(type="other"))


@SETTINGS
@given(st.binary(max_size=30))
def test_unknown_fields_are_kept(tail):
    # Field 99 (unknown to Memory), length-delimited, carrying arbitrary bytes.
    unknown = bytes([0x9A, 0x06, len(tail)]) + tail
    data = bytes(pb_memory.Memory(id="m1", embedding=[1.5])) + unknown
    decoded = fc.decode(pb_memory.Memory, data)
    expected = pb_memory.Memory.parse(data)
    assert decoded == expected
    assert decoded._unknown_fields == expected._unknown_fields == unknown
    assert fc.encode(decoded) == bytes(expected) == data


def test_every_generated_message_round_trips_its_default():
    for module in (pb_agents, pb_memory, pb_common):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, betterproto2.Message):
                message = value()
                assert fc.encode(message) == bytes(message) == b""
                assert fc.decode(value, b"") == value.parse(b"")


def test_negative_int32_and_enum_match():
    info = pb_agents.AgentInfo(avg_latency_ms=-5, category=pb_agents.AgentCategory.ANALYTICS)
    data = fc.encode(info)
    assert data == bytes(info)
    assert fc.decode(pb_agents.AgentInfo, data) == info
    assert isinstance(fc.decode(pb_agents.AgentInfo, data).category, pb_agents.AgentCategory)


def test_unpacked_repeated_floats_are_accepted():
    # A peer may send repeated float unpacked (one fixed32 per element): read like betterproto2.
    data = b"".join(b"\x35" + struct.pack("<f", v) for v in (1.0, 2.5))
    assert fc.decode(pb_memory.Memory, data).embedding == [1.0, 2.5] == pb_memory.Memory.parse(data).embedding


def test_too_large_float_raises_like_betterproto2():
    message = pb_memory.Memory(embedding=[1e39])
    with pytest.raises(OverflowError):
        bytes(message)
    with pytest.raises(OverflowError):
        fc.encode(message)
    assert fc.encode(pb_memory.Memory(embedding=[math.inf])) == bytes(pb_memory.Memory(embedding=[math.inf]))


def test_non_numbers_in_embedding_raise_like_betterproto2():
    message = pb_memory.Memory(embedding=["1.5"])  # type: ignore[list-item]
    with pytest.raises(struct.error):
        bytes(message)
    with pytest.raises(struct.error):
        fc.encode(message)


@pytest.mark.parametrize("cut", [1, 3, 7, 20])
def test_truncated_input_raises(cut):
    data = bytes(pb_memory.Memory(id="0123456789abcdef", embedding=[1.0] * 8))
    with pytest.raises(ValueError):
        fc.decode(pb_memory.Memory, data[:-cut])


def test_ventros_codec_uses_the_fast_path_and_maps_malformed_bytes():
    from grpclib.const import Status
    from grpclib.exceptions import GRPCError
    from ventros import _wire

    codec = _wire.VentrosCodec()
    response = pb_memory.SearchMemoriesResponse(memories=[pb_memory.Memory(id="m", embedding=[0.5] * 16)])
    data = codec.encode(response, pb_memory.SearchMemoriesResponse)
    assert data == bytes(response)
    assert codec.decode(data, pb_memory.SearchMemoriesResponse) == response
    with pytest.raises(GRPCError) as info:
        codec.decode(data[:-3], pb_memory.SearchMemoriesResponse)
    assert info.value.status is Status.INVALID_ARGUMENT
