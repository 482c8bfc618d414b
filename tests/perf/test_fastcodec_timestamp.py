"""_fastcodec encodes a datetime (google.protobuf.Timestamp) field without building the
Timestamp message: the bytes must stay those of betterproto2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from ventros import _fastcodec
from ventros import memory as pb

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MOMENTS = [
    EPOCH,
    EPOCH + timedelta(microseconds=1),
    EPOCH - timedelta(microseconds=1),
    EPOCH + timedelta(seconds=1),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2024, 7, 22, 12, 0, tzinfo=UTC),
    datetime(2024, 7, 22, 9, 0, 0, 5, tzinfo=timezone(timedelta(hours=-3))),
    datetime(1969, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
]


@pytest.mark.parametrize("moment", MOMENTS)
def test_timestamp_field_bytes_match_betterproto2(moment: datetime) -> None:
    message = pb.Memory(id="m", created_at=moment)
    assert _fastcodec.encode(message) == bytes(message)
    assert _fastcodec.decode(pb.Memory, _fastcodec.encode(message)).created_at == moment


def test_naive_datetime_still_rejected_as_betterproto2_does() -> None:
    message = pb.Memory(id="m", created_at=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone aware"):
        bytes(message)
    with pytest.raises(ValueError, match="timezone aware"):
        _fastcodec.encode(message)
