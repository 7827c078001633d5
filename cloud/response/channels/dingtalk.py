"""DingTalk (钉钉) custom robot: one ``markdown`` message a notice, signed when a secret is set.

Format from DingTalk's "自定义机器人接入" (custom robot access),
https://open.dingtalk.com/document/robots/custom-robot-access: POST
``{"msgtype": "markdown", "markdown": {"title", "text"}, "at": {"atMobiles", "isAtAll"}}``
to ``…/robot/send?access_token=…``; an @'d mobile must also be written ``@138…`` in the text,
or the member is not reminded; at most 20 messages a minute; success is ``{"errcode": 0}``.

Signing (加签) from "自定义机器人安全设置",
https://help.dingtalk.io/open/dingstart/customize-robot-security-settings: ``timestamp`` in
milliseconds (within an hour of DingTalk's clock), HMAC-SHA256 keyed with the secret over
``f"{timestamp}\\n{secret}"``, Base64, URL-encoded, appended as ``&timestamp=…&sign=…``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from cloud.response.channels.base import LINK_LABEL, DeliveryError, Notice, epoch_ms
from cloud.response.channels.config import DingTalkConfig, env_url, env_value
from cloud.response.channels.transport import JSON_UTF8, HttpChannel, OutboundRequest, encode_json


@dataclass(frozen=True, slots=True)
class DingTalkSecrets:
    url: str  # carries ?access_token=…
    secret: str | None = None  # 加签 secret, "SEC…"


def read_secrets(config: DingTalkConfig, environ: Mapping[str, str]) -> DingTalkSecrets:
    secret = None
    if config.secret_env is not None:
        secret = env_value(config.id, "secret_env", config.secret_env, environ, optional=True)
    return DingTalkSecrets(
        url=env_url(config.id, "url_env", config.url_env, environ), secret=secret
    )


def sign(secret: str, timestamp_ms: int) -> str:
    """The documented signature, Base64 and not yet URL-encoded."""
    string_to_sign = f"{timestamp_ms}\n{secret}"
    digest = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed_url(url: str, secret: str, now: datetime) -> str:
    timestamp = epoch_ms(now)
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}timestamp={timestamp}&sign={quote(sign(secret, timestamp), safe='')}"


def mentioned(config: DingTalkConfig, notice: Notice) -> list[str]:
    """The config's mobiles then the notice's, each once, in order."""
    return list(dict.fromkeys((*config.at_mobiles, *notice.mentions)))


def markdown_text(notice: Notice, mobiles: list[str]) -> str:
    # markdown.title only shows in the push preview, so the title leads the text too
    parts = [f"#### {notice.title}", notice.body]
    if notice.link:
        parts.append(f"[{LINK_LABEL}]({notice.link})")
    if mobiles:
        parts.append(" ".join(f"@{mobile}" for mobile in mobiles))
    return "\n\n".join(parts)


def build_request(
    config: DingTalkConfig, secrets: DingTalkSecrets, notice: Notice, now: datetime
) -> OutboundRequest:
    mobiles = mentioned(config, notice)
    body = encode_json(
        {
            "msgtype": "markdown",
            "markdown": {"title": notice.title, "text": markdown_text(notice, mobiles)},
            "at": {"atMobiles": mobiles, "isAtAll": config.at_all},
        }
    )
    url = secrets.url if secrets.secret is None else signed_url(secrets.url, secrets.secret, now)
    return OutboundRequest("POST", url, {"Content-Type": JSON_UTF8}, body)


class DingTalkChannel(HttpChannel):
    vendor = "DingTalk robot"

    def __init__(self, config: DingTalkConfig, secrets: DingTalkSecrets) -> None:
        super().__init__(config.id, config.budget_per_minute, config.timeout_s)
        self.config = config
        self._secrets = secrets

    @classmethod
    def from_config(cls, config: DingTalkConfig, environ: Mapping[str, str]) -> DingTalkChannel:
        return cls(config, read_secrets(config, environ))

    def send(self, notice: Notice, *, now: datetime) -> None:
        request = build_request(self.config, self._secrets, notice, now)
        secrets = [self._secrets.secret or ""]
        answer = self.post_for_json(request, secrets=secrets)
        if answer.get("errcode") != 0:
            errmsg = self.scrub(request, str(answer.get("errmsg", "(no errmsg)")), secrets)
            raise DeliveryError(f"DingTalk errcode {answer.get('errcode')}: {errmsg}")
