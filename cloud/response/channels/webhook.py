"""The generic webhook: the notice as JSON, signed the way GitHub signs its webhooks.

Signature: ``X-Microbrain-Signature: sha256=<hex HMAC-SHA256 of the raw body>``, after
GitHub, "Validating webhook deliveries",
https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries. The signed
body carries ``sent_at`` and ``X-Microbrain-Timestamp`` the same instant in epoch seconds, so
a receiver that checks both against its clock refuses a replay.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cloud.response.channels.base import Notice, epoch_ms
from cloud.response.channels.config import WebhookConfig, env_url, env_value
from cloud.response.channels.transport import JSON_UTF8, HttpChannel, OutboundRequest, encode_json


@dataclass(frozen=True, slots=True)
class WebhookSecrets:
    url: str
    secret: str | None = None


def read_secrets(config: WebhookConfig, environ: Mapping[str, str]) -> WebhookSecrets:
    url = config.url
    if config.url_env is not None:
        url = env_url(config.id, "url_env", config.url_env, environ)
    assert url is not None  # the config holds exactly one of url and url_env
    secret = None
    if config.secret_env is not None:
        secret = env_value(config.id, "secret_env", config.secret_env, environ, optional=True)
    return WebhookSecrets(url=url, secret=secret)


def build_request(
    config: WebhookConfig, secrets: WebhookSecrets, notice: Notice, now: datetime
) -> OutboundRequest:
    body = encode_json(
        {
            "title": notice.title,
            "body": notice.body,
            "severity": notice.severity.name.lower(),
            "severity_level": int(notice.severity),
            "alert_ids": list(notice.alert_ids),
            "link": notice.link,
            "sent_at": now.astimezone(UTC).isoformat(),
        }
    )
    headers = {"Content-Type": JSON_UTF8, config.timestamp_header: str(epoch_ms(now) // 1000)}
    if secrets.secret is not None:
        digest = hmac.new(secrets.secret.encode(), body, hashlib.sha256).hexdigest()
        headers[config.signature_header] = f"sha256={digest}"
    return OutboundRequest("POST", secrets.url, headers, body)


class WebhookChannel(HttpChannel):
    vendor = "webhook"

    def __init__(self, config: WebhookConfig, secrets: WebhookSecrets) -> None:
        super().__init__(config.id, config.budget_per_minute, config.timeout_s)
        self.config = config
        self._secrets = secrets

    @classmethod
    def from_config(cls, config: WebhookConfig, environ: Mapping[str, str]) -> WebhookChannel:
        return cls(config, read_secrets(config, environ))

    def send(self, notice: Notice, *, now: datetime) -> None:
        request = build_request(self.config, self._secrets, notice, now)
        self.post(request, secrets=[self._secrets.secret or ""])
