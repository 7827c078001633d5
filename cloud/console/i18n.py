"""The console's words: one message catalogue per language (``messages/<lang>.yaml``).

Templates say ``t("queue.title")``; the catalogue is nested YAML read by the project's
strict loader (a key given twice is an error, with its line), flattened to dotted keys.
zh-CN is the default; every language must have exactly the keys zh-CN has (a test checks,
and another checks that every key a template or a route uses exists).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from cloud.kind_names import kind_name
from microbrain.config_files import read_yaml

log = logging.getLogger(__name__)

LANGUAGES: tuple[str, ...] = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"
MESSAGES_DIR = Path(__file__).parent / "messages"
MISSING = Counter(
    "mb_console_missing_messages_total",
    "console strings asked for that the language's catalogue lacks (shown as the key)",
    ["language"],
)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, str):
            out[name] = value
        else:
            raise ValueError(f"message {name!r} is {type(value).__name__}, not text")
    return out


def _section(messages: Mapping[str, str], prefix: str) -> dict[str, str]:
    return {k[len(prefix) :]: v for k, v in messages.items() if k.startswith(prefix)}


class Catalogue:
    """The messages of one language; ``t(key, **values)`` formats one."""

    def __init__(self, language: str, messages: Mapping[str, str]) -> None:
        self.language = language
        self.messages = dict(messages)
        self._kinds = _section(self.messages, "kinds.")
        self._suffixes = _section(self.messages, "kind_suffix.")

    def t(self, key: str, /, **values: Any) -> str:
        text = self.messages.get(key)
        if text is None:
            MISSING.labels(self.language).inc()
            log.warning("console message %r missing in %s", key, self.language)
            return key
        return text.format(**values) if values else text

    def get(self, key: str, default: str) -> str:
        """The message, or ``default`` when there is none (for names from the site's
        config, such as alert kinds, which a catalogue cannot list in full)."""
        return self.messages.get(key, default)

    def kind(self, kind: str) -> str:
        """An alert kind's name: its own, or its base's with the derived suffix's
        (``hydrant_pressure_low_warning`` → 消火栓水压低预警), else the kind itself."""
        return kind_name(kind, self._kinds, self._suffixes)

    __call__ = t


@cache
def catalogue(language: str) -> Catalogue:
    """The catalogue of ``language`` (one of LANGUAGES), read once per process."""
    if language not in LANGUAGES:
        raise ValueError(f"no console language {language!r}; choose one of {LANGUAGES}")
    file = read_yaml(MESSAGES_DIR / f"{language}.yaml")
    if not isinstance(file.data, Mapping):
        raise ValueError(f"{file.source}: expected a mapping of message keys")
    return Catalogue(language, _flatten(file.data))


def pick_language(cookie: str | None) -> str:
    """The user's choice (the language cookie), else zh-CN. The browser's
    Accept-Language is not consulted: the console is zh-CN first, English by a click."""
    return cookie if cookie in LANGUAGES else DEFAULT_LANGUAGE
