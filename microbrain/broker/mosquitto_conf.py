"""Generate a Mosquitto configuration for a site: persistence, big queues, per-gateway
passwords and access rules that keep every gateway inside its own topic prefix.

Why these settings (measured, see REFERENCE.md): with Mosquitto's defaults (20 in
flight, 1,000 queued per client) a slow subscriber lost 7–49 % of PUBACKed messages, and
a SIGKILLed broker with the default autosave lost every queued message. So persistence
is on with ``autosave_interval 1`` and the queue limits are large; the end-to-end
guarantee still comes from the cloud's application-level ack (see ``edge/outbox.py``).

Why the dynamic-security plugin and not ``password_file``/``acl_file`` (tried on
Mosquitto 2.0.11): the ACL file never checks a SUBSCRIBE — every filter is granted, even
``topic deny``-ed ones — and only filters at delivery. A gateway subscribed to
``$share/cloud/mb/v1/+/+/+/event`` thus joined the cloud's shared group and every
message the broker picked it for was dropped there: the cloud got 10 of 20 events. The
plugin (shipped with Mosquitto ≥ 2.0) checks the whole filter, ``$share/<group>/``
included, refusing it in the SUBACK; and it binds each gateway's login to one client
id, so one gateway's password cannot take over (and wipe) another's session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from microbrain.files import write_private
from microbrain.protocol import Channel, GatewayPath
from microbrain.protocol.topics import PREFIX

if TYPE_CHECKING:  # type only: microbrain.site's verification imports CLOUD_USER from here
    from microbrain.site.model import Site

CLOUD_USER = "cloud"
CLOUD_PASSWORD_ENV = "MB_CLOUD_PASSWORD"
# mosquitto 2.0's own format: $7$ = PBKDF2-SHA512, then iterations, salt, hash (base64)
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12  # the dynamic-security plugin loads only 12-byte salts
DYNSEC_FILE = "dynamic-security.json"
# where Debian, Fedora and a source install put the plugin
DYNSEC_PLUGIN_GLOBS = (
    "/usr/lib/*/mosquitto_dynamic_security.so",
    "/usr/lib*/mosquitto_dynamic_security.so",
    "/usr/local/lib*/mosquitto_dynamic_security.so",
)


class BrokerConfigError(ValueError):
    """A site that cannot be turned into a broker config (e.g. a password not set)."""


def hash_password(
    password: str, *, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None
) -> str:
    """A password-file hash in mosquitto_passwd's ``$7$`` format."""
    salt = salt or secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(stored: str, password: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash from :func:`hash_password`."""
    try:
        _, seven, iterations, salt, digest = stored.split("$")
        again = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt), int(iterations)
        )
    except (ValueError, TypeError):
        return False
    return seven == "7" and hmac.compare_digest(base64.b64encode(again).decode(), digest)


def gateway_write_topics(prefix: str) -> list[str]:
    """What a gateway may publish: its own event, reading, status and replies — not its
    own ``cmd/#`` (only the cloud commands a gateway)."""
    return [
        f"{prefix}/{Channel.EVENT.value}",
        f"{prefix}/{Channel.READING.value}",
        f"{prefix}/{Channel.STATUS.value}",
        f"{prefix}/{Channel.REPLY.value}/#",
    ]


def gateway_client_id(path: GatewayPath) -> str:
    """The one MQTT client id a gateway's login may use (the uplink's default)."""
    return f"mb-{path.community}-{path.compound}-{path.gateway}"


@dataclass(frozen=True)
class BrokerAccount:
    """One broker login: its ``$7$`` password hash and, for a gateway, the prefix and
    client id it is confined to (``gateway=None``: the cloud, any client id)."""

    username: str
    password_hash: str
    gateway: GatewayPath | None = None


def cloud_read_filters() -> list[str]:
    """What the cloud may subscribe to: the whole tree, directly or through a shared
    group of any name (``MB_CLOUD_INGEST_GROUP``)."""
    return [f"{PREFIX}/#", f"$share/+/{PREFIX}/#"]


def acl_entries(gateways: Iterable[tuple[str, GatewayPath]], cloud_user: str = CLOUD_USER) -> str:
    """The access rules as Mosquitto ACL-file text, for reading and export (the cloud's
    ``GET /api/broker/acl``): the cloud reads everything and writes every ``cmd/#``; each
    (username, gateway) writes only under its own prefix and reads only its own ``cmd/#``.

    The generated broker does not run this file: Mosquitto 2.0's ``acl_file`` grants
    every SUBSCRIBE (see the module's docstring); :func:`dynsec_config` enforces it."""
    lines = [
        "# generated by microbrain; do not edit, regenerate",
        "# Mosquitto 2.0's acl_file does not check subscriptions ($share/... included):",
        "# `microbrain broker config` enforces these rules with the dynamic-security",
        "# plugin",
        "",
    ]
    lines += [
        f"user {cloud_user}",
        f"topic read {PREFIX}/#",
        f"topic write {PREFIX}/+/+/+/{Channel.CMD.value}/#",
        "",
    ]
    for username, path in gateways:
        lines.append(f"user {username}")
        lines += [f"topic write {t}" for t in gateway_write_topics(path.prefix)]
        lines += [f"topic read {path.subscription(Channel.CMD)}", ""]
    return "\n".join(lines)


def _rule(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True}


def _dynsec_password(account: BrokerAccount) -> dict[str, Any]:
    """The plugin's password fields from a ``$7$`` hash (same PBKDF2-SHA512 underneath)."""
    try:
        _, seven, iterations, salt, digest = account.password_hash.split("$")
        ok = (
            seven == "7"
            and len(base64.b64decode(salt, validate=True)) == SALT_BYTES
            and len(base64.b64decode(digest, validate=True)) == 64
            and int(iterations) > 0
        )
    except ValueError:
        ok = False
    if not ok:
        raise BrokerConfigError(
            f"the password hash of {account.username!r} is not a $7$ PBKDF2-SHA512 hash with a "
            f"{SALT_BYTES}-byte salt (set the password again: PUT /api/gateways/{{id}}/password)"
        )
    return {"password": digest, "salt": salt, "iterations": int(iterations)}


def dynsec_config(accounts: Iterable[BrokerAccount]) -> dict[str, Any]:
    """The dynamic-security plugin's configuration: default deny for publish, receive
    and subscribe; the cloud (no ``gateway``) reads the whole tree and writes every
    ``cmd/#``; a gateway writes its own event/reading/status/reply, subscribes to and
    receives only its own ``cmd/#``, and must connect as :func:`gateway_client_id`."""
    clients: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = []
    for account in accounts:
        kind = "cloud" if account.gateway is None else "gateway"
        role = f"{kind}:{account.username}"
        client: dict[str, Any] = {
            "username": account.username,
            **_dynsec_password(account),
            "roles": [{"rolename": role}],
        }
        if account.gateway is None:
            acls = [
                _rule("publishClientSend", f"{PREFIX}/+/+/+/{Channel.CMD.value}/#"),
                *(_rule("subscribePattern", f) for f in cloud_read_filters()),
                _rule("publishClientReceive", f"{PREFIX}/#"),
            ]
        else:
            client["clientid"] = gateway_client_id(account.gateway)
            own_cmd = account.gateway.subscription(Channel.CMD)
            writes = gateway_write_topics(account.gateway.prefix)
            acls = [
                *(_rule("publishClientSend", t) for t in writes),
                _rule("subscribePattern", own_cmd),
                _rule("publishClientReceive", own_cmd),
            ]
        clients.append(client)
        roles.append({"rolename": role, "acls": acls})
    return {
        "clients": clients,
        "groups": [],
        "roles": roles,
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
    }


def dynsec_plugin() -> Path:
    """The installed ``mosquitto_dynamic_security.so``; BrokerConfigError if none."""
    import glob

    for pattern in DYNSEC_PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[0])
    raise BrokerConfigError(
        "Mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so, Mosquitto ≥ 2.0) "
        f"is not installed in {', '.join(DYNSEC_PLUGIN_GLOBS)}: apt-get install mosquitto, or "
        "name it with --dynsec-plugin PATH (its ACL file alone cannot refuse subscriptions)"
    )


def passwords(
    site: Site, env: Mapping[str, str], cloud_password_env: str = CLOUD_PASSWORD_ENV
) -> dict[str, str]:
    """username → password, each read from the environment variable the site names."""
    wanted: dict[str, str] = {CLOUD_USER: cloud_password_env}
    problems = []
    for place in site.gateways():
        if place.gateway.password_env is None:
            problems.append(f"gateway {place.gateway.id!r} has no password_env in the site file")
            continue
        wanted[place.gateway.id] = place.gateway.password_env
    out = {}
    for user, var in wanted.items():
        value = env.get(var, "")
        if not value:
            problems.append(f"environment variable {var} (password of {user!r}) is not set")
        else:
            out[user] = value
    if problems:
        raise BrokerConfigError("; ".join(problems))
    return out


def _hand_over(run_as: str | None, paths: list[Path]) -> None:
    """Running as root: give the files to the user mosquitto will drop to (default
    'mosquitto'), so that the 0600 dynamic-security file is still readable by the broker."""
    if os.name != "posix" or os.geteuid() != 0:
        return
    import pwd

    try:
        user = pwd.getpwnam(run_as or "mosquitto")
    except KeyError:
        return
    for path in paths:
        os.chown(path, user.pw_uid, user.pw_gid)


@dataclass(frozen=True)
class BrokerFiles:
    conf: Path
    dynsec: Path  # accounts and access rules (the dynamic-security plugin's file)
    port: int


def conf_text(
    directory: Path,
    port: int,
    bind: str,
    dynsec: Path,
    plugin: Path,
    tls: tuple[Path, Path, Path] | None = None,
    run_as: str | None = None,
) -> str:
    data = directory / "data"
    lines = [
        "# generated by `microbrain broker config`; do not edit, regenerate",
        # started as root, mosquitto drops to this user, who must be able to read the
        # plugin's file and write the persistence directory
        *([f"user {run_as}"] if run_as else []),
        "per_listener_settings false",
        "allow_anonymous false",
        # passwords, client ids and access rules; it checks SUBSCRIBE, the ACL file does not
        f"plugin {plugin}",
        f"plugin_opt_config_file {dynsec}",
        "persistence true",
        f"persistence_location {data}/",
        # a SIGKILLed broker loses at most one second of queued messages
        "autosave_interval 1",
        "autosave_on_changes false",
        # the cloud's subscription must never drop: large queues, no byte cap
        "max_queued_messages 1000000",
        "max_queued_bytes 0",
        "max_inflight_messages 1000",
        "max_inflight_bytes 0",
        "persistent_client_expiration 14d",
        # payloads are ≤ 64 KiB (evidence goes over HTTP); refuse anything far bigger
        "max_packet_size 262144",
        "set_tcp_nodelay true",
        f"listener {port} {bind}",
    ]
    if tls is not None:
        ca, cert, key = tls
        lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}", "tls_version tlsv1.2"]
    return "\n".join(lines) + "\n"


def site_accounts(
    site: Site, env: Mapping[str, str], cloud_password_env: str = CLOUD_PASSWORD_ENV
) -> list[BrokerAccount]:
    """The cloud and every gateway of the site, passwords from the variables it names."""
    users = passwords(site, env, cloud_password_env)
    paths = {p.gateway.id: p.path for p in site.gateways()}
    return [BrokerAccount(u, hash_password(pw), paths.get(u)) for u, pw in users.items()]


def write_broker_config(
    site: Site,
    out: Path,
    *,
    env: Mapping[str, str] | None = None,
    port: int = 1883,
    bind: str = "0.0.0.0",
    cloud_password_env: str = CLOUD_PASSWORD_ENV,
    tls: tuple[Path, Path, Path] | None = None,
    run_as: str | None = None,
    gateway_accounts: Sequence[BrokerAccount] | None = None,
    plugin: Path | None = None,
) -> BrokerFiles:
    """Write mosquitto.conf and the dynamic-security plugin's file into ``out``.

    Passwords come from ``env`` (the variables the site names), or — with
    ``gateway_accounts`` as the cloud stores them (``cloud.auth.broker_accounts``) —
    only the cloud user's password does. ``plugin``: the plugin's path on the broker's
    machine (default: the one installed here).

    >>> write_broker_config(load_site("configs/demo/site.yaml"), Path("broker"))  # doctest: +SKIP
    """
    env = os.environ if env is None else env
    if gateway_accounts is None:
        accounts = site_accounts(site, env, cloud_password_env)
    else:
        cloud_password = env.get(cloud_password_env, "")
        if not cloud_password:
            raise BrokerConfigError(
                f"environment variable {cloud_password_env} (password of {CLOUD_USER!r}) is not set"
            )
        accounts = [BrokerAccount(CLOUD_USER, hash_password(cloud_password)), *gateway_accounts]
    body = json.dumps(dynsec_config(accounts), indent=1) + "\n"
    plugin = plugin or dynsec_plugin()
    out = out.resolve()
    (out / "data").mkdir(parents=True, exist_ok=True)
    dynsec, conf = out / DYNSEC_FILE, out / "mosquitto.conf"
    write_private(dynsec, body)  # password hashes: never readable by others
    conf.write_text(conf_text(out, port, bind, dynsec, plugin, tls, run_as))
    # the plugin rewrites its file (beside it) when changed over $CONTROL: the broker's
    # user owns both
    _hand_over(run_as, [out, out / "data", dynsec, conf])
    return BrokerFiles(conf, dynsec, port)
