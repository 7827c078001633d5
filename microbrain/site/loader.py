"""Load a site or camera YAML file, validate it, and explain every problem by path.

Errors read ``site.yaml:42 communities[0].compounds[2].cameras[1].zones[0].polygon:
needs at least 3 points`` so that the fix is one look away.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from microbrain.site.cameras import Camera
from microbrain.site.model import Site
from microbrain.site.verify import Problem, verify_camera, verify_site

M = TypeVar("M", bound=BaseModel)


class SiteError(ValueError):
    """A config file that cannot be used; ``problems`` lists each one with its path."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


def _format_path(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _data_path(raw: Any, loc: tuple[Any, ...]) -> list[str | int]:
    """Follow pydantic's location through the raw data, dropping the union tags it
    inserts (e.g. the rule ``type``), so the path names keys that are in the file."""
    path: list[str | int] = []
    node = raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part not in node and loc[-1] == part:
            path.append(part)  # a missing required key: name it
    return path


def _line_of(root: yaml.Node | None, parts: list[str | int]) -> int | None:
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in parts:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping.

    Plain YAML keeps the last value silently, so a second ``rules:`` under a zone (or a
    pasted sensor) would quietly replace the first; here it is an error with both lines.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<' merges may be overridden by explicit keys: that is their point
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the constructor below reports it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"duplicate key {key!r} (first at line {first})", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> tuple[Any, yaml.Node | None, str]:
    name = str(path)
    if not path.is_file():
        raise SiteError(name, [Problem("(file)", "no such file")])
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SiteError(name, [Problem("(file)", f"not UTF-8: byte {err.start} cannot be decoded; "
                                       "save the file as UTF-8")]) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader), yaml.compose(text), text  # a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise SiteError(name, [Problem(where, f"not valid YAML: {getattr(err, 'problem', err)}")]) from None


def _validate(model: type[M], raw: Any, root: yaml.Node | None, name: str) -> M:
    if not isinstance(raw, dict):
        raise SiteError(name, [Problem("(top level)", "expected a mapping of keys to values")])
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        problems = []
        for e in err.errors(include_url=False):
            parts = _data_path(raw, e["loc"])
            line = _line_of(root, parts)
            where = f"line {line}: {_format_path(parts)}" if line else _format_path(parts)
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(Problem(where, msg))
        raise SiteError(name, problems) from None


def _with_lines(problems: list[Problem], root: yaml.Node | None) -> list[Problem]:
    out = []
    for p in problems:
        parts: list[str | int] = []
        for token in p.path.replace("]", "").replace("[", ".").split("."):
            if token:
                parts.append(int(token) if token.isdigit() else token)
        line = _line_of(root, parts)
        out.append(Problem(f"line {line}: {p.path}" if line else p.path, p.message))
    return out


def load_site(path: str | Path) -> Site:
    """Read, validate and cross-check a site file; raise :class:`SiteError` if unusable.

    >>> site = load_site("configs/demo/site.yaml")  # doctest: +SKIP
    """
    path = Path(path)
    raw, root, _ = _read_yaml(path)
    site = _validate(Site, raw, root, str(path))
    problems = verify_site(site, base=path.parent)
    if problems:
        raise SiteError(str(path), _with_lines(problems, root))
    return site


def load_camera(path: str | Path) -> Camera:
    """Read a stand-alone camera file (for ``edge analyze``)."""
    path = Path(path)
    raw, root, _ = _read_yaml(path)
    camera = _validate(Camera, raw, root, str(path))
    problems = list(verify_camera(camera, "", path.parent))
    if problems:
        raise SiteError(str(path), _with_lines([Problem(p.path.lstrip("."), p.message) for p in problems], root))
    return camera
