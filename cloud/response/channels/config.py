"""The channels' configuration: one strict model per type, chosen by ``type``.

Secrets never sit in the file: a field ending in ``_env`` names the environment variable
that holds one (a robot's webhook URL carries its key or token, so robots take ``url_env``),
and :func:`env_value` reads it when the channel is made, naming the channel, the field and
the variable when it is missing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, model_validator

from microbrain.site.common import Duration, Id, Strict


class ChannelConfigError(ValueError):
    """A channel that cannot be made from its config and the environment; the message names
    the channel, the field and what to do."""


EnvName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"),
    Field(description="the name of an environment variable (its value is never in the file)"),
]
Mobile = Annotated[
    str,
    StringConstraints(pattern=r"^\+?[0-9]{5,20}$"),
    Field(description="a mobile number, digits only, optionally with a leading +"),
]
Address = Annotated[
    str,
    StringConstraints(pattern=r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$", max_length=254),
    Field(description="a bare e-mail address, user@example.org"),
]
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")]
# HTTP header values are ASCII without control characters: a newline would start a header
HeaderValue = Annotated[str, StringConstraints(pattern=r"^[\x20-\x7e]*$", max_length=4096)]

# query parameters that carry a credential in the robots' and gateways' URLs: such a URL
# belongs in the environment (url_env), not in a file that is copied and committed
_SECRET_QUERY_KEYS = frozenset(
    {"key", "token", "access_token", "secret", "sign", "signature", "password", "apikey"}
)


def check_http_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL; the message never repeats the URL (an
    environment variable's URL carries a key)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    return url


def _check_plain_url(url: str) -> str:
    check_http_url(url)
    parts = urlsplit(url)
    keys = {key.lower().replace("-", "_") for key, _ in parse_qsl(parts.query)}
    if parts.password or keys & _SECRET_QUERY_KEYS:
        raise ValueError(
            "this URL carries a credential; put it in an environment variable and name that "
            "variable in url_env instead"
        )
    return url


PlainUrl = Annotated[str, AfterValidator(_check_plain_url)]


def _status_range(value: object) -> object:
    """``"200-299"``, ``204`` or ``[200, 299]`` as a ``(low, high)`` pair."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, str):
        low, sep, high = value.partition("-")
        try:
            return (int(low), int(high if sep else low))
        except ValueError:
            raise ValueError(f"{value!r} is not a status or range (200, '200-299')") from None
    return value


def _check_status_range(pair: tuple[int, int]) -> tuple[int, int]:
    low, high = pair
    if not 100 <= low <= high <= 599:
        raise ValueError(f"{low}-{high} is not a range of HTTP statuses (100..599, low first)")
    return pair


StatusRange = Annotated[
    tuple[int, int], BeforeValidator(_status_range), AfterValidator(_check_status_range)
]


class _Channel(Strict):
    id: Id
    budget_per_minute: int = Field(
        default=20,
        ge=1,
        le=600,
        description="notices a minute before the rest wait for a digest (robots take ~20)",
    )
    timeout_s: Duration = Field(
        default=5.0, ge=0.1, le=60, description="seconds to connect, send and get an answer"
    )


class _UrlEither(_Channel):
    url: PlainUrl | None = Field(default=None, description="the endpoint, when it holds no secret")
    url_env: EnvName | None = Field(default=None, description="variable holding the endpoint")

    @model_validator(mode="after")
    def _one_url(self) -> _UrlEither:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url (no secret in it) and url_env")
        return self


class WebhookConfig(_UrlEither):
    """A generic JSON POST, optionally signed with HMAC-SHA256 over the raw body."""

    type: Literal["webhook"]
    secret_env: EnvName | None = Field(
        default=None, description="variable holding the HMAC key; unsigned when absent"
    )
    signature_header: HeaderName = "X-Microbrain-Signature"
    timestamp_header: HeaderName = "X-Microbrain-Timestamp"


class WeComConfig(_Channel):
    """A WeCom (企业微信) group robot; its URL holds the robot's key."""

    type: Literal["wecom"]
    url_env: EnvName


class DingTalkConfig(_Channel):
    """A DingTalk (钉钉) custom robot, signed when the robot's 加签 secret is given."""

    type: Literal["dingtalk"]
    url_env: EnvName
    secret_env: EnvName | None = None
    at_mobiles: tuple[Mobile, ...] = Field(
        default=(), description="members @'d on every notice, besides the notice's own"
    )
    at_all: bool = False


class FeishuConfig(_Channel):
    """A Feishu/Lark (飞书) custom bot, signed when its 签名校验 secret is given."""

    type: Literal["feishu"]
    url_env: EnvName
    secret_env: EnvName | None = None


class SmtpConfig(_Channel):
    """Plain-text e-mail through an SMTP server."""

    type: Literal["smtp"]
    host: Annotated[str, StringConstraints(min_length=1, max_length=253, strip_whitespace=True)]
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = Field(default=True, description="upgrade a plain connection (port 587)")
    ssl: bool = Field(default=False, description="TLS from the first byte (port 465)")
    username: str | None = None
    password_env: EnvName | None = None
    sender: Address
    sender_name: str | None = Field(default=None, max_length=100)
    to: tuple[Address, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> SmtpConfig:
        if self.ssl and self.starttls:
            raise ValueError("ssl and starttls exclude each other; set starttls: false with ssl")
        if (self.username is None) != (self.password_env is None):
            raise ValueError("username and password_env go together")
        return self


# the SMS template's placeholders, filled per recipient
PHONE, TEXT = "{phone}", "{text}"


class SmsConfig(_UrlEither):
    """An HTTP SMS gateway described by a template, one request per recipient."""

    type: Literal["sms"]
    method: Literal["POST", "GET"] = "POST"
    headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict, description="values may name variables as ${NAME}"
    )
    body_template: str | None = Field(
        default=None,
        description='JSON with "{phone}" and "{text}" inside strings, filled JSON-escaped',
    )
    to: tuple[Mobile, ...] = Field(min_length=1, description="texted on every notice")
    max_chars: int = Field(default=300, ge=20, le=2000, description="longer texts end in '…'")
    ok_status: StatusRange = Field(default=(200, 299), description="e.g. 200 or '200-299'")

    @model_validator(mode="after")
    def _template(self) -> SmsConfig:
        if self.method == "GET":
            if self.body_template is not None:
                raise ValueError("a GET sends no body: put {phone} and {text} in the URL")
            if self.url is not None and not (PHONE in self.url and TEXT in self.url):
                raise ValueError("a GET's url must contain {phone} and {text}")
            return self
        if self.body_template is None:
            raise ValueError("a POST needs body_template")
        if TEXT not in self.body_template:
            raise ValueError("body_template must contain {text}")
        if self.url is not None and PHONE not in self.url + self.body_template:
            raise ValueError("put {phone} in body_template or the url")
        # a space: valid inside a JSON string, never in a bare token ({"to": {phone}})
        sample = self.body_template.replace(PHONE, "p q").replace(TEXT, "t u")
        try:
            json.loads(sample)
        except ValueError as exc:
            raise ValueError(
                f"body_template is not JSON once filled ({exc}); put the placeholders inside "
                'strings: {"mobile": "{phone}", "content": "{text}"}'
            ) from None
        return self


class LogConfig(_Channel):
    """The local sink: notices appended as JSON lines to a file (no network needed)."""

    type: Literal["log"]
    path: Path = Field(description="e.g. var/notifications.jsonl (relative to where it runs)")


ChannelConfig = Annotated[
    WebhookConfig
    | WeComConfig
    | DingTalkConfig
    | FeishuConfig
    | SmtpConfig
    | SmsConfig
    | LogConfig,
    Field(discriminator="type"),
]


def env_value(
    channel_id: str, field: str, name: str, environ: Mapping[str, str], *, optional: bool = False
) -> str:
    """The value of the variable ``name`` that ``field`` of channel ``channel_id`` names.

    >>> env_value("duty-dingtalk", "secret_env", "MB_X", {"MB_X": "SEC1"})
    'SEC1'
    """
    value = environ.get(name)
    if value:
        return value
    state = "is empty" if value is not None else "is not set"
    fix = f"export it or remove {field}" if optional else "export it"
    raise ChannelConfigError(f"channel {channel_id!r}: {field} names {name}, which {state}; {fix}")


def env_url(channel_id: str, field: str, name: str, environ: Mapping[str, str]) -> str:
    """:func:`env_value`, checked to be an http(s) URL (the message never shows the value)."""
    url = env_value(channel_id, field, name, environ)
    try:
        return check_http_url(url)
    except ValueError as exc:
        raise ChannelConfigError(
            f"channel {channel_id!r}: {field} names {name}, whose value {exc}"
        ) from None


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(channel_id: str, field: str, value: str, environ: Mapping[str, str]) -> str:
    """``value`` with every ``${NAME}`` replaced by that variable's value."""
    return _ENV_REFERENCE.sub(
        lambda match: env_value(channel_id, field, match.group(1), environ), value
    )
