"""SMS through an HTTP gateway described by a template, one request per recipient.

Gateways differ (Aliyun, Tencent Cloud, a carrier's own), so the config describes the
request: method, URL, headers and a JSON body template with ``{phone}`` and ``{text}``.
A template is JSON text (RFC 8259, "The JavaScript Object Notation (JSON) Data Interchange
Format", https://www.rfc-editor.org/rfc/rfc8259#section-7): the placeholders sit inside
strings and are filled with the value escaped as a JSON string's contents, so quotes,
backslashes and newlines in a notice cannot break it; placeholders in the URL are
percent-encoded (RFC 3986 section 2.1, https://www.rfc-editor.org/rfc/rfc3986#section-2.1).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from cloud.response.channels.base import DeliveryError, Notice
from cloud.response.channels.config import (
    PHONE,
    TEXT,
    ChannelConfigError,
    SmsConfig,
    env_url,
    expand_env,
)
from cloud.response.channels.transport import JSON_UTF8, HttpChannel, OutboundRequest

ELLIPSIS = "…"
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")


@dataclass(frozen=True, slots=True)
class SmsSecrets:
    url: str
    headers: Mapping[str, str]  # with every ${NAME} resolved


def read_secrets(config: SmsConfig, environ: Mapping[str, str]) -> SmsSecrets:
    url = config.url
    if config.url_env is not None:
        url = env_url(config.id, "url_env", config.url_env, environ)
    assert url is not None  # the config holds exactly one of url and url_env
    headers = {}
    for name, value in config.headers.items():
        field = f"headers[{name!r}]"
        headers[name] = expand_env(config.id, field, value, environ)
        if not _PRINTABLE_ASCII.match(headers[name]):
            raise ChannelConfigError(
                f"channel {config.id!r}: {field} takes a variable whose value is not printable "
                "ASCII (an HTTP header cannot carry it)"
            )
    for placeholder in (PHONE, TEXT):
        if placeholder not in url + (config.body_template or ""):
            raise ChannelConfigError(
                f"channel {config.id!r}: neither the URL nor body_template has {placeholder}"
            )
    return SmsSecrets(url=url, headers=headers)


def sms_text(notice: Notice, max_chars: int) -> str:
    """Title, body and link in ``max_chars``; the link survives a cut (it is how a
    recipient acknowledges), unless it alone would not leave room for the title."""
    text = f"{notice.title}\n{notice.body}".strip()
    tail = f"\n{notice.link}" if notice.link else ""
    if len(text) + len(tail) <= max_chars:
        return text + tail
    if len(tail) > max_chars // 2:
        tail = ""
        if len(text) <= max_chars:
            return text
    return text[: max_chars - len(tail) - len(ELLIPSIS)] + ELLIPSIS + tail


def _json_escaped(value: str) -> str:
    # the inside of a JSON string: json.dumps adds the quotes, the template has its own
    return json.dumps(value, ensure_ascii=False)[1:-1]


def build_requests(
    config: SmsConfig, secrets: SmsSecrets, notice: Notice, now: datetime
) -> list[tuple[str, OutboundRequest]]:
    """``(phone, request)`` for each recipient: the config's numbers, then the notice's."""
    text = sms_text(notice, config.max_chars)
    headers = dict(secrets.headers)
    if config.method == "POST" and not any(h.lower() == "content-type" for h in headers):
        headers["Content-Type"] = JSON_UTF8
    requests = []
    for phone in dict.fromkeys((*config.to, *notice.mentions)):
        url = secrets.url.replace(PHONE, quote(phone, safe="")).replace(TEXT, quote(text, safe=""))
        body = b""
        if config.body_template is not None:
            filled = config.body_template.replace(PHONE, _json_escaped(phone))
            body = filled.replace(TEXT, _json_escaped(text)).encode()
        requests.append((phone, OutboundRequest(config.method, url, headers, body)))
    return requests


def masked(phone: str) -> str:
    """``138****5678``: enough for an operator to tell numbers apart, not to dial them."""
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 9 else phone


class SmsChannel(HttpChannel):
    vendor = "SMS gateway"

    def __init__(self, config: SmsConfig, secrets: SmsSecrets) -> None:
        super().__init__(config.id, config.budget_per_minute, config.timeout_s)
        self.config = config
        self._secrets = secrets

    @classmethod
    def from_config(cls, config: SmsConfig, environ: Mapping[str, str]) -> SmsChannel:
        return cls(config, read_secrets(config, environ))

    def send(self, notice: Notice, *, now: datetime) -> None:
        """Text every recipient; one failure does not stop the rest, and the error names
        every number that was not texted."""
        failures = []
        # a header such as "Bearer <token>" may surface in an error as just the token
        values = self._secrets.headers.values()
        secrets = [*values, *(word for value in values for word in value.split())]
        for phone, request in build_requests(self.config, self._secrets, notice, now):
            try:
                self.post(request, secrets=secrets, ok_status=self.config.ok_status)
            except DeliveryError as exc:
                failures.append(f"{masked(phone)}: {exc}")
        if failures:
            raise DeliveryError("; ".join(failures))
