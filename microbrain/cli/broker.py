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
    tls_ca: Path = typer.Option(None, "--tls-ca", help="CA file; with --tls-cert/--tls-key the listener speaks TLS"),
    tls_cert: Path = typer.Option(None, "--tls-cert", help="the broker's certificate"),
    tls_key: Path = typer.Option(None, "--tls-key", help="the broker's private key"),
    cloud_password_env: str = typer.Option(
        "MB_CLOUD_PASSWORD", help="environment variable with the cloud user's password"),
) -> None:
    """Write a Mosquitto config: persistence, large queues, per-gateway passwords, ACL.

    Each gateway's password comes from the environment variable its ``password_env``
    names in the site file; run mosquitto with ``mosquitto -c OUT/mosquitto.conf``.

    Example:  microbrain broker config --site configs/demo/site.yaml --out /etc/mosquitto/microbrain
    """
    from microbrain.broker.mosquitto_conf import BrokerConfigError, write_broker_config
    from microbrain.site import SiteError, load_site

    given = [p for p in (tls_ca, tls_cert, tls_key) if p is not None]
    if given and len(given) != 3:
        fail("TLS needs all three of --tls-ca, --tls-cert and --tls-key")
    for p in given:
        if not p.is_file():
            fail(f"{p}: no such file")
    tls = (tls_ca.resolve(), tls_cert.resolve(), tls_key.resolve()) if given else None
    try:
        files = write_broker_config(load_site(site), out, port=port, bind=bind,
                                    cloud_password_env=cloud_password_env, run_as=user,
                                    tls=tls)
    except (SiteError, BrokerConfigError) as err:
        fail(str(err))
    typer.echo(f"wrote {files.conf}, {files.passwd}, {files.acl}")
    typer.echo(f"start it with: mosquitto -c {files.conf}")
