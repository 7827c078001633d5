"""``microbrain up``: the whole system on one box, on embedded defaults.

It starts, as separate processes the way a deployment runs them:

1. the cloud broker (Mosquitto with per-gateway passwords and ACL from the site; the
   pip-only iotcore broker when Mosquitto is not installed),
2. a local sensor broker (anonymous, loopback: the compound's own bus),
3. the cloud (`microbrain cloud serve`, SQLite in the data folder; the playbooks of
   configs/playbooks.yaml, whose notifications go to the local sink var/notifications.jsonl
   and whose voice warnings play at the gateways),
4. one gateway agent per gateway of the site (`microbrain edge run`), video included,
5. one sensor simulator per gateway (`microbrain simulate sensors`).

Then it watches them: a child that dies stops the rest with its log tail printed, and
Ctrl-C / SIGTERM stops everything in reverse order.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import yaml
from pydantic import RootModel

from microbrain.broker.address import parse_broker_url
from microbrain.cli.errors import fail
from microbrain.config_files import ConfigFileError, read_yaml
from microbrain.files import write_private
from microbrain.signing import load_or_create_private_key, public_key_text
from microbrain.site.common import parse_duration

DEFAULT_SITE = Path("configs/demo/site.yaml")
# --demo: every level has this long (seconds) to acknowledge, whatever the severity, so
# that a visitor sees an alert climb to the community and a 吹哨 work order in two minutes
DEMO_LADDER = {"building": 15, "compound": 30, "community": 45}
# --demo: a sensor condition that must last longer (a fire door open 10 min, the water
# high 1 min) counts after this many seconds, so that every kind shows within a minute
DEMO_MAX_FOR_S = 20.0
DEFAULT_PLAYBOOKS = Path("configs/playbooks.yaml")
ADMIN_PASSWORD_ENV = "MB_CLOUD_ADMIN_PASSWORD"


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class _Secrets(RootModel[dict[str, str]]):
    """secrets.yaml: variable name → password."""


def _load_secrets(path: Path, names: list[str]) -> dict[str, str]:
    """Random passwords for this box, kept across restarts in a 0600 file."""
    known: dict[str, str] = {}
    if path.is_file():
        doc = read_yaml(path)  # strict like every config: a duplicated name is an error
        known = {} if doc.data is None else dict(doc.validate(_Secrets).root)
    for name in names:
        known.setdefault(name, secrets.token_urlsafe(18))
    write_private(path, yaml.safe_dump(known))  # every password of this box
    return known


def _absolute(holder: dict[str, object], key: str, base: Path) -> None:
    value = holder.get(key)
    if isinstance(value, str) and ":" not in value and not Path(value).is_absolute():
        holder[key] = str((base / value).resolve())


def demo_site(site: Path, out: Path) -> Path:
    """A copy of ``site`` whose escalation ladder runs in tens of seconds and whose sensor
    conditions count after at most ``DEMO_MAX_FOR_S`` (clearly marked as a demo in the file
    and in the district's name the console shows), the rest unchanged.

    The communities' and compounds' own escalation overrides are dropped: each would put
    back minutes at its level. Relative file paths (camera sources, detector files) are
    made absolute, so that they mean the same from the copy's folder.
    """
    doc = read_yaml(site).data
    if not isinstance(doc, dict):
        raise ValueError(f"{site}: not a site file (a mapping at the top)")
    ladder = {
        level: dict.fromkeys(("critical", "warning", "info"), s) for level, s in DEMO_LADDER.items()
    }
    doc["escalation"] = {**doc.get("escalation", {}), **ladder}
    for community in doc.get("communities", []):
        community.pop("escalation", None)
        for compound in community.get("compounds", []):
            compound.pop("escalation", None)
            for gw in compound.get("gateways", []):
                for camera in gw.get("cameras", []):
                    _absolute(camera, "source", site.parent)
                for key in ("model", "config"):
                    _absolute(gw.get("detector") or {}, key, site.parent)
    for profile in doc.get("sensor_profiles", []):
        for rule in profile.get("rules", []):
            # thresholds only: a "stuck" rule's window is hours by nature (and ≥ 60 s)
            if rule.get("type") != "threshold" or "for_s" not in rule:
                continue
            if parse_duration(rule["for_s"]) > DEMO_MAX_FOR_S:
                rule["for_s"] = DEMO_MAX_FOR_S
    district = doc.setdefault("district", {})
    district["name"] = f"{district.get('name', '')}（演示）"
    out.parent.mkdir(parents=True, exist_ok=True)
    steps = ", ".join(f"{level} {s} s" for level, s in DEMO_LADDER.items())
    out.write_text(
        f"# DEMO copy of {site.resolve()} written by `microbrain up --demo`: every alert has\n"
        f"# {steps} to be acknowledged at each level (演示用升级时限), then a work order goes\n"
        f"# to the department; a sensor condition counts after at most {DEMO_MAX_FOR_S:g} s.\n"
        "# Not for production: `microbrain up --no-demo` uses the site as is.\n"
        + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )
    return out


if TYPE_CHECKING:
    from microbrain.broker.embedded import EmbeddedBroker
    from microbrain.site.model import Site


def _start_cloud_broker(
    loaded: Site,
    data_dir: Path,
    mqtt_port: int,
    secret: dict[str, str],
    brokers: list[EmbeddedBroker],
    say: Callable[[str], None],
) -> None:
    """Mosquitto with the site's passwords and access rules; iotcore where there is none."""
    from microbrain.broker.embedded import (
        MosquittoBroker,
        mosquitto_executable,
        start_embedded_broker,
    )
    from microbrain.broker.mosquitto_conf import (
        BrokerConfigError,
        dynsec_plugin,
        write_broker_config,
    )

    run_as = "root" if os.name == "posix" and os.geteuid() == 0 else None
    mosquitto = mosquitto_executable()
    if mosquitto:
        try:
            dynsec_plugin()
        except BrokerConfigError as err:
            say(f"{err}; using the embedded broker instead")
            mosquitto = None
    if mosquitto:
        files = write_broker_config(
            loaded, data_dir / "broker", env=secret, port=mqtt_port, bind="127.0.0.1", run_as=run_as
        )
        brokers.append(
            MosquittoBroker("127.0.0.1", mqtt_port, data_dir / "broker", conf=files.conf).start()
        )
        say(f"cloud broker: mosquitto on 127.0.0.1:{mqtt_port} (passwords + access rules)")
    else:
        brokers.append(start_embedded_broker("127.0.0.1", mqtt_port, data_dir=data_dir / "broker"))
        say(f"cloud broker: embedded on 127.0.0.1:{mqtt_port} (no authentication: loopback only)")


def _wait_http(url: str, timeout: float, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("it exited while starting")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def up(
    site: Annotated[Path, typer.Option(help="site YAML")] = DEFAULT_SITE,
    playbooks: Annotated[
        Path,
        typer.Option(
            help="playbook YAML (notifications go to its local sink, var/notifications.jsonl)"
        ),
    ] = DEFAULT_PLAYBOOKS,
    data_dir: Annotated[Path, typer.Option(help="databases, outboxes, evidence, logs")] = Path(
        "var/up"
    ),
    mqtt_port: Annotated[int, typer.Option(help="cloud broker port (gateways → cloud)")] = 1884,
    sensor_port: Annotated[
        int, typer.Option(help="local sensor broker port (devices → gateways)")
    ] = 1885,
    api_port: Annotated[
        int, typer.Option(help="cloud port (console at /, API at /docs, /metrics)")
    ] = 8000,
    gateway: Annotated[
        list[str] | None,
        typer.Option(
            "--gateway", help="run only these gateways (repeatable); default: all of the site's"
        ),
    ] = None,
    sensor_rate: Annotated[
        float, typer.Option(help="simulated messages per second per gateway")
    ] = 2.0,
    faults: Annotated[bool, typer.Option(help="inject sensor fault episodes")] = True,
    video: Annotated[
        bool, typer.Option(help="run the cameras (the default detector on the sample media)")
    ] = True,
    duration: Annotated[
        float, typer.Option(help="stop after this many seconds; 0: until Ctrl-C")
    ] = 0.0,
    demo: Annotated[
        bool,
        typer.Option(
            help="demo escalation ladder: 15 s / 30 s / 45 s to acknowledge at the building, "
            "compound and community levels, then a 吹哨 work order (--no-demo: the site's own)"
        ),
    ] = True,
    broker: Annotated[
        str | None,
        typer.Option(
            help="use this MQTT broker (mqtt://[user:pass@]host:port) for gateways → cloud "
            "instead of starting one; it must accept the gateways' and the cloud's logins"
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(help="the cloud's database URL (e.g. postgresql://…); default: SQLite"),
    ] = None,
) -> None:
    """Run the whole system on this box: brokers, cloud on SQLite, gateways, simulated sensors.

    Example:  microbrain up            (then open http://127.0.0.1:8000/ for the console)

    Example:  microbrain up --gateway gw-xiyuan-2 --duration 60

    Example:  microbrain up --broker mqtt://127.0.0.1:1883 --db postgresql://localhost/test

    Run it from the repository root (the default --site is configs/demo/site.yaml).
    Everything lives under --data-dir: logs/ has one log per process (the brokers log
    into broker/ and sensor-broker/); the admin password for the API is kept in
    DATA_DIR/secrets.yaml (mode 0600).
    """
    from microbrain.broker.embedded import BrokerStartError, start_embedded_broker
    from microbrain.broker.mosquitto_conf import CLOUD_PASSWORD_ENV, CLOUD_USER
    from microbrain.site import SiteError, load_site

    try:
        loaded = load_site(site)
    except SiteError as err:
        fail(str(err))
    places = [p for p in loaded.gateways() if not gateway or p.gateway.id in gateway]
    unknown = set(gateway or ()) - {p.gateway.id for p in places}
    if unknown:
        fail(
            f"unknown gateway(s) {', '.join(sorted(unknown))}; the site has "
            + ", ".join(p.gateway.id for p in loaded.gateways())
        )
    if not places:
        fail(f"{site} declares no gateways")
    # checked here, before anything starts: the cloud would refuse the same file later
    from cloud.response import load_response
    from cloud.response.channels.config import ChannelConfigError
    from cloud.response.playbooks import PlaybookError

    try:
        load_response(playbooks, site=loaded, environ=os.environ)
    except (PlaybookError, ChannelConfigError) as err:
        fail(str(err))
    missing_env = [p.gateway.id for p in places if p.gateway.password_env is None]
    if missing_env:
        fail(f"gateways without password_env in {site}: {', '.join(missing_env)}")

    data_dir = data_dir.resolve()
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if broker is not None:
        try:
            external_broker = parse_broker_url(broker)
        except ValueError as err:
            fail(f"--broker: {err}")
        if external_broker.tls:
            fail("--broker: the cloud does not speak TLS to the broker yet; use mqtt://")
    if demo:
        try:
            site = demo_site(site, data_dir / "site.demo.yaml")
            load_site(site)  # the copy must validate like the original
        except (ValueError, SiteError) as err:  # ConfigFileError too
            fail(str(err))
    site_path = site.resolve()
    names = [
        CLOUD_PASSWORD_ENV,
        ADMIN_PASSWORD_ENV,
        *(p.gateway.password_env for p in loaded.gateways()),
    ]
    try:
        secret = _load_secrets(data_dir / "secrets.yaml", [n for n in names if n])
    except ConfigFileError as err:
        fail(str(err))
    env = {**os.environ, **secret, "PYTHONUNBUFFERED": "1"}

    brokers: list[EmbeddedBroker] = []
    children: list[Child] = []
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)

    def say(message: str) -> None:
        typer.echo(f"[up] {message}", err=True)

    try:
        # 1. cloud broker, with the site's credentials and ACL where Mosquitto exists
        try:
            if broker is None:
                _start_cloud_broker(loaded, data_dir, mqtt_port, secret, brokers, say)
            else:
                say(f"cloud broker: {external_broker.host}:{external_broker.port} (--broker)")
            # 2. the compound's local sensor bus
            brokers.append(
                start_embedded_broker("127.0.0.1", sensor_port, data_dir=data_dir / "sensor-broker")
            )
            say(f"sensor broker: 127.0.0.1:{sensor_port}")
        except BrokerStartError as err:
            fail(str(err))

        exe = [sys.executable, "-m", "microbrain"]
        # the registry's signing key, made here so that each gateway is given its public
        # half (model_key) before it starts: `microbrain model push` + `rollout` then work
        signing_key = data_dir / "model-signing.key"
        model_key = data_dir / "model-key.pub"
        model_key.write_text(public_key_text(load_or_create_private_key(signing_key)) + "\n")
        cloud_broker = f"mqtt://127.0.0.1:{mqtt_port}"
        # gateways log in as themselves (their passwords are in secrets.yaml), never with
        # the credentials in --broker's URL, which are the cloud's
        gateway_broker = (
            cloud_broker
            if broker is None
            else f"mqtt://{external_broker.host}:{external_broker.port}"
        )
        # 3. the cloud
        cloud_env = {
            **env,
            # an external broker: the cloud logs in with what --broker's URL says
            **(
                {
                    "MB_CLOUD_BROKER_USERNAME": CLOUD_USER,
                    "MB_CLOUD_BROKER_PASSWORD": secret[CLOUD_PASSWORD_ENV],
                }
                if broker is None
                else {}
            ),
            "MB_CLOUD_ADMIN_PASSWORD": secret[ADMIN_PASSWORD_ENV],
            "MB_CLOUD_EVIDENCE_DIR": str(data_dir / "cloud-evidence"),
            "MB_CLOUD_MODEL_KEY_FILE": str(signing_key),
            "MB_CLOUD_INGEST_CLIENT_ID": "up-cloud-1",
        }
        cloud_args = [
            *exe,
            "cloud",
            "serve",
            "--db",
            db or f"sqlite:///{data_dir / 'cloud.db'}",
            "--broker",
            broker or cloud_broker,
            "--site",
            str(site),  # as given (same working directory): the console names it so
            "--playbooks",
            str(playbooks),
            "--port",
            str(api_port),
        ]
        cloud = Child("cloud", cloud_args, logs / "cloud.log", cloud_env)
        cloud.start()
        children.append(cloud)
        try:
            _wait_http(
                f"http://127.0.0.1:{api_port}/healthz", 60, lambda: cloud.alive() and not stopping
            )
        except RuntimeError as err:
            if stopping:
                raise typer.Exit(0) from None
            fail(f"the cloud did not start ({err}); its log:\n{cloud.tail()}", code=1)
        say(f"console: http://127.0.0.1:{api_port}/   API: http://127.0.0.1:{api_port}/docs")
        say(
            f"demo login: admin / {secret[ADMIN_PASSWORD_ENV]}   "
            f"(kept in {data_dir / 'secrets.yaml'}, mode 0600)"
        )
        if demo:
            say(
                "demo escalation ladder: "
                + ", ".join(f"{level} {s} s" for level, s in DEMO_LADDER.items())
                + " to acknowledge, then a 吹哨 work order (演示; --no-demo: the site's own)"
            )

        # 4 + 5. gateways and their simulated devices
        for place in places:
            if stopping:  # Ctrl-C while starting: start nothing more
                break
            gid = place.gateway.id
            config = data_dir / "gateways" / f"{gid}.yaml"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(
                yaml.safe_dump(
                    {
                        "site": str(site_path),
                        "gateway": gid,
                        "cloud": {"url": gateway_broker},
                        "local_broker": {"url": f"mqtt://127.0.0.1:{sensor_port}"},
                        "cloud_api": f"http://127.0.0.1:{api_port}",
                        "data_dir": str(data_dir / "gateways" / gid),
                        "video": video,
                        "loop_recordings": True,
                        # voice warnings are written as WAV files (no speaker is assumed)
                        "audio": {"out_dir": "announcements"},
                        "model_key": str(model_key),
                    }
                )
            )
            agent = Child(
                f"gateway {gid}",
                exe + ["edge", "run", "--config", str(config)],
                logs / f"{gid}.log",
                env,
            )
            agent.start()
            children.append(agent)
            if place.gateway.sensors:
                sim = Child(
                    f"sensors of {gid}",
                    exe
                    + [
                        "simulate",
                        "sensors",
                        "--site",
                        str(site_path),
                        "--gateway",
                        gid,
                        "--rate",
                        str(sensor_rate),
                        "--broker",
                        f"mqtt://127.0.0.1:{sensor_port}",
                        # every sensor kind shows a fault within the first 30 s
                        *(["--faults", "--first-fault-within", "30"] if faults else []),
                    ],
                    logs / f"simulate-{gid}.log",
                    env,
                )
                sim.start()
                children.append(sim)
            say(
                f"gateway {gid}: {len(place.gateway.cameras)} camera(s), "
                f"{len(place.gateway.sensors)} sensor(s)"
            )
        say(f"running; logs in {logs}; Ctrl-C stops everything")

        deadline = time.monotonic() + duration if duration > 0 else None
        while not stopping and (deadline is None or time.monotonic() < deadline):
            dead = [c for c in children if not c.alive()]
            if dead:
                for child in dead:
                    say(
                        f"{child.name} exited with {child.proc.returncode if child.proc else '?'}; "
                        f"last lines of {child.log}:\n{child.tail()}"
                    )
                raise typer.Exit(1)
            time.sleep(0.5)
        say("stopping")
    finally:
        for child in reversed(children):
            child.stop()
        for started in reversed(brokers):
            started.stop()
