"""Load a site or camera YAML file, validate it, and explain every problem by path.

Errors read ``site.yaml:42 communities[0].compounds[2].cameras[1].zones[0].polygon:
needs at least 3 points`` so that the fix is one look away. The strict reading itself
(UTF-8, no duplicate key, no NaN, lines for every path) is :mod:`microbrain.config_files`,
shared with every other YAML file the project reads.
"""

from __future__ import annotations

from pathlib import Path

from microbrain.config_files import ConfigFileError, Problem, read_yaml
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
