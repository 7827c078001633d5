"""The notification channels against real local servers: an HTTP server that records every
request and answers as each vendor does (or fails as it may), and a real SMTP server.

Every signature is computed here from the vendor's documented algorithm, not with the
module's helper, at one fixed ``NOW``.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import email
import email.policy
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import TypeAdapter, ValidationError

from cloud.response.channels import (
    Channel,
    ChannelConfig,
    ChannelConfigError,
    DeliveryError,
    Notice,
    make_channel,
)
from cloud.response.channels.base import LINK_LABEL
from cloud.response.channels.transport import HttpChannel
from microbrain.protocol import Severity

NOW = datetime(2025, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
NOW_MS = calendar.timegm(NOW.utctimetuple()) * 1000 + NOW.microsecond // 1000
NOW_S = NOW_MS // 1000
LINK = "https://console.example.cn/ack/7?t=abc"
NOTICE = Notice(
    title="【严重】违停 · 西苑小区 3号楼",
    body="- 位置：3号楼东侧消防通道\n- 时间：16:30",
    severity=Severity.CRITICAL,
    alert_ids=(7, 9),
    link=LINK,
    mentions=("13900002222",),
)
CONFIGS: TypeAdapter[ChannelConfig] = TypeAdapter(ChannelConfig)


# -- the recording HTTP server -------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"errcode":0,"errmsg":"ok"}'
    delay_s: float = 0.0
    echo_url: bool = False  # a hostile answer: the request's path and query in the body


def answer(payload: object, status: int = 200) -> Reply:
    return Reply(status, json.dumps(payload).encode())


@dataclass
class Recorder:
    host: str
    port: int
    received: list[Received] = field(default_factory=list)
    reply: Reply = field(default_factory=Reply)
    stop: threading.Event = field(default_factory=threading.Event)

    def url(self, path_and_query: str) -> str:
        return f"http://{self.host}:{self.port}{path_and_query}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    recorder: Recorder

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out and left: the slow answer's write fails, as meant


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        rec = self.server.recorder
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        rec.received.append(Received(self.command, parts.path, parts.query, headers, body))
        reply = rec.reply
        if reply.delay_s:
            rec.stop.wait(reply.delay_s)  # cut short when the test ends
        out = self.path.encode() if reply.echo_url else reply.body
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        if 300 <= reply.status < 400:
            self.send_header("Location", "/elsewhere")
        self.end_headers()
        self.wfile.write(out)


@pytest.fixture
def server() -> Iterator[Recorder]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.recorder = Recorder("127.0.0.1", httpd.server_address[1])
    # a short poll: shutdown() waits for it, 0.5 s a test by default
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield httpd.recorder
    httpd.recorder.stop.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def closed_port() -> int:
    """A port nobody listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def made() -> Iterator[list[Channel]]:
    channels: list[Channel] = []
    yield channels
    for channel in channels:
        if isinstance(channel, HttpChannel):
            channel.close()


@pytest.fixture
def make(made: list[Channel]):
    def _make(config: dict[str, Any], environ: dict[str, str] | None = None) -> Channel:
        channel = make_channel(CONFIGS.validate_python(config), environ or {})
        made.append(channel)
        return channel

    return _make


# -- the vendors' signatures, from their documents -----------------------------------------


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    # 加签: HmacSHA256(key=secret, message=timestamp + "\n" + secret), Base64
    return base64.b64encode(
        hmac_sha256(secret.encode(), f"{timestamp_ms}\n{secret}".encode())
    ).decode()


def feishu_sign(secret: str, timestamp_s: int) -> str:
    # 签名校验: HmacSHA256(key=timestamp + "\n" + secret, message=""), Base64
    return base64.b64encode(hmac_sha256(f"{timestamp_s}\n{secret}".encode(), b"")).decode()


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "kind"),
    [
        ({"id": "hook", "type": "webhook", "url": "https://ops.example.cn/in"}, "WebhookConfig"),
        ({"id": "qw", "type": "wecom", "url_env": "MB_WECOM_URL"}, "WeComConfig"),
        (
            {"id": "dd", "type": "dingtalk", "url_env": "U", "secret_env": "S", "at_all": True},
            "DingTalkConfig",
        ),
        ({"id": "fs", "type": "feishu", "url_env": "U"}, "FeishuConfig"),
        (
            {"id": "mail", "type": "smtp", "host": "smtp.example.cn", "sender": "mb@example.cn"}
            | {"to": ["duty@example.cn"]},
            "SmtpConfig",
        ),
        (
            {"id": "sms", "type": "sms", "url": "https://sms.example.cn/send", "to": ["138001"]}
            | {"body_template": '{"mobile": "{phone}", "content": "{text}"}'},
            "SmsConfig",
        ),
    ],
)
def test_each_type_parses_with_the_defaults(config: dict[str, Any], kind: str) -> None:
    parsed = CONFIGS.validate_python(config)
    assert type(parsed).__name__ == kind
    assert (parsed.budget_per_minute, parsed.timeout_s) == (20, 5.0)


@pytest.mark.parametrize(
    ("config", "complaint"),
    [
        ({"id": "x", "type": "pager", "url": "https://a.cn"}, "does not match any of the expected"),
        ({"id": "x", "type": "wecom", "url_env": "U", "urlenv": "V"}, "Extra inputs"),
        ({"id": "x", "type": "wecom", "url": "https://qyapi.weixin.qq.com/?key=k"}, "Extra inputs"),
        ({"id": "x", "type": "webhook", "url": "https://a.cn/in", "secret": "s"}, "Extra inputs"),
        ({"id": "x", "type": "webhook", "url": "https://a.cn/in?token=t"}, "url_env instead"),
        ({"id": "x", "type": "webhook", "url": "https://u:p@a.cn/in"}, "url_env instead"),
        ({"id": "x", "type": "webhook", "url": "ftp://a.cn/in"}, "http:// or https://"),
        ({"id": "x", "type": "webhook"}, "exactly one of url"),
        ({"id": "x", "type": "webhook", "url": "https://a.cn", "url_env": "U"}, "exactly one"),
        ({"id": "X Y", "type": "feishu", "url_env": "U"}, "String should match pattern"),
        ({"id": "x", "type": "feishu", "url_env": "U", "budget_per_minute": 0}, "greater than"),
        ({"id": "x", "type": "feishu", "url_env": "U", "budget_per_minute": 601}, "less than"),
        ({"id": "x", "type": "feishu", "url_env": "U", "timeout_s": 0}, "greater than"),
        ({"id": "x", "type": "feishu", "url_env": "NOT-A-NAME"}, "String should match pattern"),
        ({"id": "x", "type": "dingtalk", "url_env": "U", "at_mobiles": ["138-1"]}, "pattern"),
        (
            {"id": "m", "type": "smtp", "host": "h", "sender": "a@b.cn", "to": []},
            "at least 1 item",
        ),
        (
            {"id": "m", "type": "smtp", "host": "h", "sender": "a@b.cn", "to": ["a@b.cn"]}
            | {"ssl": True},
            "exclude each other",
        ),
        (
            {"id": "m", "type": "smtp", "host": "h", "sender": "a@b.cn", "to": ["a@b.cn"]}
            | {"username": "u"},
            "go together",
        ),
        (
            {"id": "m", "type": "smtp", "host": "h", "sender": "a@b.cn", "to": ["not-mail"]},
            "pattern",
        ),
        (
            {"id": "s", "type": "sms", "url": "https://g.cn", "to": ["13800001111"]},
            "a POST needs body_template",
        ),
        (
            {"id": "s", "type": "sms", "url": "https://g.cn", "to": ["13800001111"]}
            | {"body_template": '{"to": {phone}, "text": "{text}"}'},
            "not JSON once filled",
        ),
        (
            {"id": "s", "type": "sms", "url": "https://g.cn", "to": ["13800001111"]}
            | {"method": "GET", "body_template": '{"t": "{text}"}'},
            "a GET sends no body",
        ),
        (
            {"id": "s", "type": "sms", "url": "https://g.cn", "to": ["13800001111"]}
            | {"body_template": '{"t": "{text}"}'},
            "put {phone} in body_template or the url",
        ),
        (
            {"id": "s", "type": "sms", "url": "https://g.cn/?to={phone}", "to": ["13800001111"]}
            | {"method": "GET"},
            "must contain {phone} and {text}",
        ),
        (
            {"id": "s", "type": "sms", "url": "https://g.cn", "to": ["13800001111"]}
            | {"body_template": '{"p": "{phone}", "t": "{text}"}'}
            | {"headers": {"X-Sign": "社区"}},
            "String should match pattern",
        ),
        (
            {"id": "s", "type": "sms", "url": "https://g.cn", "to": ["13800001111"]}
            | {"body_template": '{"p": "{phone}", "t": "{text}"}', "ok_status": "2xx"},
            "is not a status or range",
        ),
        (
            {"id": "s", "type": "sms", "url": "https://g.cn", "to": ["13800001111"]}
            | {"body_template": '{"p": "{phone}", "t": "{text}"}', "ok_status": "299-200"},
            "low first",
        ),
    ],
)
def test_a_bad_config_is_refused(config: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        CONFIGS.validate_python(config)


@pytest.mark.parametrize(
    ("ok_status", "pair"), [("200-299", (200, 299)), (204, (204, 204)), ([200, 202], (200, 202))]
)
def test_sms_ok_status_takes_a_status_or_a_range(ok_status: object, pair: tuple[int, int]) -> None:
    config = CONFIGS.validate_python(
        {"id": "s", "type": "sms", "url": "https://g.cn", "to": ["13800001111"]}
        | {"body_template": '{"p": "{phone}", "t": "{text}"}', "ok_status": ok_status}
    )
    assert config.ok_status == pair  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("config", "environ", "message"),
    [
        (
            {"id": "duty-dingtalk", "type": "dingtalk", "url_env": "MB_DD_URL"}
            | {"secret_env": "MB_DINGTALK_SECRET"},
            {"MB_DD_URL": "https://oapi.dingtalk.com/robot/send?access_token=t"},
            (
                "channel 'duty-dingtalk': secret_env names MB_DINGTALK_SECRET, which is not set; "
                "export it or remove secret_env"
            ),
        ),
        (
            {"id": "qw", "type": "wecom", "url_env": "MB_WECOM_URL"},
            {},
            "channel 'qw': url_env names MB_WECOM_URL, which is not set; export it",
        ),
        (
            {"id": "fs", "type": "feishu", "url_env": "MB_FS_URL"},
            {"MB_FS_URL": ""},
            "channel 'fs': url_env names MB_FS_URL, which is empty; export it",
        ),
        (
            {"id": "mail", "type": "smtp", "host": "h", "sender": "a@b.cn", "to": ["a@b.cn"]}
            | {"starttls": False, "username": "u", "password_env": "MB_SMTP_PASSWORD"},
            {},
            "channel 'mail': password_env names MB_SMTP_PASSWORD, which is not set",
        ),
        (
            {"id": "sms", "type": "sms", "url": "https://g.cn", "to": ["13800001111"]}
            | {"body_template": '{"p": "{phone}", "t": "{text}"}'}
            | {"headers": {"X-Key": "k ${MB_SMS_KEY}"}},
            {},
            "channel 'sms': headers['X-Key'] names MB_SMS_KEY, which is not set",
        ),
        (
            {"id": "sms", "type": "sms", "url": "https://g.cn", "to": ["13800001111"]}
            | {"body_template": '{"p": "{phone}", "t": "{text}"}'}
            | {"headers": {"X-Key": "${MB_SMS_KEY}"}},
            {"MB_SMS_KEY": "secret-path\r\nX-Injected: 1"},
            "channel 'sms': headers['X-Key'] takes a variable whose value is not printable ASCII",
        ),
        (
            {"id": "sms", "type": "sms", "url_env": "MB_SMS_URL", "to": ["13800001111"]}
            | {"method": "GET"},
            {"MB_SMS_URL": "https://g.cn/send?msg={text}"},
            "channel 'sms': neither the URL nor body_template has {phone}",
        ),
        (
            {"id": "hook", "type": "webhook", "url_env": "MB_HOOK_URL"},
            {"MB_HOOK_URL": "hooks.example.cn/secret-path"},
            "channel 'hook': url_env names MB_HOOK_URL, whose value must be an absolute",
        ),
    ],
)
def test_a_missing_variable_names_channel_field_and_variable(
    config: dict[str, Any], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ChannelConfigError) as caught:
        make_channel(CONFIGS.validate_python(config), environ)
    assert str(caught.value).startswith(message)
    assert "secret-path" not in str(caught.value)  # a variable's value is never repeated


# -- each vendor's request -----------------------------------------------------------------


def test_webhook_posts_the_notice_signed_over_the_raw_body(server: Recorder, make) -> None:
    channel = make(
        {"id": "hook", "type": "webhook", "url": server.url("/in/alerts")}
        | {"secret_env": "MB_HOOK_SECRET"},
        {"MB_HOOK_SECRET": "hook-secret"},
    )
    channel.send(NOTICE, now=NOW)

    (got,) = server.received
    assert (got.method, got.path) == ("POST", "/in/alerts")
    assert got.json() == {
        "title": NOTICE.title,
        "body": NOTICE.body,
        "severity": "critical",
        "severity_level": 3,
        "alert_ids": [7, 9],
        "link": LINK,
        "sent_at": "2025-03-01T08:30:15.123456+00:00",
    }
    expected = hmac.new(b"hook-secret", got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-microbrain-signature"] == f"sha256={expected}"
    assert got.headers["x-microbrain-timestamp"] == str(NOW_S)
    assert got.headers["content-type"].startswith("application/json")


def test_webhook_without_a_secret_is_unsigned_and_headers_are_configurable(
    server: Recorder, make
) -> None:
    info = Notice("提示", "正文", Severity.INFO, (1,))
    make(
        {"id": "hook", "type": "webhook", "url_env": "MB_HOOK_URL", "timestamp_header": "X-Ts"},
        {"MB_HOOK_URL": server.url("/h")},
    ).send(info, now=NOW)
    (got,) = server.received
    assert "x-microbrain-signature" not in got.headers
    assert got.headers["x-ts"] == str(NOW_S)
    assert got.json()["severity"] == "info" and got.json()["link"] is None


def test_wecom_posts_markdown_with_bold_title_body_and_link(server: Recorder, make) -> None:
    make(
        {"id": "qw", "type": "wecom", "url_env": "MB_WECOM_URL"},
        {"MB_WECOM_URL": server.url("/cgi-bin/webhook/send?key=wecom-key-123")},
    ).send(NOTICE, now=NOW)
    (got,) = server.received
    assert (got.path, got.params) == ("/cgi-bin/webhook/send", {"key": ["wecom-key-123"]})
    assert got.json() == {
        "msgtype": "markdown",
        "markdown": {"content": f"**{NOTICE.title}**\n{NOTICE.body}\n[{LINK_LABEL}]({LINK})"},
    }


def test_wecom_cuts_chinese_text_to_4096_bytes_on_a_character_boundary(
    server: Recorder, make
) -> None:
    long = Notice("汇总", "告警内容" * 1000, Severity.WARNING, (1,), link=LINK)  # 12 000 bytes
    make({"id": "qw", "type": "wecom", "url_env": "U"}, {"U": server.url("/send?key=k")}).send(
        long, now=NOW
    )
    content: str = server.received[0].json()["markdown"]["content"]
    assert 4090 <= len(content.encode()) <= 4096
    assert "\ufffd" not in content
    assert content.endswith(f"…（内容过长，已截断）\n[{LINK_LABEL}]({LINK})")  # the link survives
    assert content.startswith("**汇总**\n告警内容告警")


def test_dingtalk_signs_the_url_and_ats_the_mobiles_in_the_text(server: Recorder, make) -> None:
    secret = "SEC0123456789abcdef"
    make(
        {"id": "dd", "type": "dingtalk", "url_env": "MB_DD_URL", "secret_env": "MB_DD_SECRET"}
        | {"at_mobiles": ["13800001111", "13900002222"]},
        {"MB_DD_URL": server.url("/robot/send?access_token=dd-token"), "MB_DD_SECRET": secret},
    ).send(NOTICE, now=NOW)

    (got,) = server.received
    sign = dingtalk_sign(secret, NOW_MS)
    assert got.path == "/robot/send"
    assert got.query == f"access_token=dd-token&timestamp={NOW_MS}&sign={quote_plus(sign)}"
    assert got.params["sign"] == [sign]
    mobiles = ["13800001111", "13900002222"]  # the config's, then the notice's, each once
    assert got.json() == {
        "msgtype": "markdown",
        "markdown": {
            "title": NOTICE.title,
            "text": f"#### {NOTICE.title}\n\n{NOTICE.body}\n\n[{LINK_LABEL}]({LINK})"
            "\n\n@13800001111 @13900002222",
        },
        "at": {"atMobiles": mobiles, "isAtAll": False},
    }


def test_dingtalk_without_a_secret_sends_no_signature(server: Recorder, make) -> None:
    make(
        {"id": "dd", "type": "dingtalk", "url_env": "U", "at_all": True},
        {"U": server.url("/robot/send?access_token=t")},
    ).send(Notice("t", "b", Severity.INFO, (1,)), now=NOW)
    (got,) = server.received
    assert got.query == "access_token=t"
    assert got.json()["at"] == {"atMobiles": [], "isAtAll": True}
    assert got.json()["markdown"]["text"] == "#### t\n\nb"


@pytest.mark.parametrize(
    ("severity", "colour", "button"),
    [(Severity.CRITICAL, "red", "danger"), (Severity.WARNING, "orange", "primary")]
    + [(Severity.INFO, "blue", "primary")],
)
def test_feishu_card_colour_follows_severity_and_the_body_is_signed(
    server: Recorder, make, severity: Severity, colour: str, button: str
) -> None:
    secret = "feishu-secret"
    server.reply = answer({"code": 0, "msg": "success", "data": {}})
    notice = Notice("【告警】烟感", "**3号楼** 烟感报警", severity, (3,), link=LINK)
    make(
        {"id": "fs", "type": "feishu", "url_env": "MB_FS_URL", "secret_env": "MB_FS_SECRET"},
        {"MB_FS_URL": server.url("/open-apis/bot/v2/hook/fs-token"), "MB_FS_SECRET": secret},
    ).send(notice, now=NOW)

    (got,) = server.received
    assert (got.path, got.query) == ("/open-apis/bot/v2/hook/fs-token", "")
    assert got.json() == {
        "timestamp": str(NOW_S),
        "sign": feishu_sign(secret, NOW_S),
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": True},
            "header": {
                "title": {"tag": "plain_text", "content": "【告警】烟感"},
                "template": colour,
            },
            "elements": [
                {"tag": "markdown", "content": "**3号楼** 烟感报警"},
                {
                    "tag": "action",
                    "actions": [
                        {
                            "tag": "button",
                            "text": {"tag": "plain_text", "content": LINK_LABEL},
                            "type": button,
                            "url": LINK,
                        }
                    ],
                },
            ],
        },
    }


@pytest.mark.parametrize("reply", [{"code": 0, "msg": "success"}, {"StatusCode": 0}])
def test_feishu_unsigned_without_a_link_has_no_button(
    server: Recorder, make, reply: dict[str, object]
) -> None:
    server.reply = answer(reply)
    make({"id": "fs", "type": "feishu", "url_env": "U"}, {"U": server.url("/hook/t")}).send(
        Notice("t", "b", Severity.INFO, (1,)), now=NOW
    )
    body = server.received[0].json()
    assert "sign" not in body and "timestamp" not in body
    assert body["card"]["elements"] == [{"tag": "markdown", "content": "b"}]


def sms_config(url: str | None, **extra: object) -> dict[str, Any]:
    return {
        "id": "sms",
        "type": "sms",
        "url": url,
        "to": ["13800001111"],
        "headers": {"Authorization": "Bearer ${MB_SMS_TOKEN}", "X-Sign-Name": "mb"},
        "body_template": '{"mobile": "{phone}", "content": "{text}", "sign": "社区"}',
    } | extra


def test_sms_fills_the_template_json_escaped_for_every_recipient(server: Recorder, make) -> None:
    # quotes, a backslash, a newline, and a placeholder in the text that must stay text
    hostile = Notice(
        'He said "快走" \\ now',
        "第一行\n第二行 {phone}",
        Severity.CRITICAL,
        (1,),
        LINK,
        mentions=("13900002222", "13800001111"),
    )
    make(sms_config(server.url("/sms/send")), {"MB_SMS_TOKEN": "tok-42"}).send(hostile, now=NOW)

    assert [r.json()["mobile"] for r in server.received] == ["13800001111", "13900002222"]
    for got in server.received:
        assert got.method == "POST"
        assert got.json()["content"] == f"{hostile.title}\n{hostile.body}\n{LINK}"
        assert got.json()["sign"] == "社区"
        assert got.headers["authorization"] == "Bearer tok-42"
        assert got.headers["content-type"].startswith("application/json")
        assert "快走".encode() in got.body  # UTF-8 as written, not \u escapes


def test_sms_cuts_long_text_with_an_ellipsis_keeping_the_link(server: Recorder, make) -> None:
    long = Notice("标题", "很长的正文" * 100, Severity.WARNING, (1,), LINK)
    make(sms_config(server.url("/s"), max_chars=80), {"MB_SMS_TOKEN": "t"}).send(long, now=NOW)
    text: str = server.received[0].json()["content"]
    assert len(text) == 80
    assert text.endswith(f"…\n{LINK}") and text.startswith("标题\n很长的正文")


def test_sms_by_get_puts_the_placeholders_in_the_query(server: Recorder, make) -> None:
    config = sms_config(
        server.url("/api?to={phone}&msg={text}&user=mb"), method="GET", body_template=None
    )
    make(config, {"MB_SMS_TOKEN": "t"}).send(NOTICE, now=NOW)
    got = server.received[1]
    assert got.method == "GET" and got.body == b""
    assert got.params == {
        "to": ["13900002222"],
        "msg": [f"{NOTICE.title}\n{NOTICE.body}\n{LINK}"],
        "user": ["mb"],
    }


def test_smtp_delivers_a_utf8_subject_the_body_and_the_link() -> None:
    with smtp_server() as (host, port, mails):
        channel = make_channel(
            CONFIGS.validate_python(
                {"id": "mail", "type": "smtp", "host": host, "port": port, "starttls": False}
                | {"sender": "mb@example.cn", "sender_name": "社区微脑"}
                | {"to": ["duty@example.cn", "lead@example.cn"], "timeout_s": 2}
            ),
            {},
        )
        channel.send(NOTICE, now=NOW)
    (mail,) = mails
    assert mail.mail_from == "mb@example.cn"
    assert mail.rcpt_tos == ["duty@example.cn", "lead@example.cn"]
    message = email.message_from_bytes(mail.content, policy=email.policy.default)
    assert message["Subject"] == NOTICE.title
    assert "=?utf-8?" in mail.content.decode().lower()  # encoded on the wire, not raw bytes
    assert message["To"] == "duty@example.cn, lead@example.cn"
    assert message["From"] == "社区微脑 <mb@example.cn>"
    text = message.get_body().get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert NOTICE.body in text and LINK in text


@pytest.mark.parametrize(("password", "delivered"), [("right", True), ("wrong", False)])
def test_smtp_logs_in_with_the_password_from_the_environment(
    password: str, delivered: bool
) -> None:
    with smtp_server(login=("mb", "right")) as (host, port, mails):
        channel = make_channel(
            CONFIGS.validate_python(
                {"id": "mail", "type": "smtp", "host": host, "port": port, "starttls": False}
                | {"username": "mb", "password_env": "MB_SMTP_PASSWORD"}
                | {"sender": "mb@example.cn", "to": ["duty@example.cn"], "timeout_s": 2}
            ),
            {"MB_SMTP_PASSWORD": password},
        )
        if delivered:
            channel.send(NOTICE, now=NOW)
        else:
            with pytest.raises(DeliveryError, match="refused the login of 'mb' \\(535\\)") as e:
                channel.send(NOTICE, now=NOW)
            assert password not in str(e.value)
    assert len(mails) == int(delivered)


# -- failures ------------------------------------------------------------------------------

ROBOTS: dict[str, tuple[dict[str, Any], str]] = {
    # kind: (config, the URL path and query its variable holds)
    "webhook": ({"type": "webhook", "url_env": "U", "secret_env": "S"}, "/hook/in"),
    "wecom": ({"type": "wecom", "url_env": "U"}, "/cgi-bin/webhook/send?key=wecom-key-123"),
    "dingtalk": (
        {"type": "dingtalk", "url_env": "U", "secret_env": "S"},
        "/robot/send?access_token=dd-token-456",
    ),
    "feishu": (
        {"type": "feishu", "url_env": "U", "secret_env": "S"},
        "/open-apis/bot/v2/hook/fs-token-789abc",
    ),
    "sms": (  # ok_status 200 alone: a 202 is a refusal too
        sms_config(None, url_env="U") | {"headers": {"X-Key": "${S}"}, "ok_status": 200},
        "/sms?account=gw-account-007",
    ),
}
SECRET = "SECsigning-secret-value"


def robot(kind: str, port: int, timeout_s: float = 2.0) -> Channel:
    config, path = ROBOTS[kind]
    return make_channel(
        CONFIGS.validate_python({"id": f"t-{kind}", "timeout_s": timeout_s} | config),
        {"U": f"http://127.0.0.1:{port}{path}", "S": SECRET},
    )


def assert_no_secret(message: str, kind: str) -> None:
    for word in (SECRET, "wecom-key-123", "dd-token-456", "fs-token-789abc", "gw-account-007"):
        assert word not in message, f"{kind}: {word!r} in {message!r}"
    assert "sign=" not in message


@pytest.mark.parametrize(
    ("kind", "reply", "expected"),
    [
        ("wecom", answer({"errcode": 45009, "errmsg": "api freq out of limit"}), "errcode 45009"),
        ("dingtalk", answer({"errcode": 310000, "errmsg": "sign not match"}), "errcode 310000"),
        ("feishu", answer({"code": 19021, "msg": "sign match fail"}), "Feishu code 19021"),
        ("feishu", answer({"StatusCode": 9499, "StatusMessage": "Bad Request"}), "code 9499"),
        ("feishu", answer({"ok": True}), "neither code nor StatusCode"),
        ("wecom", Reply(200, b"<html>gateway</html>"), "without a JSON object"),
        ("dingtalk", answer([0]), "without a JSON object"),
        ("sms", Reply(202, b"queued"), "HTTP 202"),  # outside its ok_status
        *[(kind, Reply(500, b"oops"), "HTTP 500") for kind in ROBOTS],
        *[(kind, Reply(502, echo_url=True), "HTTP 502") for kind in ROBOTS],
        ("webhook", Reply(302, b""), "HTTP 302"),  # redirects are not followed
    ],
)
def test_a_refusal_is_a_delivery_error_without_secrets(
    server: Recorder, kind: str, reply: Reply, expected: str, made: list[Channel]
) -> None:
    server.reply = reply
    channel = robot(kind, server.port)
    made.append(channel)
    with pytest.raises(DeliveryError, match=expected) as caught:
        channel.send(NOTICE, now=NOW)
    assert f"127.0.0.1:{server.port}" in str(caught.value) or "code" in str(caught.value)
    assert_no_secret(str(caught.value), kind)


@pytest.mark.parametrize("kind", ROBOTS)
def test_a_slow_answer_is_a_timeout(server: Recorder, kind: str, made: list[Channel]) -> None:
    server.reply = Reply(delay_s=5.0)
    channel = robot(kind, server.port, timeout_s=0.3)
    made.append(channel)
    with pytest.raises(DeliveryError, match=r"no answer from .* within 0\.3 s") as caught:
        channel.send(NOTICE, now=NOW)
    assert_no_secret(str(caught.value), kind)


@pytest.mark.parametrize("kind", ROBOTS)
def test_a_closed_port_is_a_delivery_error(
    closed_port: int, kind: str, made: list[Channel]
) -> None:
    channel = robot(kind, closed_port)
    made.append(channel)
    with pytest.raises(DeliveryError, match="could not reach") as caught:
        channel.send(NOTICE, now=NOW)
    assert_no_secret(str(caught.value), kind)


def test_sms_names_each_number_it_could_not_text(server: Recorder, make) -> None:
    server.reply = Reply(503, b"busy")
    channel = make(sms_config(server.url("/s")), {"MB_SMS_TOKEN": "tok-42"})
    with pytest.raises(DeliveryError) as caught:
        channel.send(NOTICE, now=NOW)
    assert len(server.received) == 2  # the first failure did not stop the second number
    assert "138****1111: HTTP 503" in str(caught.value)
    assert "139****2222: HTTP 503" in str(caught.value)
    assert "tok-42" not in str(caught.value)


def test_smtp_closed_port_is_a_delivery_error(closed_port: int) -> None:
    channel = make_channel(
        CONFIGS.validate_python(
            {"id": "mail", "type": "smtp", "host": "127.0.0.1", "port": closed_port}
            | {"starttls": False, "sender": "mb@example.cn", "to": ["duty@example.cn"]}
        ),
        {},
    )
    with pytest.raises(DeliveryError, match="could not deliver to the SMTP server"):
        channel.send(NOTICE, now=NOW)


# -- a real SMTP server --------------------------------------------------------------------


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


class _Inbox:
    def __init__(self) -> None:
        self.mails: list[Mail] = []

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
        self, server: object, session: object, envelope: Any
    ) -> str:
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


class _FreePortController(Controller):
    """aiosmtpd's Controller on port 0: its start-up probe needs the port the OS chose."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class _Login:
    def __init__(self, user: str, password: str) -> None:
        self.expected = LoginPassword(user.encode(), password.encode())

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        # handled=False: aiosmtpd then answers 535 itself (handled=True would stay silent)
        return AuthResult(success=auth_data == self.expected, handled=False)


@contextmanager
def smtp_server(login: tuple[str, str] | None = None) -> Iterator[tuple[str, int, list[Mail]]]:
    """A real SMTP server on a free port: (host, port, the mails it took)."""
    inbox = _Inbox()
    extra: dict[str, Any] = {}
    if login is not None:
        extra = {"authenticator": _Login(*login), "auth_require_tls": False}
    controller = _FreePortController(inbox, hostname="127.0.0.1", port=0, **extra)
    controller.start()
    try:
        yield "127.0.0.1", controller.port, inbox.mails
    finally:
        controller.stop()
