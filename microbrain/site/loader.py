"""Load a site or camera YAML file, validate it, and explain every problem by path.

Errors read ``site.yaml:42 communities[0].compounds[2].cameras[1].zones[0].polygon:
needs at least 3 points`` so that the fix is one look away. The strict reading itself
(UTF-8, no duplicate key, no NaN, lines for every path) is :mod:`microbrain.config_files`,
shared with every other YAML file the project reads.

:func:`site_sources` keeps the lines after loading: where each node of the tree (a
community, a gateway, the escalation block …) sits in the file, for the console's site
page. A site file holds its whole tree (cameras sit under their gateway; no other file
is included), so every source names the one file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from microbrain.config_files import ConfigFileError, Problem, YamlFile, read_yaml
from microbrain.site.cameras import Camera
from microbrain.site.model import Site
from microbrain.site.verify import verify_camera, verify_site


class SiteError(ConfigFileError):
    """A site or camera file that cannot be used; ``problems`` lists each one with its path."""


def load_site(path: str | Path) -> Site:
    """Read, validate and cross-check a site file; raise :class:`SiteError` if unusable.

    >>> site = load_site("configs/demo/site.yaml")  # doctest: +SKIP
    """
    path = Path(path)
    doc = read_yaml(path, error=SiteError)
    site = doc.validate(Site, error=SiteError)
    problems = verify_site(site, base=path.parent)
    if problems:
        raise SiteError(doc.source, doc.located(problems))
    return site


def load_site_with_sources(path: str | Path) -> tuple[Site, dict[str, str]]:
    """:func:`load_site` and :func:`site_sources` from one reading of the file."""
    path = Path(path)
    doc = read_yaml(path, error=SiteError)
    site = doc.validate(Site, error=SiteError)
    problems = verify_site(site, base=path.parent)
    if problems:
        raise SiteError(doc.source, doc.located(problems))
    return site, sources_of(doc)


def site_sources(path: str | Path) -> dict[str, str]:
    """Where each node of a site file's tree is declared: ``{"community:xiyuan":
    "configs/demo/site.yaml:98", ...}`` (the file as given, relative if it was).

    Keys: ``district``, ``escalation``, ``department:ID``, ``sensor_profile:ID``,
    ``community:C``, ``compound:C/K``, ``building:C/K/B``, ``gateway:G``,
    ``camera:G/ID``, ``sensor:G/ID`` (the ids the tables are keyed by). A node points at
    the line of its ``id``; the escalation block at its key. The file is read strictly
    but not validated: call it on a file :func:`load_site` accepted."""
    return sources_of(read_yaml(path, error=SiteError))


def sources_of(doc: YamlFile) -> dict[str, str]:
    """:func:`site_sources` of a file already read."""
    data = doc.data if isinstance(doc.data, dict) else {}
    out: dict[str, str] = {}

    def note(key: str, parts: list[str | int]) -> None:
        line = doc.line_of(parts)
        if line is not None:
            out.setdefault(key, f"{doc.source}:{line}")

    if isinstance(data.get("district"), dict):
        note("district", ["district", "id"])
    if "escalation" in data:
        line = _key_line(doc.root, "escalation")
        if line is not None:
            out["escalation"] = f"{doc.source}:{line}"
    for i, dept in _items(data, "departments"):
        note(f"department:{dept}", ["departments", i, "id"])
    for i, profile in _items(data, "sensor_profiles"):
        note(f"sensor_profile:{profile}", ["sensor_profiles", i, "id"])
    for ci, community, cdata in _nodes(data, "communities"):
        cparts: list[str | int] = ["communities", ci]
        note(f"community:{community}", [*cparts, "id"])
        for ki, compound, kdata in _nodes(cdata, "compounds"):
            kparts = [*cparts, "compounds", ki]
            note(f"compound:{community}/{compound}", [*kparts, "id"])
            for bi, building in _items(kdata, "buildings"):
                note(
                    f"building:{community}/{compound}/{building}", [*kparts, "buildings", bi, "id"]
                )
            for gi, gateway, gdata in _nodes(kdata, "gateways"):
                gparts = [*kparts, "gateways", gi]
                note(f"gateway:{gateway}", [*gparts, "id"])
                for kind, plural in (("camera", "cameras"), ("sensor", "sensors")):
                    for di, device in _items(gdata, plural):
                        note(f"{kind}:{gateway}/{device}", [*gparts, plural, di, "id"])
    return out


def _nodes(data: Any, key: str) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """The items of the list ``data[key]`` that are mappings with a text ``id``."""
    items = data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list):
        return
    for i, item in enumerate(items):
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            yield i, item["id"], item


def _items(data: Any, key: str) -> Iterator[tuple[int, str]]:
    for i, item_id, _ in _nodes(data, key):
        yield i, item_id


def _key_line(root: yaml.Node | None, key: str) -> int | None:
    """The line of a top-level key (``line_of`` gives its value's, which for a block
    starts at its first entry, after any comment)."""
    if not isinstance(root, yaml.MappingNode):
        return None
    for k, _ in reversed(root.value):
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return int(k.start_mark.line) + 1
    return None


def load_camera(path: str | Path) -> Camera:
    """Read a stand-alone camera file (for ``edge analyze``)."""
    path = Path(path)
    doc = read_yaml(path, error=SiteError)
    camera = doc.validate(Camera, error=SiteError)
    problems = list(verify_camera(camera, "", path.parent))
    if problems:
        located = doc.located([Problem(p.path.lstrip("."), p.message) for p in problems])
        raise SiteError(doc.source, located)
    return camera
