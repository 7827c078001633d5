"""Property-based: arbitrary topics and bytes never raise anything but ProtocolError."""

from __future__ import annotations

import contextlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microbrain.protocol import GatewayPath, ProtocolError, Reading, decode, parse_topic

GW = GatewayPath("c1", "k1", "gw1")
segment = st.one_of(
    st.sampled_from(
        [
            "mb",
            "v1",
            "c1",
            "k1",
            "gw1",
            "event",
            "reading",
            "status",
            "cmd",
            "reply",
            "ack",
            "",
            "+",
            "#",
        ]
    ),
    st.text(max_size=12),
)
topics = st.one_of(st.text(max_size=80), st.lists(segment, max_size=9).map("/".join))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=topics, raw=st.binary(max_size=300))
def test_decode_arbitrary_input_only_raises_protocol_error(topic: str, raw: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(topic, raw)


@settings(max_examples=300, deadline=None)
@given(
    channel=st.sampled_from(["event", "reading", "status", "cmd/ack", "cmd/announce", "reply/x"]),
    body=json_values,
)
def test_decode_arbitrary_json_only_raises_protocol_error(channel: str, body: object) -> None:
    raw = json.dumps(body, allow_nan=True).encode()
    with contextlib.suppress(ProtocolError):
        decode(f"{GW.prefix}/{channel}", raw)


@settings(max_examples=200, deadline=None)
@given(
    values=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
        st.floats(allow_nan=False, allow_infinity=False, width=64),
        max_size=8,
    )
)
def test_reading_values_round_trip(values: dict[str, float]) -> None:
    reading = Reading(seq=1, sensor="s1", kind="k", values=values)
    assert decode(GW.topic("reading"), reading.to_json()).payload == reading


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=100))
def test_parse_topic_only_raises_protocol_error(text: str) -> None:
    try:
        topic = parse_topic(text)
    except ProtocolError:
        return
    assert topic.text == text
