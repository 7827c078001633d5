"""Cloud settings from the environment (``MB_CLOUD_*``), validated once at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from microbrain.broker.address import parse_broker_url

DEV_SECRET = "changethis"


class Settings(BaseSettings):
    """Everything the cloud needs to start; secrets come from the environment only."""

    model_config = SettingsConfigDict(env_prefix="MB_CLOUD_", env_file=".env", extra="ignore")

    environment: Literal["dev", "test", "production"] = "dev"
    database_url: str = Field(
        default="sqlite:///./microbrain.db",
        description="SQLAlchemy URL; SQLite runs in WAL mode, PostgreSQL via psycopg",
    )
    broker_url: str = Field(
        default="mqtt://127.0.0.1:1883", description="mqtt://[user:pass@]host:port"
    )
    broker_username: str | None = None
    broker_password: SecretStr | None = None
    secret_key: SecretStr = SecretStr(DEV_SECRET)
    admin_password: SecretStr = SecretStr(DEV_SECRET)
    ingest_group: str = Field(default="cloud", pattern=r"^[a-z0-9_-]{1,32}$")
    ingest_client_id: str | None = Field(
        default=None,
        description="stable id (one per process) so the broker keeps this worker's session, and "
        "redelivers what it had not acknowledged, across restarts; unset: a fresh session each "
        "start, and the gateways' outboxes resend whatever was not acknowledged",
    )
    ingest_batch_size: int = Field(default=500, ge=1, le=10_000)
    ingest_batch_latency_s: float = Field(default=0.02, gt=0, le=5)
    session_expiry_s: int = Field(default=3600, ge=0, le=7 * 86_400)
    scheduler_interval_s: float = Field(default=1.0, gt=0, le=60)
    reading_retention_days: int = Field(default=90, ge=1, le=3650)
    recheck_timeout_s: int = Field(
        default=600,
        ge=10,
        le=7 * 86_400,
        description="a work order verifying this long without the gateway's answer reopens "
        "(the recheck or its reply was lost)",
    )
    evidence_dir: Path = Field(
        default=Path("./evidence"), description="where uploaded snapshots/clips go"
    )
    token_ttl_s: int = Field(default=12 * 3600, ge=60, le=30 * 86_400)
    # model registry (cloud/model_registry)
    model_dir: Path | None = Field(
        default=None,
        description="where registered model files are kept (named by sha256); unset: "
        "'models' beside the evidence dir",
    )
    model_key_file: Path | None = Field(
        default=None,
        description="the registry's ed25519 signing key (PKCS#8 PEM, made on first use); "
        "unset: 'model-signing.key' beside the evidence dir",
    )
    model_resend_s: int = Field(
        default=120,
        ge=1,
        le=86_400,
        description="a model install sent to an online gateway and not answered in this long "
        "is sent again (lost, or the gateway was restarting)",
    )
    playbooks: Path | None = Field(
        default=None,
        description="the playbook file (configs/playbooks.yaml): notifications, work orders "
        "and voice warnings when alerts open; unset: alerts get no automatic response",
    )
    fusion_rules: Path | None = Field(
        default=None,
        description="the fusion rules (告警关联), e.g. configs/fusion.yaml: related alerts linked "
        "and raised; unset: the file shipped in configs/ when it is there",
    )
    warning_rules: Path | None = Field(
        default=None,
        description="trend-to-threshold rules (预警), e.g. configs/warning.yaml: which sensor "
        "values are watched, their limits and horizons; unset: hydrant pressure (GB 50974)",
    )
    awareness: Path | None = Field(
        default=None,
        description="the 24-hour loop's file, e.g. configs/awareness.yaml: shift times, desks, "
        "the daily report's hour; unset: the file shipped in configs/, else the defaults",
    )
    response_interval_s: float = Field(
        default=0.25,
        gt=0,
        le=10,
        description="how often new alerts and due deliveries are looked for",
    )
    # dead letters: what one gateway's junk may keep (the rest is counted, not kept)
    dead_letter_window_s: int = Field(
        default=86_400,
        ge=60,
        le=30 * 86_400,
        description="the rolling window over which each gateway's dead letters are capped",
    )
    dead_letter_max_rows: int = Field(
        default=100,
        ge=1,
        le=1_000_000,
        description="new dead-letter rows kept per gateway within the window (the same bad "
        "item resent only counts in its row)",
    )
    dead_letter_max_bytes: int = Field(
        default=256 * 1024,
        ge=4096,
        le=1024**3,
        description="bytes of dead letters (payload sample, reason, topic) kept per gateway "
        "within the window",
    )

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, value: str) -> str:
        if parse_broker_url(value).tls:
            raise ValueError(
                f"{value!r}: the cloud does not speak TLS to the broker yet; use mqtt://"
            )
        return value

    @model_validator(mode="after")
    def _no_default_secrets(self) -> Settings:
        # like the FastAPI template: a default secret is fine on a laptop, never in production
        if self.environment == "production":
            for name in ("secret_key", "admin_password"):
                if getattr(self, name).get_secret_value() == DEV_SECRET:
                    raise ValueError(
                        f"MB_CLOUD_{name.upper()} is the default {DEV_SECRET!r}; "
                        "set it in the environment before running in production"
                    )
        return self

    @property
    def model_files(self) -> Path:
        return self.model_dir or self.evidence_dir.parent / "models"

    @property
    def model_key_path(self) -> Path:
        return self.model_key_file or self.evidence_dir.parent / "model-signing.key"

    @property
    def broker_host(self) -> str:
        return parse_broker_url(self.broker_url).host

    @property
    def broker_port(self) -> int:
        return parse_broker_url(self.broker_url).port

    @property
    def broker_credentials(self) -> tuple[str | None, str | None]:
        address = parse_broker_url(self.broker_url)
        user = self.broker_username or address.username
        password = (
            self.broker_password.get_secret_value() if self.broker_password else address.password
        )
        return user, password
