"""``microbrain playbooks check``: validate a playbook file against its site before the
cloud loads it."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from microbrain.cli.errors import fail


def check(
    file: Path = typer.Argument(..., help="playbook YAML, e.g. configs/playbooks.yaml"),
    site: Path | None = typer.Option(
        None, help="the site the playbooks name places and departments of (checked when given)"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print nothing when the file is valid"),
) -> None:
    """Validate a playbook file: schema, references (channels, contacts, departments,
    places) and that every channel can be made from the environment (its *_env variables
    set).

    Example:  microbrain playbooks check configs/playbooks.yaml --site configs/demo/site.yaml

    Exits 0 when the cloud could load it; 2 with every problem on stderr, each naming its
    YAML path and line (or the channel and the variable that is missing).
    """
    from cloud.response import load_response
    from cloud.response.channels.config import ChannelConfigError
    from cloud.response.playbooks import PlaybookError
    from microbrain.site import SiteError, load_site

    try:
        loaded = load_site(site) if site is not None else None
        setup = load_response(file, site=loaded, environ=os.environ)
    except (SiteError, PlaybookError, ChannelConfigError) as err:
        fail(str(err))
    if quiet:
        return
    book = setup.playbooks.book
    typer.echo(
        f"{file}: ok — {len(book.playbooks)} playbooks, {len(book.contacts)} contacts, "
        f"channels: {', '.join(f'{c.id} ({c.type})' for c in book.channels) or 'none'}"
        + ("" if site else " (places and departments not checked: give --site)")
    )
