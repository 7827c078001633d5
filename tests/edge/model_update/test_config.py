"""The gateway config's model settings: ``model_key`` next to the config file, the
install knobs bounded, a typo refused at start."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge.config import GatewayConfigError, load_gateway_config


def write(tmp_path: Path, **over: object) -> Path:
    cfg: dict[str, object] = {
        "site": "site.yaml",
        "gateway": "gw-1",
        "cloud": {"url": "mqtt://127.0.0.1:1883"},
        "data_dir": "data",
    }
    cfg.update(over)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_model_key_is_relative_to_the_config_and_models_live_in_data_dir(tmp_path: Path) -> None:
    config = load_gateway_config(write(tmp_path, model_key="keys/registry.pub"))
    assert config.model_key == (tmp_path / "keys" / "registry.pub").resolve()
    assert config.models_dir == (tmp_path / "data").resolve() / "models"
    assert config.model_update.smoke_latency_factor == 3.0
    assert load_gateway_config(write(tmp_path)).model_key is None


@pytest.mark.parametrize(
    ("block", "words"),
    [
        ({"smoke_latency_factor": 0.5}, "model_update.smoke_latency_factor"),
        ({"download_attempts": 0}, "model_update.download_attempts"),
        ({"retries": 3}, "model_update.retries"),
    ],
)
def test_bad_model_update_settings_are_refused(tmp_path: Path, block: dict, words: str) -> None:
    with pytest.raises(GatewayConfigError, match=words.replace(".", r"\.")):
        load_gateway_config(write(tmp_path, model_update=block))
