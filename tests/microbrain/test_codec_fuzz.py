"""Property-based, per channel: a valid payload with hostile values put into its fields
(integers past 64 bits, times at the calendar's edges, wrong types) decodes or raises a
ProtocolError naming a field, and what decodes fits what the databases store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from microbrain.protocol import Event, GatewayPath, ProtocolError, Reading, decode

GW = GatewayPath("c1", "k1", "gw1")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # fixed: the test never reads the clock
# what both stores hold (PostgreSQL bigint / SQLite INTEGER; timestamptz and Python's
# datetime), written out here so that the test does not trust the code it checks
INT64 = (-(2**63), 2**63 - 1)
SAMPLES_MAX = 2**31 - 1  # readings.samples is an INTEGER column
CALENDAR = (datetime(2000, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))
T = "2026-11-30T08:00:00+08:00"

BASES: dict[str, dict[str, Any]] = {
    "event": {
        "type": "event",
        "seq": 1,
        "ts": T,
        "kind": "illegal_parking",
        "source": "cam-1",
        "zone": "z1",
        "track_id": 3,
        "frame_ts": T,
        "confidence": 0.5,
        "dwell_s": 3.0,
        "detail": {"n": 1, "note": "x"},
        "evidence": [{"kind": "snapshot", "name": "a.jpg", "sha256": "0" * 64, "bytes": 10}],
    },
    "reading": {
        "type": "reading",
        "seq": 1,
        "ts": T,
        "sensor": "h1",
        "kind": "hydrant_pressure",
        "values": {"p": 0.3, "n": 2, "ok": True},
        "samples": 1,
    },
    "status": {
        "type": "status",
        "ts": T,
        "state": "online",
        "uptime_s": 5.0,
        "health": {
            "cpu_percent": 1.0,
            "memory_mb": 1.0,
            "disk_free_mb": 1.0,
            "outbox_depth": 0,
            "outbox_oldest_age_s": 0.0,
            "outbox_evicted": 0,
            "rejected": 0,
        },
    },
    "cmd/ack": {
        "type": "command",
        "name": "ack",
        "ts": T,
        "expires": T,
        "ranges": [[1, 2], [4, 9]],
    },
    "cmd/announce": {"type": "command", "name": "announce", "ts": T, "text": "hi", "repeat": 1},
    "cmd/recheck": {"type": "command", "name": "recheck", "ts": T, "source": "cam-1"},
    "reply/recheck": {
        "type": "reply",
        "name": "recheck",
        "ts": T,
        "ok": True,
        "detail": {"present": True, "count": 1},
    },
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every leaf of a payload, and a new key in each of its dicts."""
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        out.append((*prefix, "extra_key"))
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += _paths(child, (*prefix, index))
    else:
        out.append(prefix)
    return out


def _put(body: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        body = body[part]
    body[path[-1]] = value


offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda m: timezone(timedelta(minutes=m))
)
times = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00+08:00",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "1970-01-01T00:00:00Z",
            "1999-12-31T23:59:59.999999Z",
            "2000-01-01T00:00:00Z",
            "9998-12-31T23:59:59+00:00",
            "2026-11-30T00:00:00",
        ]
    ),
    st.datetimes(  # hypothesis takes naive bounds and adds the zone from `timezones`
        min_value=datetime(1, 1, 1),  # noqa: DTZ001
        max_value=datetime(9999, 12, 31, 23, 59, 59),  # noqa: DTZ001
        timezones=offsets,
    ).map(datetime.isoformat),
)
integers = st.one_of(
    st.sampled_from(
        [2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1, 2**31 - 1, 2**31, 10**30, -1, 0]
    ),
    st.integers(),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.text(max_size=8) | integers,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
hostile = st.one_of(integers, times, json_values)


def _fits_the_stores(value: Any, where: str) -> None:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _fits_the_stores(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, dict):
        for key, child in value.items():
            _fits_the_stores(child, f"{where}.{key}")
    elif isinstance(value, tuple | list):
        for index, child in enumerate(value):
            _fits_the_stores(child, f"{where}.{index}")
    elif isinstance(value, datetime):
        assert value.utcoffset() == timedelta(0), where
        assert CALENDAR[0] <= value < CALENDAR[1], (where, value)
        value + timedelta(days=365)  # deadlines and windows added to it do not overflow
    elif isinstance(value, int) and not isinstance(value, bool):
        assert INT64[0] <= value <= INT64[1], (where, value)


@pytest.mark.parametrize("channel", sorted(BASES))
def test_the_unmutated_base_payloads_decode(channel: str) -> None:
    decode(f"{GW.prefix}/{channel}", json.dumps(BASES[channel]), now=NOW)


@pytest.mark.parametrize("channel", sorted(BASES))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_field_values_decode_to_storable_payloads_or_protocol_error(
    channel: str, data: st.DataObject
) -> None:
    body = json.loads(json.dumps(BASES[channel]))
    paths = _paths(body)
    for path in data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3, unique=True)):
        _put(body, path, data.draw(hostile))
    raw = json.dumps(body, allow_nan=True)
    try:
        message = decode(f"{GW.prefix}/{channel}", raw, now=NOW)
    except ProtocolError as err:
        assert err.field, f"no field named in {err}"
        return
    _fits_the_stores(message.payload, channel)
    if channel == "reading":
        assert isinstance(message.payload, Reading)
        assert message.payload.samples <= SAMPLES_MAX
    # what the cloud keeps and sends on is accepted again, unchanged
    assert (
        decode(f"{GW.prefix}/{channel}", message.payload.to_json(), now=NOW).payload
        == message.payload
    )


@pytest.mark.parametrize(
    ("channel", "path", "value", "field"),
    [
        ("event", ("seq",), 2**63, "seq"),
        ("reading", ("seq",), 2**64, "seq"),
        ("event", ("track_id",), 2**63, "track_id"),
        ("reading", ("samples",), 2**31, "samples"),
        ("reading", ("values", "p"), 2**63, "values"),
        ("reading", ("values", "p"), -(2**63) - 1, "values"),
        ("event", ("detail", "n"), 10**30, "detail"),
        ("reply/recheck", ("detail", "count"), 2**63, "detail"),
        ("status", ("health", "outbox_depth"), 2**63, "health.outbox_depth"),
        ("cmd/ack", ("ranges", 0, 1), 2**63, "ack.ranges.0.1"),
        ("event", ("ts",), "0001-01-01T00:00:00+08:00", "ts"),
        ("reading", ("ts",), "1970-01-01T00:00:00Z", "ts"),
        ("event", ("frame_ts",), "9999-12-31T23:59:59-14:00", "frame_ts"),
        ("cmd/ack", ("expires",), "9999-12-31T23:59:59-14:00", "ack.expires"),
    ],
)
def test_out_of_range_numbers_and_times_name_their_field(
    channel: str, path: tuple[Any, ...], value: Any, field: str
) -> None:
    body = json.loads(json.dumps(BASES[channel]))
    _put(body, path, value)
    with pytest.raises(ProtocolError) as caught:
        decode(f"{GW.prefix}/{channel}", json.dumps(body), now=NOW)
    assert caught.value.field == field, str(caught.value)


def test_the_edges_of_the_calendar_inside_are_accepted() -> None:
    body = dict(
        BASES["event"],
        ts="2000-01-01T08:00:00+08:00",
        frame_ts="9998-12-31T23:59:59Z",
        seq=2**63 - 1,
        track_id=2**63 - 1,
        detail={"n": -(2**63)},
    )
    payload = decode(GW.topic("event"), json.dumps(body), now=NOW).payload
    assert isinstance(payload, Event)
    assert payload.ts == datetime(2000, 1, 1, tzinfo=UTC) and payload.seq == 2**63 - 1
