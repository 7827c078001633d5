"""Feishu/Lark (飞书) custom bot: one ``interactive`` card a notice, signed when a secret is set.

Format, signing and answers from Feishu's "自定义机器人使用指南" (custom bot guide),
https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot: POST
``{"msg_type": "interactive", "card": {…}}`` to ``…/open-apis/bot/v2/hook/<token>``, the
request at most 20 KB; signing (签名校验): ``timestamp`` in *seconds* as a string, HMAC-SHA256
whose *key* is ``f"{timestamp}\\n{secret}"`` over an empty message, Base64, ``timestamp`` and
``sign`` in the JSON body (a mismatch answers code 19021); success is ``{"code": 0}`` (older
bots answer ``{"StatusCode": 0}``). The card's header colours and its button with a ``url``
follow "Message card content reference",
https://open.feishu.cn/document/mass-messaging-to-designated-departments/message-card-content-reference.
A card cannot @ a mobile number (only open_id, user_id or e-mail), so mentions are not sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from cloud.response.channels.base import LINK_LABEL, DeliveryError, Notice, epoch_ms, truncate_utf8
from cloud.response.channels.config import FeishuConfig, env_url, env_value
from cloud.response.channels.transport import JSON_UTF8, HttpChannel, OutboundRequest, encode_json
from microbrain.protocol import Severity

HEADER_COLOUR = {Severity.CRITICAL: "red", Severity.WARNING: "orange", Severity.INFO: "blue"}
# the request may be 20 KB; the card around the body takes well under 2 KB of it
MAX_BODY_BYTES = 18_000
CUT_MARKER = "\n…（内容过长，已截断）"


@dataclass(frozen=True, slots=True)
class FeishuSecrets:
    url: str  # carries the bot's token in its path
    secret: str | None = None  # 签名校验 secret


def read_secrets(config: FeishuConfig, environ: Mapping[str, str]) -> FeishuSecrets:
    secret = None
    if config.secret_env is not None:
        secret = env_value(config.id, "secret_env", config.secret_env, environ, optional=True)
    return FeishuSecrets(url=env_url(config.id, "url_env", config.url_env, environ), secret=secret)


def sign(secret: str, timestamp_s: int) -> str:
    """The documented signature: the secret goes into the HMAC key, the message is empty."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def card(notice: Notice) -> dict[str, object]:
    elements: list[dict[str, object]] = [
        {"tag": "markdown", "content": truncate_utf8(notice.body, MAX_BODY_BYTES, CUT_MARKER)}
    ]
    if notice.link:
        button = {
            "tag": "button",
            "text": {"tag": "plain_text", "content": LINK_LABEL},
            "type": "danger" if notice.severity is Severity.CRITICAL else "primary",
            "url": notice.link,
        }
        elements.append({"tag": "action", "actions": [button]})
    return {
        "config": {"wide_screen_mode": True},
        "header": {
            "title": {"tag": "plain_text", "content": notice.title},
            "template": HEADER_COLOUR[notice.severity],
        },
        "elements": elements,
    }


def build_request(
    config: FeishuConfig, secrets: FeishuSecrets, notice: Notice, now: datetime
) -> OutboundRequest:
    payload: dict[str, object] = {}
    if secrets.secret is not None:
        timestamp = epoch_ms(now) // 1000
        payload |= {"timestamp": str(timestamp), "sign": sign(secrets.secret, timestamp)}
    payload |= {"msg_type": "interactive", "card": card(notice)}
    return OutboundRequest("POST", secrets.url, {"Content-Type": JSON_UTF8}, encode_json(payload))


def answer_error(answer: Mapping[str, object]) -> str | None:
    """What went wrong by the bot's answer, or None when it took the message."""
    if "code" in answer:
        code, message = answer["code"], answer.get("msg")
    elif "StatusCode" in answer:
        code, message = answer["StatusCode"], answer.get("StatusMessage")
    else:
        return f"the Feishu bot answered with neither code nor StatusCode: {sorted(answer)}"
    return None if code == 0 else f"Feishu code {code}: {message or '(no msg)'}"


class FeishuChannel(HttpChannel):
    vendor = "Feishu bot"

    def __init__(self, config: FeishuConfig, secrets: FeishuSecrets) -> None:
        super().__init__(config.id, config.budget_per_minute, config.timeout_s)
        self.config = config
        self._secrets = secrets

    @classmethod
    def from_config(cls, config: FeishuConfig, environ: Mapping[str, str]) -> FeishuChannel:
        return cls(config, read_secrets(config, environ))

    def send(self, notice: Notice, *, now: datetime) -> None:
        request = build_request(self.config, self._secrets, notice, now)
        secrets = [self._secrets.secret or ""]
        error = answer_error(self.post_for_json(request, secrets=secrets))
        if error is not None:
            raise DeliveryError(self.scrub(request, error, secrets))
