"""E-mail: one plain-text message a notice, through an SMTP server.

Python's own ``smtplib`` and ``email.message.EmailMessage`` (standard library documentation,
"smtplib — SMTP protocol client", https://docs.python.org/3/library/smtplib.html, and
"email.message: Representing an email message",
https://docs.python.org/3/library/email.message.html): the subject is the notice's title,
encoded as RFC 2047 UTF-8 when it is not ASCII; the body is the notice's text and the console
link. ``timeout_s`` bounds every blocking step (connect, TLS, each command).
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

from cloud.response.channels.base import LINK_LABEL, DeliveryError, Notice
from cloud.response.channels.config import SmtpConfig, env_value


@dataclass(frozen=True, slots=True)
class SmtpSecrets:
    password: str | None = None


def read_secrets(config: SmtpConfig, environ: Mapping[str, str]) -> SmtpSecrets:
    if config.password_env is None:
        return SmtpSecrets()
    return SmtpSecrets(env_value(config.id, "password_env", config.password_env, environ))


def build_message(config: SmtpConfig, notice: Notice, now: datetime) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = notice.title
    message["From"] = formataddr((config.sender_name, config.sender))
    message["To"] = ", ".join(config.to)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=config.sender.rpartition("@")[2])
    text = notice.body
    if notice.link:
        text += f"\n\n{LINK_LABEL}：{notice.link}"
    message.set_content(text + "\n")
    return message


class SmtpChannel:
    def __init__(self, config: SmtpConfig, secrets: SmtpSecrets) -> None:
        self.id = config.id
        self.budget_per_minute = config.budget_per_minute
        self.config = config
        self._secrets = secrets

    @classmethod
    def from_config(cls, config: SmtpConfig, environ: Mapping[str, str]) -> SmtpChannel:
        return cls(config, read_secrets(config, environ))

    def close(self) -> None:
        """Nothing held between sends (a connection a message), like the HTTP channels'."""

    def send(self, notice: Notice, *, now: datetime) -> None:
        message = build_message(self.config, notice, now)
        where = f"the SMTP server {self.config.host}:{self.config.port}"
        try:
            refused = self._deliver(message)
        except TimeoutError:
            raise DeliveryError(
                f"no answer from {where} within {self.config.timeout_s:g} s"
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(
                f"{where} refused every recipient: {_who(exc.recipients)}"
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"{where} refused the login of {self.config.username!r} "
                f"({exc.smtp_code}); check password_env"
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"{where} answered {exc.smtp_code}: {_text(exc.smtp_error)}"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"could not deliver to {where}: {type(exc).__name__}: {exc}"
            ) from None
        if refused:
            # the others have it: saying so lets the operator fix the one address
            raise DeliveryError(f"{where} refused {_who(refused)}; the others were sent it")

    def _deliver(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        config, timeout = self.config, self.config.timeout_s
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if config.ssl:
            client = smtplib.SMTP_SSL(config.host, config.port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(config.host, config.port, timeout=timeout)
        with client:
            if config.starttls:
                client.starttls(context=context)
            if config.username is not None and self._secrets.password is not None:
                client.login(config.username, self._secrets.password)
            return client.send_message(message)


def _who(refused: Mapping[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{address} ({code} {_text(why)})" for address, (code, why) in refused.items())


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply
