"""A gateway's config goes through the strict loader every config file shares: a key given
twice, a wrong type or NaN is refused naming the file, the line and the key's path."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import GatewayConfigError, load_gateway_config

GOOD = """\
site: site.yaml
gateway: gw-xiyuan-1
cloud:
  url: mqtt://127.0.0.1:1883
  keepalive_s: 30
data_dir: data
outbox:
  max_mb: 64
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_config_loads(tmp_path: Path) -> None:
    cfg = load_gateway_config(_write(tmp_path, GOOD))
    assert (cfg.cloud.url, cfg.cloud.keepalive_s, cfg.outbox.max_mb) == (
        "mqtt://127.0.0.1:1883",
        30,
        64,
    )
    assert cfg.data_dir == (tmp_path / "data").resolve()


# (what replaces what in GOOD, the one problem the refusal names)
BROKEN = [
    # plain YAML would keep the second url silently: the gateway would talk to another broker
    (
        "duplicate key",
        "  keepalive_s: 30\n",
        "  keepalive_s: 30\n  url: mqtt://other:1883\n",
        "line 6: cloud.url: duplicate key 'url' (first at line 4)",
    ),
    (
        "duplicate top-level key",
        "data_dir: data\n",
        "data_dir: data\ngateway: gw-xiyuan-2\n",
        "line 7: gateway: duplicate key 'gateway' (first at line 2)",
    ),
    (
        "wrong type",
        "keepalive_s: 30",
        "keepalive_s: soon",
        "line 5: cloud.keepalive_s: Input should be a valid integer",
    ),
    (
        "wrong type, deeper",
        "max_mb: 64",
        "max_mb: [64]",
        "line 8: outbox.max_mb: Input should be a valid number",
    ),
    (
        "NaN",
        "max_mb: 64",
        "max_mb: .nan",
        "line 8: outbox.max_mb: .nan is not a number a config may hold",
    ),
    (
        "unknown key",
        "data_dir: data\n",
        "data_dir: data\ndata_dri: x\n",
        "line 7: data_dri: Extra inputs",
    ),
    ("missing key", "gateway: gw-xiyuan-1\n", "", "line 1: gateway: Field required"),
]


@pytest.mark.parametrize(("case", "find", "replace", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_bad_config_is_refused_with_file_line_and_key_path(
    tmp_path: Path, case: str, find: str, replace: str, message: str
) -> None:
    assert find in GOOD
    path = _write(tmp_path, GOOD.replace(find, replace, 1))
    with pytest.raises(GatewayConfigError) as err:
        load_gateway_config(path)
    text = str(err.value)
    assert text.startswith(f"{path}: 1 problem(s)\n"), text
    assert f"\n  {message}" in text, text


def test_not_yaml_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "cloud_api: [\n")
    with pytest.raises(
        GatewayConfigError, match=r"gateway\.yaml: 1 problem\(s\)\n  line \d+: not valid YAML"
    ):
        load_gateway_config(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        GatewayConfigError, match=r"nope\.yaml: 1 problem\(s\)\n  \(file\): no such file"
    ):
        load_gateway_config(tmp_path / "nope.yaml")
