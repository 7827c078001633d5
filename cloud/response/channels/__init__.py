"""Notification channels for smart response: a robot, a webhook, e-mail or SMS each turn a
:class:`Notice` into the request its vendor documents; the ``log`` sink appends it to a
local file.

``make_channel(config, os.environ)`` makes the channel a config describes, reading the
secrets it names from the environment (a missing one is a :class:`ChannelConfigError`
naming the channel, the field and the variable).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import assert_never

from cloud.response.channels.base import Channel, DeliveryError, Notice
from cloud.response.channels.config import (
    ChannelConfig,
    ChannelConfigError,
    DingTalkConfig,
    FeishuConfig,
    LogConfig,
    SmsConfig,
    SmtpConfig,
    WebhookConfig,
    WeComConfig,
)
from cloud.response.channels.dingtalk import DingTalkChannel
from cloud.response.channels.feishu import FeishuChannel
from cloud.response.channels.log_file import LogChannel
from cloud.response.channels.sms import SmsChannel
from cloud.response.channels.smtp import SmtpChannel
from cloud.response.channels.webhook import WebhookChannel
from cloud.response.channels.wecom import WeComChannel

__all__ = [
    "Channel",
    "ChannelConfig",
    "ChannelConfigError",
    "DeliveryError",
    "Notice",
    "make_channel",
]


def make_channel(config: ChannelConfig, environ: Mapping[str, str]) -> Channel:
    """The channel ``config`` describes, its secrets read from ``environ`` now, so a missing
    variable fails at start-up rather than at the first alert.

    The registry is this match on the config's type: mypy checks that every type in
    :data:`ChannelConfig` has its channel (``assert_never``), which a dict could not.
    """
    match config:
        case WebhookConfig():
            return WebhookChannel.from_config(config, environ)
        case WeComConfig():
            return WeComChannel.from_config(config, environ)
        case DingTalkConfig():
            return DingTalkChannel.from_config(config, environ)
        case FeishuConfig():
            return FeishuChannel.from_config(config, environ)
        case SmtpConfig():
            return SmtpChannel.from_config(config, environ)
        case SmsConfig():
            return SmsChannel.from_config(config, environ)
        case LogConfig():
            return LogChannel.from_config(config, environ)
        case _:
            assert_never(config)
