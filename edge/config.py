"""The gateway agent's own config (``microbrain edge run --config GATEWAY.yaml``).

Strict: an unknown key, a key given twice or a bad value fails at start-up, naming the
file, the line and the key's path (the loader every config file shares,
:mod:`microbrain.config_files`). Secrets are never in the file: passwords come from the
environment variables it names.

    site: ../demo/site.yaml          # relative to this file
    gateway: gw-xiyuan-1
    cloud: {url: mqtt://cloud.example:1883}
    local_broker: {url: mqtt://127.0.0.1:1883}
    data_dir: /var/lib/microbrain/gw-xiyuan-1
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from microbrain.broker.address import parse_broker_url
from microbrain.config_files import ConfigFileError, load_yaml
from microbrain.site.common import Duration, Id

EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")]


class GatewayConfigError(ValueError):
    """The agent cannot start with this config; the message says what to fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Tls(_Strict):
    ca_file: Path | None = Field(default=None, description="CA bundle to verify the broker")
    cert_file: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    key_file: Path | None = None


class BrokerLink(_Strict):
    """How to reach an MQTT broker."""

    url: str = Field(description="mqtt://host:port, or mqtts://host:port for TLS")
    username: str | None = Field(default=None, max_length=128)
    password_env: EnvName | None = Field(default=None, description="variable holding the password")
    tls: Tls | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        address = parse_broker_url(value)
        if address.username or address.password:
            raise ValueError("put no credentials in the URL; use username and password_env")
        return value

    @property
    def host(self) -> str:
        return parse_broker_url(self.url).host

    @property
    def port(self) -> int:
        return parse_broker_url(self.url).port

    @property
    def uses_tls(self) -> bool:
        return parse_broker_url(self.url).tls or self.tls is not None


class OutboxConfig(_Strict):
    max_mb: float = Field(default=256, gt=0, le=1_000_000, description="bytes of payload kept")
    max_items: int = Field(default=2_000_000, ge=10)
    resend_after_s: Duration = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="resend what the cloud has not acknowledged after this",
    )
    max_unacked: int = Field(default=100_000, ge=10, description="sent, not yet acknowledged")


class AudioConfig(_Strict):
    """Where announcements go: a WAV per announcement in ``out_dir``, then ``player``."""

    out_dir: Path = Path("announcements")
    clips_dir: Path | None = Field(default=None, description="prepared clips: <clip id>.wav")
    player: tuple[str, ...] = Field(
        default=(), description='e.g. ["aplay", "-q"]; empty: file only'
    )
    voice: str = Field(
        default="cmn", pattern=r"^[a-zA-Z0-9_+-]{1,32}$", description="espeak-ng voice"
    )
    speakers: tuple[Id, ...] = ()


class ModelUpdateConfig(_Strict):
    """How the gateway takes a model the cloud's registry sends (``cmd/model``)."""

    smoke_latency_factor: float = Field(
        default=3.0,
        ge=1,
        le=100,
        description="a new model's smoke-test inference may take this many times the "
        "running model's (or smoke_latency_floor_ms, whichever is more)",
    )
    smoke_latency_floor_ms: float = Field(
        default=250.0, gt=0, le=60_000, description="latency always within the smoke budget"
    )
    download_timeout_s: Duration = Field(
        default=30.0, gt=0, le=3600, description="per request, while no byte arrives"
    )
    download_attempts: int = Field(
        default=5, ge=1, le=100, description="tries per install before it fails"
    )
    retry_backoff_s: Duration = Field(
        default=2.0, ge=0, le=600, description="wait after the first failed try, doubling"
    )


class GatewayConfig(_Strict):
    site: Path
    gateway: Id
    cloud: BrokerLink
    local_broker: BrokerLink | None = Field(default=None, description="where the sensors publish")
    cloud_api: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="the cloud's HTTP base URL, e.g. http://cloud:8000, for evidence uploads; "
        "unset: snapshots and clips stay on the gateway",
    )
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="serve Prometheus metrics on 127.0.0.1:PORT"
    )
    data_dir: Path
    outbox: OutboxConfig = OutboxConfig()
    heartbeat_s: Duration | None = Field(
        default=None, ge=1, le=3600, description="override the site's heartbeat period"
    )
    reading_min_interval_s: Duration = Field(
        default=10.0, ge=0, le=86_400, description="forward at most one reading per sensor per this"
    )
    audio: AudioConfig | None = None
    model_key: Path | None = Field(
        default=None,
        description="file holding the model registry's public key (one base64 line, as "
        "the cloud serves it at GET /api/models/key); unset: models the cloud sends are "
        "refused",
    )
    model_update: ModelUpdateConfig = ModelUpdateConfig()
    video: bool = Field(default=True, description="run the gateway's cameras")
    loop_recordings: bool = Field(
        default=False,
        description="cameras whose source is a file or image play it over and "
        "over (demos, drills); a recording always plays at its own pace, stamped from now",
    )

    @field_validator("local_broker")
    @classmethod
    def _local_plain(cls, link: BrokerLink | None) -> BrokerLink | None:
        # the sensor client (edge/sensors/local_broker.py) has no TLS: refusing beats
        # silently talking plain MQTT to a port that expects TLS
        if link is not None and link.uses_tls:
            raise ValueError(
                "TLS (mqtts:// or a tls: block) is not supported for the local "
                "sensor broker yet; use mqtt:// on the gateway's own network"
            )
        return link

    @property
    def models_dir(self) -> Path:
        """Where installed models and their trust state live."""
        return self.data_dir / "models"

    def resolved(self, base: Path) -> GatewayConfig:
        """Paths relative to the config file's folder, made absolute."""

        def absolute(p: Path) -> Path:
            return p if p.is_absolute() else (base / p).resolve()

        def fix(p: Path | None) -> Path | None:
            return None if p is None else absolute(p)

        data_dir = absolute(self.data_dir)
        update: dict[str, Any] = {
            "site": fix(self.site),
            "data_dir": data_dir,
            "model_key": fix(self.model_key),
        }
        if self.audio is not None:
            out_dir = self.audio.out_dir
            update["audio"] = self.audio.model_copy(
                update={
                    "out_dir": out_dir if out_dir.is_absolute() else data_dir / out_dir,
                    "clips_dir": fix(self.audio.clips_dir),
                }
            )
        for name in ("cloud", "local_broker"):
            link = getattr(self, name)
            if link is not None and link.tls is not None:
                tls = link.tls.model_copy(
                    update={
                        k: fix(getattr(link.tls, k)) for k in ("ca_file", "cert_file", "key_file")
                    }
                )
                update[name] = link.model_copy(update={"tls": tls})
        return self.model_copy(update=update)


def password(
    link: BrokerLink | None, env: Mapping[str, str], fallback_env: str | None = None
) -> str | None:
    """The password the link's ``password_env`` (or the site's) names; error if unset."""
    var = (link.password_env if link else None) or fallback_env
    if var is None:
        return None
    value = env.get(var)
    if not value:
        raise GatewayConfigError(f"environment variable {var} (broker password) is not set")
    return value


def load_gateway_config(path: str | Path) -> GatewayConfig:
    """Read and validate a gateway config; raise :class:`GatewayConfigError` if unusable,
    each problem with its line and key path (``line 4: cloud.url: ...``)."""
    path = Path(path)
    try:
        config = load_yaml(path, GatewayConfig)
    except ConfigFileError as err:
        raise GatewayConfigError(str(err)) from None
    return config.resolved(path.resolve().parent)


def environment() -> Mapping[str, str]:
    return os.environ
