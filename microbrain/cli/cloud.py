"""`microbrain cloud serve`: API + ingest + escalation scheduler in one process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, TypedDict

import typer

from microbrain.cli.errors import fail


class _Overrides(TypedDict, total=False):
    """The settings given on the command line (the rest come from MB_CLOUD_*)."""

    database_url: str
    broker_url: str
    playbooks: Path


def serve(
    db: Annotated[
        str | None,
        typer.Option(
            help="database URL (default: MB_CLOUD_DATABASE_URL or sqlite:///./microbrain.db)"
        ),
    ] = None,
    broker: Annotated[
        str | None, typer.Option(help="broker URL, e.g. mqtt://127.0.0.1:1883")
    ] = None,
    site: Annotated[
        Path | None, typer.Option(help="site YAML to load into the database on start")
    ] = None,
    playbooks: Annotated[
        Path | None,
        typer.Option(
            help="playbook YAML: notify, open work orders and play voice warnings when alerts "
            "open (default: MB_CLOUD_PLAYBOOKS; none: no automatic response)"
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="address the API listens on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    no_ingest: Annotated[bool, typer.Option("--no-ingest", help="serve the API only")] = False,
) -> None:
    """Run the cloud: REST API (/docs), MQTT ingest and the escalation scheduler.

    Example:  microbrain cloud serve --site configs/demo/site.yaml --broker mqtt://127.0.0.1:1883
              --playbooks configs/playbooks.yaml

    Several processes may run side by side against one database and broker; settings
    also come from MB_CLOUD_* environment variables (MB_CLOUD_ENVIRONMENT=production
    refuses the default secrets).
    """
    import uvicorn
    from pydantic import ValidationError

    from cloud.app import CloudService
    from cloud.awareness.shifts import AwarenessConfigError
    from cloud.fusion import FusionRulesError
    from cloud.response.channels.config import ChannelConfigError
    from cloud.response.playbooks import PlaybookError
    from cloud.settings import Settings
    from cloud.warning import TrendRulesError
    from microbrain.site import SiteError, load_site

    overrides: _Overrides = {}
    if db:
        overrides["database_url"] = db
    if broker:
        overrides["broker_url"] = broker
    if playbooks:
        overrides["playbooks"] = playbooks
    try:
        settings = Settings(**overrides)
    except ValidationError as err:
        fail(f"bad cloud settings: {err.errors(include_url=False)[0]['msg']}")
    loaded = None
    if site is not None:
        try:
            loaded = load_site(site)
        except SiteError as err:
            fail(str(err))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        service = CloudService(settings, site=loaded, site_path=site, ingest=not no_ingest)
    except (
        PlaybookError,
        ChannelConfigError,
        FusionRulesError,
        AwarenessConfigError,
        TrendRulesError,
    ) as err:
        fail(str(err))
    uvicorn.run(service.app, host=host, port=port, log_level="info")
