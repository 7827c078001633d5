import pytest

from microbrain.broker.address import BrokerAddress, parse_broker_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1", BrokerAddress("127.0.0.1", 1883, False)),
        ("tcp://broker:1884", BrokerAddress("broker", 1884, False)),
        ("mqtts://cloud.example", BrokerAddress("cloud.example", 8883, True)),
        ("mqtt://cloud:p%40ss@broker:1885", BrokerAddress("broker", 1885, False, "cloud", "p@ss")),
    ],
)
def test_parses_broker_urls(url: str, expected: BrokerAddress) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "not a broker URL"),
        ("http://broker", "not a broker URL"),
        ("mqtt://", "not a broker URL"),
        ("mqtt://broker:99999", "invalid port"),
        ("mqtt://broker:port", "invalid port"),
    ],
)
def test_refuses_what_is_not_a_broker_url(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_broker_url(url)
