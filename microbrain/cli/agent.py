"""`microbrain edge run --config GATEWAY.yaml`: the whole gateway agent."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from microbrain.cli.errors import fail


def run(
    config: Path = typer.Option(
        ..., "--config", help="the gateway agent's YAML (configs/gateway/)"
    ),
    log_level: str = typer.Option("info", help="debug, info, warning, error"),
) -> None:
    """Run the gateway: sensors, cameras, outbox and uplink; stops cleanly on SIGTERM.

    Example:  MB_GW_XIYUAN_1_PASSWORD=... microbrain edge run
    --config configs/gateway/gw-xiyuan-1.yaml

    The broker password comes from the environment variable the site (or the
    config's cloud.password_env) names; it is never read from a file.
    """
    from edge.agent import GatewayAgent
    from edge.config import GatewayConfigError, load_gateway_config
    from microbrain.site import SiteError, load_site

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = load_gateway_config(config)
        site = load_site(cfg.site)
        agent = GatewayAgent(cfg, site)
    except (GatewayConfigError, SiteError) as err:
        fail(str(err))
    except KeyError as err:
        fail(str(err.args[0]))
    agent.run()
