"""``microbrain site …``: validate a district's YAML before anything uses it."""

from __future__ import annotations

from pathlib import Path

import typer

from microbrain.cli.errors import fail


def check(
    file: Path = typer.Argument(..., help="site YAML, e.g. configs/demo/site.yaml"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print nothing when the file is valid"),
) -> None:
    """Validate a site file: schema, bounds, unique ids, references, classes, files.

    Example:  microbrain site check configs/demo/site.yaml

    Exits 0 when the file is usable; 2 with every problem on stderr, each naming its
    YAML path and line.
    """
    from microbrain.site import SiteError, load_site

    try:
        site = load_site(file)
    except SiteError as err:
        fail(str(err))
    if quiet:
        return
    gateways = list(site.gateways())
    buildings = sum(1 for _ in site.buildings())
    cameras = sum(len(p.gateway.cameras) for p in gateways)
    sensors = sum(len(p.gateway.sensors) for p in gateways)
    compounds = sum(len(c.compounds) for c in site.communities)
    typer.echo(
        f"{file}: ok — district {site.district.id!r}: {len(site.communities)} communities, "
        f"{compounds} compounds, {buildings} buildings, {len(gateways)} gateways, "
        f"{cameras} cameras, {sensors} sensors"
    )
