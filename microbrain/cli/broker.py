"""`microbrain broker config`: a Mosquitto config and its accounts and access rules."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from microbrain.cli.errors import fail

if TYPE_CHECKING:
    from microbrain.broker.mosquitto_conf import BrokerAccount


def config(
    site: Path = typer.Option(..., "--site", help="the site YAML"),
    out: Path = typer.Option(
        ..., "--out", help="directory for mosquitto.conf and dynamic-security.json"
    ),
    port: int = typer.Option(1883, min=1, max=65535, help="listener port"),
    bind: str = typer.Option("0.0.0.0", help="listener address"),
    user: str = typer.Option(
        None,
        "--user",
        help="the user mosquitto drops to when started as root (mosquitto's default: mosquitto)",
    ),
    tls_ca: Path = typer.Option(
        None, "--tls-ca", help="CA file; with --tls-cert/--tls-key the listener speaks TLS"
    ),
    tls_cert: Path = typer.Option(None, "--tls-cert", help="the broker's certificate"),
    tls_key: Path = typer.Option(None, "--tls-key", help="the broker's private key"),
    cloud_password_env: str = typer.Option(
        "MB_CLOUD_PASSWORD", help="environment variable with the cloud user's password"
    ),
    cloud_db: str = typer.Option(
        None,
        "--cloud-db",
        help="take the gateways' credentials from the cloud's database "
        "(set with PUT /api/gateways/{id}/password) instead of the site's password_env variables",
    ),
    dynsec_plugin: Path = typer.Option(
        None,
        "--dynsec-plugin",
        help="mosquitto_dynamic_security.so on the broker's machine "
        "(default: the one installed here)",
    ),
) -> None:
    """Write a Mosquitto config: persistence, large queues, per-gateway passwords, client
    ids and access rules (Mosquitto's dynamic-security plugin: it refuses a gateway's
    SUBSCRIBE outside its own cmd/#, $share/... included, which an ACL file cannot).

    Each gateway's password comes from the environment variable its ``password_env``
    names in the site file, or with --cloud-db from the credentials the cloud manages;
    run mosquitto with ``mosquitto -c OUT/mosquitto.conf``.

    Example:  microbrain broker config --site configs/demo/site.yaml --out /etc/mosquitto/microbrain

    Example:  microbrain broker config --site site.yaml --out broker/ --cloud-db postgresql://cloud@db/microbrain
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
        loaded = load_site(site)
        accounts = _cloud_accounts(cloud_db) if cloud_db else None
        files = write_broker_config(
            loaded,
            out,
            port=port,
            bind=bind,
            cloud_password_env=cloud_password_env,
            run_as=user,
            tls=tls,
            gateway_accounts=accounts,
            plugin=dynsec_plugin,
        )
    except (SiteError, BrokerConfigError) as err:
        fail(str(err))
    typer.echo(f"wrote {files.conf}, {files.dynsec}")
    typer.echo(f"start it with: mosquitto -c {files.conf}")


def _without_password(url: str) -> str:
    """The URL for messages: its password (which terminals and logs keep) as ***."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "the --cloud-db URL"  # unparsable: no telling where a password would be


def _cloud_accounts(url: str) -> list[BrokerAccount]:
    """The broker logins of the gateways whose credentials the cloud stores."""
    from sqlalchemy.exc import SQLAlchemyError

    from cloud.auth import broker_accounts
    from cloud.db import make_engine, session_factory

    shown = _without_password(url)
    try:
        engine = make_engine(url)
        with session_factory(engine)() as session:
            accounts = broker_accounts(session)
        engine.dispose()
    except SQLAlchemyError as err:
        fail(
            f"cannot read gateway credentials from {shown}: {err.__class__.__name__}: "
            f"{str(err).splitlines()[0]} (is it the cloud's database, migrated by 'cloud serve'?)"
        )
    if not accounts:
        fail(
            f"the cloud database {shown} stores no gateway credentials yet "
            "(set them with PUT /api/gateways/{id}/password, or start 'cloud serve --site' "
            "with the gateways' password variables set)"
        )
    return accounts
