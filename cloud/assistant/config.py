"""The assistant's words (``configs/assistant.yaml``): topics, the alert kinds each
counts and the words that mean it. Read by the project's strict loader; the checks one
model cannot make (an id, a word or a kind twice) are reported by line and path."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from microbrain.config_files import ConfigFileError, Problem, YamlFile, parse_path, read_yaml
from microbrain.site.common import Id, Name, Strict

Word = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\S{2,20}$")]


class AssistantConfigError(ConfigFileError):
    """An assistant file that cannot be used; ``problems`` names each by line."""


def normalise(text: str) -> str:
    """NFKC (full-width digits and punctuation to plain) and lower case."""
    return unicodedata.normalize("NFKC", text).lower()


class Sensor(Strict):
    """A topic answered by readings: "3号楼的消防栓压力怎么样"."""

    kind: Id = Field(description="the readings' kind, e.g. hydrant_pressure")
    field: Id = Field(description="the value shown, e.g. pressure_mpa")
    unit: str = Field(default="", max_length=16)
    warnings: dict[Id, Name] = Field(
        default={}, description="alert kind → what to say while one is open at the sensor"
    )


class Topic(Strict):
    """What people ask about (违停), the alert kinds it counts and the words for it."""

    id: Id
    name: Name = Field(description="zh-CN, shown in the interpretation line")
    kinds: list[Id] = Field(min_length=1)
    words: list[Word] = Field(min_length=1, description="two characters or more, no spaces")
    sensor: Sensor | None = None


class AssistantConfig(Strict):
    schema_version: Literal[1] = Field(default=1, alias="schema")
    topics: list[Topic] = Field(min_length=1)


def default_path() -> Path:
    """The shipped file (configs/ beside the packages, as the appeal categories')."""
    return Path(__file__).resolve().parents[2] / "configs" / "assistant.yaml"


def verify(model: AssistantConfig, doc: YamlFile | None = None) -> Iterator[Problem]:
    def where(path: str) -> str:
        line = doc.line_of(parse_path(path)) if doc is not None else None
        return f"line {line}" if line is not None else path

    ids: dict[str, str] = {}
    words: dict[str, str] = {}
    kinds: dict[str, str] = {}
    for i, topic in enumerate(model.topics):
        path = f"topics[{i}]"
        if topic.id in ids:
            yield Problem(
                f"{path}.id", f"duplicate topic {topic.id!r} (first at {where(ids[topic.id])})"
            )
        ids.setdefault(topic.id, f"{path}.id")
        for k, kind in enumerate(topic.kinds):
            if kind in kinds:
                yield Problem(
                    f"{path}.kinds[{k}]",
                    f"kind {kind!r} is already counted by another topic (at {where(kinds[kind])})",
                )
            kinds.setdefault(kind, f"{path}.kinds[{k}]")
        for w, word in enumerate(topic.words):
            key = normalise(word)
            if key in words:
                yield Problem(
                    f"{path}.words[{w}]",
                    f"word {word!r} is listed twice (first at {where(words[key])}); "
                    "a word may mean one topic only",
                )
            words.setdefault(key, f"{path}.words[{w}]")


def load_config(path: str | Path | None = None) -> AssistantConfig:
    """Read, validate and cross-check an assistant file (the shipped one by default)."""
    path = default_path() if path is None else path
    doc = read_yaml(path, error=AssistantConfigError)
    model = doc.validate(AssistantConfig, error=AssistantConfigError)
    problems = list(verify(model, doc))
    if problems:
        raise AssistantConfigError(doc.source, doc.located(problems))
    return model
