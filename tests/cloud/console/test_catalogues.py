"""The message catalogues: every language has exactly zh-CN's keys, every key a template
or a console route asks for exists, and no page loads anything from another host."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cloud.console import i18n
from cloud.console.templating import TEMPLATES_DIR

CONSOLE = Path(i18n.__file__).parent
# t("a.b") / t('a.b') with a literal key; keys built at run time ("status." ~ x) are
# checked by the prefix tables below
LITERAL_KEY = re.compile(r"""\bt\(\s*["']([a-z0-9_.]+)["']\s*[,)]""")
DYNAMIC_PREFIX = re.compile(r"""\bt\(\s*["']([a-z0-9_.]+)["']\s*~""")


def _sources() -> list[Path]:
    return [*TEMPLATES_DIR.rglob("*.html"), *CONSOLE.rglob("*.py")]


@pytest.mark.parametrize("language", [lang for lang in i18n.LANGUAGES if lang != "zh-CN"])
def test_every_language_has_exactly_the_default_keys(language: str) -> None:
    default = set(i18n.catalogue("zh-CN").messages)
    other = set(i18n.catalogue(language).messages)
    assert not default - other, f"{language} lacks {sorted(default - other)}"
    assert not other - default, f"{language} has keys zh-CN lacks: {sorted(other - default)}"


def test_every_literal_key_used_exists() -> None:
    messages = i18n.catalogue("zh-CN").messages
    used = [k for path in _sources() for k in LITERAL_KEY.findall(path.read_text("utf-8"))]
    assert len(used) > 20, "the scan found almost no keys: the pattern is broken"
    missing = {
        f"{path.relative_to(CONSOLE)}: {key}"
        for path in _sources()
        for key in LITERAL_KEY.findall(path.read_text(encoding="utf-8"))
        if key not in messages
    }
    assert not missing, sorted(missing)


def test_every_prefix_of_a_built_key_has_messages() -> None:
    messages = i18n.catalogue("zh-CN").messages
    prefixes = {p for path in _sources() for p in DYNAMIC_PREFIX.findall(path.read_text("utf-8"))}
    assert prefixes, "the scan found no built keys: the pattern is broken"
    empty = sorted(p for p in prefixes if not any(k.startswith(p) for k in messages))
    assert not empty, empty


@pytest.mark.parametrize(
    ("prefix", "values"),
    [
        ("status.", ("open", "acknowledged", "dispatched", "resolved", "closed")),
        ("severity.", ("info", "warning", "critical")),
        ("levels.", ("building", "compound", "community", "district")),
        ("roles.", ("duty", "supervisor", "engineer", "admin")),
        ("verdicts.", ("confirmed", "false_positive")),
    ],
)
def test_the_built_keys_cover_every_value(prefix: str, values: tuple[str, ...]) -> None:
    messages = i18n.catalogue("zh-CN").messages
    assert [v for v in values if prefix + v not in messages] == []


def test_a_missing_key_shows_the_key_and_is_counted() -> None:
    before = i18n.MISSING.labels("en")._value.get()
    assert i18n.catalogue("en").t("no.such.key") == "no.such.key"
    assert i18n.MISSING.labels("en")._value.get() == before + 1


def test_no_page_loads_from_another_host() -> None:
    # src=/href= to http(s):// or a protocol-relative //host in a template or a static file
    remote = re.compile(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", re.IGNORECASE)
    offenders = [
        str(path.relative_to(CONSOLE))
        for path in [*TEMPLATES_DIR.rglob("*.html"), *(CONSOLE / "static").glob("*.*")]
        if remote.search(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert offenders == []


def test_derived_kinds_are_named_from_their_base() -> None:
    from cloud.console.i18n import catalogue

    zh, en = catalogue("zh-CN"), catalogue("en")
    assert zh.kind("hydrant_pressure_low_warning") == "消火栓水压低预警"
    assert zh.kind("elevator_fault_rate_high") == "电梯故障偏多"
    assert en.kind("elevator_fault") == "Elevator fault"
    # an unknown base, or no suffix at all: the kind as it is
    assert zh.kind("mystery_warning") == "mystery_warning"
    assert zh.kind("_warning") == "_warning"
    assert zh.kind("something_else") == "something_else"
