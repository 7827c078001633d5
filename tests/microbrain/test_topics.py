import pytest

from microbrain.protocol import (
    Channel,
    GatewayPath,
    ProtocolError,
    Topic,
    cloud_subscription,
    parse_topic,
)


@pytest.mark.parametrize(
    ("text", "channel", "name"),
    [
        ("mb/v1/c1/k1/gw1/event", Channel.EVENT, None),
        ("mb/v1/c1/k1/gw1/reading", Channel.READING, None),
        ("mb/v1/c1/k1/gw1/status", Channel.STATUS, None),
        ("mb/v1/c1/k1/gw1/cmd/ack", Channel.CMD, "ack"),
        ("mb/v1/xi-yuan_1/k-2/gw-9/reply/recheck", Channel.REPLY, "recheck"),
    ],
)
def test_parse_valid_topics_round_trip(text: str, channel: Channel, name: str | None) -> None:
    topic = parse_topic(text)
    assert topic.channel is channel
    assert topic.name == name
    assert topic.text == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "outside the tree"),
        ("mb/v1/c1/k1/gw1", "outside the tree"),
        ("xx/v1/c1/k1/gw1/event", "outside the tree"),
        ("mb/v2/c1/k1/gw1/event", "version"),
        ("mb/v1/c1/k1/gw1/telemetry", "unknown channel"),
        ("mb/v1/c1/k1/gw1/event/extra", "no further segments"),
        ("mb/v1/c1/k1/gw1/cmd", "exactly one name"),
        ("mb/v1/c1/k1/gw1/cmd/a/b", "exactly one name"),
        ("mb/v1/C1/k1/gw1/event", "community"),
        ("mb/v1/c1/+/gw1/event", "compound"),
        ("mb/v1/c1/k1/#/event", "gateway"),
        ("mb/v1/c1/k1//event", "gateway"),
        ("mb/v1/c1/k1/gw1/cmd/ACK", "cmd name"),
        ("mb/v1/" + "a" * 600, "longer than"),
    ],
)
def test_parse_rejects_with_reason(text: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_topic(text)
    assert reason in str(err.value)


def test_gateway_builds_topics_and_filters() -> None:
    gw = GatewayPath("c1", "k1", "gw1")
    assert gw.topic("event") == "mb/v1/c1/k1/gw1/event"
    assert gw.topic(Channel.CMD, "announce") == "mb/v1/c1/k1/gw1/cmd/announce"
    assert gw.subscription("cmd") == "mb/v1/c1/k1/gw1/cmd/#"
    assert gw.subscription() == "mb/v1/c1/k1/gw1/#"
    assert cloud_subscription() == "$share/cloud/mb/v1/+/+/+/#"
    assert cloud_subscription(None) == "mb/v1/+/+/+/#"


def test_named_and_unnamed_channels_are_enforced() -> None:
    gw = GatewayPath("c1", "k1", "gw1")
    with pytest.raises(ProtocolError):
        Topic(gw, Channel.CMD)
    with pytest.raises(ProtocolError):
        Topic(gw, Channel.EVENT, "x")
    with pytest.raises(ProtocolError):
        GatewayPath("c1", "k/1", "gw1")
