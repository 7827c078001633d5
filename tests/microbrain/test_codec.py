"""Every payload model round-trips; every hostile case is refused with a named field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from microbrain.protocol import (
    MAX_ACK_RANGES,
    MAX_PAYLOAD_BYTES,
    Ack,
    Announce,
    ConfigReload,
    Event,
    EventState,
    EvidenceKind,
    EvidenceRef,
    GatewayPath,
    GatewayState,
    Health,
    Message,
    ModelInstall,
    ModelRef,
    ProtocolError,
    Reading,
    Recheck,
    Reply,
    Severity,
    Status,
    decode,
    encode,
    parse_topic,
)

GW = GatewayPath("xiyuan", "xiyuan-1", "gw-xiyuan-1")
# one fixed instant for every payload decoded against a "now": taken from the wall clock
# at import, it made a test run more than MAX_CLOCK_SKEW later fail (issue 9 item 14)
NOW = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
SHA = "a" * 64

SAMPLES = [
    (
        "event",
        None,
        Event(
            seq=7,
            kind="illegal_parking",
            building="b1",
            source="cam-fire-lane",
            zone="fire-lane",
            track_id=3,
            object_class="truck",
            confidence=0.51,
            dwell_s=21.5,
            frame_ts=datetime(2026, 11, 27, 8, tzinfo=UTC),
            model=ModelRef(name="ssd", version="2018.03"),
            evidence=(
                EvidenceRef(kind=EvidenceKind.SNAPSHOT, name="e1.jpg", sha256=SHA, bytes=1234),
            ),
            message="货车占用消防通道",
            detail={"zone_area": 0.2, "night": False},
        ),
    ),
    (
        "event",
        None,
        Event(
            seq=8,
            kind="illegal_parking",
            source="cam-1",
            state=EventState.CLEARED,
            severity=Severity.INFO,
        ),
    ),
    (
        "reading",
        None,
        Reading(
            seq=9,
            sensor="b1-hydrant-top",
            kind="hydrant_pressure",
            building="b1",
            values={"pressure_mpa": 0.31},
            units={"pressure_mpa": "MPa"},
        ),
    ),
    (
        "reading",
        None,
        Reading(
            seq=10,
            sensor="b1-elevator-a",
            kind="elevator",
            values={"running": True, "floor": 12},
            faults=("trapped_passenger",),
        ),
    ),
    (
        "status",
        None,
        Status(
            state=GatewayState.ONLINE,
            software="0.1.0",
            uptime_s=12.5,
            health=Health(
                cpu_percent=12,
                memory_mb=210,
                disk_free_mb=9000,
                cameras={"cam-1": "online"},
                outbox_depth=3,
            ),
        ),
    ),
    ("status", None, Status(state=GatewayState.OFFLINE)),
    ("cmd", "ack", Ack(ranges=((1, 10), (12, 12)))),
    ("cmd", "announce", Announce(text="请勿在楼道内停放电动车", repeat=2)),
    ("cmd", "recheck", Recheck(source="cam-1", zone="fire-lane")),
    ("cmd", "config_reload", ConfigReload()),
    (
        "cmd",
        "model",
        ModelInstall(
            manifest='{"name":"mb-ebike"}',
            signature="A" * 86 + "==",
            url="/api/models/3/file",
            rollout=7,
        ),
    ),
    ("reply", "recheck", Reply(name="recheck", ok=False, reason="camera offline")),
]


@pytest.mark.parametrize(("channel", "name", "payload"), SAMPLES)
def test_every_model_round_trips(channel: str, name: str | None, payload) -> None:
    topic = GW.topic(channel, name)
    message = decode(topic, payload.to_json())
    assert message.payload == payload
    assert encode(message) == (topic, payload.to_json())
    assert json.loads(payload.to_json())["schema"] == 1


def _reading(**override):
    data = json.loads(
        Reading(
            seq=1, sensor="s1", kind="hydrant_pressure", ts=NOW, values={"pressure_mpa": 0.3}
        ).to_json()
    )
    data.update(override)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"not json", "payload"),
        (b"", "payload"),
        (b"\xff\xfe", "payload"),
        (b"[]", "payload"),
        (b'{"schema": 1}', "sensor"),
        (_reading(seq=-1), "seq"),
        (_reading(seq="one"), "seq"),
        (_reading(values={"p": "NaN"}), "values.p"),
        (_reading().replace(b"0.3", b"NaN"), "values.pressure_mpa"),
        (_reading().replace(b"0.3", b"Infinity"), "values.pressure_mpa"),
        (_reading().replace(b"0.3", b"1e999"), "values.pressure_mpa"),
        (_reading(schema=2), "schema"),
        (_reading(id="not-an-id"), "id"),
        (_reading(ts="2026-01-01T00:00:00"), "ts"),
        (_reading(ts=(NOW + timedelta(hours=2)).isoformat()), "ts"),
        (_reading(sensor="Bad Sensor"), "sensor"),
        (_reading(unexpected=1), "unexpected"),
        (_reading(sensor="s1\x1b[31m"), "sensor"),
        (b"{" * 10_000 + b"}" * 10_000, "payload"),
        (b'{"x": "' + b"a" * (MAX_PAYLOAD_BYTES + 1) + b'"}', "payload"),
    ],
)
def test_hostile_payloads_are_refused_naming_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(ProtocolError) as err:
        decode(GW.topic("reading"), raw, now=NOW)
    assert err.value.field is not None
    assert err.value.field.startswith(field.split(".")[0]), str(err.value)
    assert "\n" not in str(err.value)


def test_command_name_must_match_topic() -> None:
    with pytest.raises(ProtocolError) as err:
        decode(GW.topic("cmd", "announce"), Ack(ranges=((1, 2),)).to_json())
    assert "does not match" in str(err.value)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Ack(ranges=((5, 1),)),
        lambda: Ack(ranges=()),
        Announce,
        lambda: Announce(text="x", clip="c"),
        lambda: Reading(seq=1, sensor="s", kind="k", values={"v": float("nan")}),
        lambda: Event(kind="k", source="s", confidence=1.5),
        lambda: Event(kind="k", source="s", ts=datetime(2026, 1, 1)),  # noqa: DTZ001 (naive: refused)
    ],
)
def test_models_refuse_invalid_construction(bad) -> None:
    with pytest.raises(ValueError):
        bad()


def test_largest_ack_fits_in_one_payload() -> None:
    # worst case: int64 seqs (19 digits; 12-digit seqs are smaller still), disjoint
    # ranges, an expiry; the gateway must accept it or its outbox never drains
    big = 2**63 - 1 - 2 * MAX_ACK_RANGES
    ack = Ack(
        ranges=tuple((big + 2 * i, big + 2 * i + 1) for i in range(MAX_ACK_RANGES)),
        ts=NOW,
        expires=NOW + timedelta(minutes=5),
    )
    raw = ack.to_json()
    assert len(raw) < MAX_PAYLOAD_BYTES, len(raw)
    assert decode(GW.topic("cmd", "ack"), raw, now=NOW).payload == ack
    with pytest.raises(ValueError, match="at most"):
        Ack(ranges=((1, 1),) * (MAX_ACK_RANGES + 1))


@pytest.mark.parametrize("name", [".", "..", ".upload-x", "-e1.jpg", "_x", "a/b", "", "a" * 129])
def test_evidence_name_is_a_plain_file_name(name: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        EvidenceRef(kind=EvidenceKind.SNAPSHOT, name=name, sha256=SHA, bytes=1)
    assert (
        EvidenceRef(kind=EvidenceKind.SNAPSHOT, name="a" * 128, sha256=SHA, bytes=1).name
        == "a" * 128
    )
    assert EvidenceRef(
        kind=EvidenceKind.CLIP, name="0.e1-x_y.mp4", sha256=SHA, bytes=1, content_type="video/mp4"
    )


def test_timestamps_are_normalised_to_utc() -> None:
    from zoneinfo import ZoneInfo

    local = datetime(2026, 11, 27, 20, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    event = Event(kind="k", source="s", ts=local)
    assert event.ts.tzinfo == UTC and event.ts.hour == 12


def test_ids_are_unique_and_sortable() -> None:
    ids = [Event(kind="k", source="s").id for _ in range(1000)]
    assert len(set(ids)) == 1000
    # sortable by creation time: ids made in later milliseconds sort after earlier ones
    # (within one millisecond a ULID's order is random, so step the clock between them)
    import time

    stepped = []
    for _ in range(20):
        stepped.append(Event(kind="k", source="s").id)
        time.sleep(0.002)
    assert stepped == sorted(stepped)


@pytest.mark.parametrize(
    ("channel", "payload", "field"),
    [
        (("event",), Event(kind="k", source="s", seq=1, message="ok", ts=NOW), "message"),
        (("reply", "recheck"), Reply(name="recheck", ok=False, reason="ok", ts=NOW), "reason"),
    ],
)
def test_control_characters_in_free_text_are_refused(
    channel: tuple[str, ...], payload, field: str
) -> None:
    # free text has no pattern: only the control-character check stands between a
    # terminal escape and the console or logs
    raw = json.loads(payload.to_json())
    raw[field] = "alarm\x1b[2J\x1b[31m cleared"
    with pytest.raises(ProtocolError) as err:
        decode(GW.topic(*channel), json.dumps(raw).encode(), now=NOW)
    assert err.value.field == field and "control characters" in str(err.value)


def test_message_dataclass_keeps_topic() -> None:
    message = Message(parse_topic(GW.topic("status")), Status(state=GatewayState.ONLINE))
    assert message.topic.gateway == GW
