"""Read a YAML config file strictly, validate it, and name every problem by path and line.

Every YAML file the project reads goes through here: the site and camera files
(:mod:`microbrain.site.loader`), a gateway's config (:mod:`edge.config`), the secrets
``microbrain up`` keeps. Strict means UTF-8 only, a key given twice in one mapping is an
error (plain YAML keeps the last value silently), NaN and infinity are refused, and every
problem reads ``gateway.yaml: 1 problem(s)\\n  line 4: cloud.keepalive_s: ...`` so that
the fix is one look away.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

_MERGE = "tag:yaml.org,2002:merge"
_FLOAT = "tag:yaml.org,2002:float"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config: where (``line 4: cloud.url``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def duplicate_ids(items: Iterable[tuple[str, str]], what: str) -> Iterator[Problem]:
    """``items`` are (path, id); a problem for every id after its first use, naming where
    the first one is (for the cross-checks every config file makes after validation)."""
    seen: dict[str, str] = {}
    for path, ident in items:
        if ident in seen:
            yield Problem(f"{path}.id", f"duplicate {what} id {ident!r} (first at {seen[ident]})")
        else:
            seen[ident] = path


class ConfigFileError(ValueError):
    """A config file that cannot be used; ``problems`` lists each one with its path."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


def format_path(parts: Iterable[str | int]) -> str:
    """``["cameras", 1, "fps"]`` → ``cameras[1].fps``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_path(path: str) -> list[str | int]:
    """The inverse of :func:`format_path`: ``cameras[1].fps`` → ``["cameras", 1, "fps"]``."""
    parts: list[str | int] = []
    for token in path.replace("]", "").replace("[", ".").split("."):
        if token:
            parts.append(int(token) if token.isdigit() else token)
    return parts


def _data_path(raw: Any, loc: tuple[Any, ...]) -> list[str | int]:
    """Follow pydantic's location through the raw data, dropping the union tags it
    inserts (e.g. the rule ``type``), so the path names keys that are in the file."""
    path: list[str | int] = []
    node = raw
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            path.append(part)
            node = node[part]
        elif (
            isinstance(node, dict)
            and isinstance(part, str)
            and part not in node
            and loc[-1] == part
        ):
            path.append(part)  # a missing required key: name it
    return path


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping, comparing the keys as
    constructed (``yes`` and ``true`` are one key): the backstop of :func:`_node_problems`,
    which names the key's path."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue  # '<<' merges may be overridden by explicit keys: that is their point
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the constructor below reports it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first at line {first})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _node_problems(root: yaml.Node) -> list[Problem]:
    """Duplicate keys and non-finite numbers, each with its line and path, found on the
    composed nodes before anything is built (each node once: aliases share nodes)."""
    problems: list[Problem] = []
    seen: set[int] = set()
    floats = yaml.constructor.SafeConstructor()
    todo: list[tuple[yaml.Node, list[str | int]]] = [(root, [])]
    while todo:
        node, parts = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                name: str | int = key.value if isinstance(key, yaml.ScalarNode) else "?"
                if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE:
                    line = key.start_mark.line + 1
                    if (key.tag, key.value) in first:
                        problems.append(
                            Problem(
                                f"line {line}: {format_path([*parts, name])}",
                                f"duplicate key {key.value!r} "
                                f"(first at line {first[key.tag, key.value]}); keep one of them",
                            )
                        )
                    else:
                        first[key.tag, key.value] = line
                todo.append((value, parts if key.tag == _MERGE else [*parts, name]))
        elif isinstance(node, yaml.SequenceNode):
            todo.extend((item, [*parts, i]) for i, item in enumerate(node.value))
        elif (
            isinstance(node, yaml.ScalarNode)
            and node.tag == _FLOAT
            and not math.isfinite(floats.construct_yaml_float(node))
        ):
            problems.append(
                Problem(
                    f"line {node.start_mark.line + 1}: {format_path(parts)}",
                    f"{node.value} is not a number a config may hold; write a finite number",
                )
            )
    return sorted(problems, key=lambda p: int(p.path.split(":")[0].removeprefix("line ")))


@dataclass(frozen=True, slots=True)
class YamlFile:
    """A YAML file read strictly: its plain data and the nodes that know each line."""

    source: str  # the file's name, as problems are reported under it
    data: Any
    root: yaml.Node | None

    def line_of(self, parts: Iterable[str | int]) -> int | None:
        """The line of the value at ``parts`` (or of the deepest part of it that exists)."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for part in parts:
            if isinstance(node, yaml.MappingNode):
                # the last match: building flattens '<<' merges into the front of the
                # mapping, and an explicit key after them is the one that counts
                node = next((v for k, v in reversed(node.value) if k.value == part), None)
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(part, int)
                and part < len(node.value)
            ):
                node = node.value[part]
            else:
                node = None
            if node is None:
                break
            line = node.start_mark.line + 1
        return line

    def located(self, problems: Iterable[Problem]) -> list[Problem]:
        """Problems whose path is a data path (``cameras[1].fps``), with the line put in
        front: for checks made after validation, on the model."""
        out = []
        for p in problems:
            line = self.line_of(parse_path(p.path))
            out.append(Problem(f"line {line}: {p.path}" if line else p.path, p.message))
        return out

    def validate(self, model: type[M], *, error: type[ConfigFileError] = ConfigFileError) -> M:
        """The file's data as ``model``; ``error`` with every problem by line and path."""
        if not isinstance(self.data, dict):
            raise error(
                self.source, [Problem("(top level)", "expected a mapping of keys to values")]
            )
        try:
            return model.model_validate(self.data)
        except ValidationError as err:
            problems = []
            for e in err.errors(include_url=False):
                parts = _data_path(self.data, e["loc"])
                line = self.line_of(parts)
                where = f"line {line}: {format_path(parts)}" if line else format_path(parts)
                problems.append(Problem(where, e["msg"].removeprefix("Value error, ")))
            raise error(self.source, problems) from None


def read_yaml(path: str | Path, *, error: type[ConfigFileError] = ConfigFileError) -> YamlFile:
    """Read one YAML file strictly (UTF-8, no duplicate key, no NaN); raise ``error``
    naming the file and each problem's line and path.

    >>> read_yaml("configs/demo/site.yaml").data["schema"]  # doctest: +SKIP
    1
    """
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise error(name, [Problem("(file)", "no such file")])
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise error(
            name,
            [
                Problem(
                    "(file)",
                    f"not UTF-8: byte {err.start} cannot be decoded; save the file as UTF-8",
                )
            ],
        ) from None
    loader = _UniqueKeyLoader(text)
    try:
        root = loader.get_single_node()
        problems = _node_problems(root) if root is not None else []
        if problems:
            raise error(name, problems)
        # one parse: the data is built from the nodes that give the lines
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        problem = Problem(where, f"not valid YAML: {getattr(err, 'problem', err)}")
        raise error(name, [problem]) from None
    finally:
        loader.dispose()
    return YamlFile(name, data, root)


def load_yaml(
    path: str | Path, model: type[M], *, error: type[ConfigFileError] = ConfigFileError
) -> M:
    """Read ``path`` strictly and validate it as ``model``; raise ``error`` if unusable."""
    return read_yaml(path, error=error).validate(model, error=error)
