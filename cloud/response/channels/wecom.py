"""WeCom (企业微信) group robot: one ``markdown`` message a notice.

Format and limits from WeCom's "群机器人配置说明",
https://developer.work.weixin.qq.com/document/path/91770: POST
``{"msgtype": "markdown", "markdown": {"content": …}}`` to the robot's webhook URL (its
``key`` is the only credential: no signing); ``content`` at most 4096 bytes of UTF-8 (longer
is refused with errcode 40058); at most 20 messages a minute (errcode 45009 beyond);
success is ``{"errcode": 0, "errmsg": "ok"}``. A markdown message cannot @ a mobile number
(only text messages take ``mentioned_mobile_list``), so a notice's mentions are not sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from cloud.response.channels.base import LINK_LABEL, DeliveryError, Notice, truncate_utf8
from cloud.response.channels.config import WeComConfig, env_url
from cloud.response.channels.transport import JSON_UTF8, HttpChannel, OutboundRequest, encode_json

MAX_CONTENT_BYTES = 4096
CUT_MARKER = "\n…（内容过长，已截断）"


@dataclass(frozen=True, slots=True)
class WeComSecrets:
    url: str  # carries ?key=…


def read_secrets(config: WeComConfig, environ: Mapping[str, str]) -> WeComSecrets:
    return WeComSecrets(url=env_url(config.id, "url_env", config.url_env, environ))


def markdown_content(notice: Notice) -> str:
    """Bold title, body, then the console link; cut to 4096 bytes keeping the link, which is
    how a reader acknowledges."""
    head = f"**{notice.title}**\n{notice.body}"
    tail = f"\n[{LINK_LABEL}]({notice.link})" if notice.link else ""
    if len(tail.encode()) > MAX_CONTENT_BYTES // 2:
        tail = ""  # not a console link: never seen, but it must not crowd out the notice
    room = MAX_CONTENT_BYTES - len(tail.encode())
    return truncate_utf8(head, room, CUT_MARKER) + tail


def build_request(
    config: WeComConfig, secrets: WeComSecrets, notice: Notice, now: datetime
) -> OutboundRequest:
    body = encode_json({"msgtype": "markdown", "markdown": {"content": markdown_content(notice)}})
    return OutboundRequest("POST", secrets.url, {"Content-Type": JSON_UTF8}, body)


class WeComChannel(HttpChannel):
    vendor = "WeCom robot"

    def __init__(self, config: WeComConfig, secrets: WeComSecrets) -> None:
        super().__init__(config.id, config.budget_per_minute, config.timeout_s)
        self.config = config
        self._secrets = secrets

    @classmethod
    def from_config(cls, config: WeComConfig, environ: Mapping[str, str]) -> WeComChannel:
        return cls(config, read_secrets(config, environ))

    def send(self, notice: Notice, *, now: datetime) -> None:
        request = build_request(self.config, self._secrets, notice, now)
        answer = self.post_for_json(request)
        if answer.get("errcode") != 0:
            errmsg = self.scrub(request, str(answer.get("errmsg", "(no errmsg)")))
            raise DeliveryError(f"WeCom errcode {answer.get('errcode')}: {errmsg}")
