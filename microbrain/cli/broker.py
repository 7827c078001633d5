"""`microbrain broker config`: a Mosquitto config, password file and ACL for a site."""

from __future__ import annotations

from pathlib import Path

import typer

from microbrain.cli.errors import fail


def config(
    site: Path = typer.Option(..., "--site", help="the site YAML"),
    out: Path = typer.Option(..., "--out", help="directory for mosquitto.conf, passwd, acl"),
    port: int = typer.Option(1883, min=1, max=65535, help="listener port"),
    bind: str = typer.Option("0.0.0.0", help="listener address"),
    user: str = typer.Option(None, "--user", help="the user mosquitto drops to when started "
                             "as root (mosquitto's default: mosquitto)"),
    cloud_password_env: str = typer.Option(
        "MB_CLOUD_PASSWORD", help="environment variable with the cloud user's password"),
) -> None:
    """Write a Mosquitto config: persistence, large queues, per-gateway passwords, ACL.

    Each gateway's password comes from the environment variable its ``password_env``
    names in the site file; run mosquitto with ``mosquitto -c OUT/mosquitto.conf``.
    """
    from microbrain.broker.mosquitto_conf import BrokerConfigError, write_broker_config
    from microbrain.site import SiteError, load_site

    try:
        files = write_broker_config(load_site(site), out, port=port, bind=bind,
                                    cloud_password_env=cloud_password_env, run_as=user)
    except (SiteError, BrokerConfigError) as err:
        fail(str(err))
    typer.echo(f"wrote {files.conf}, {files.passwd}, {files.acl}")
    typer.echo(f"start it with: mosquitto -c {files.conf}")
