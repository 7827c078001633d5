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
from typing import Annotated

import typer
import yaml
from pydantic import RootModel

from microbrain.cli.errors import fail
from microbrain.config_files import ConfigFileError, read_yaml
from microbrain.files import write_private

DEFAULT_SITE = Path("configs/demo/site.yaml")
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
) -> None:
    """Run the whole system on this box: brokers, cloud on SQLite, gateways, simulated sensors.

    Example:  microbrain up            (then open http://127.0.0.1:8000/ for the console)

    Example:  microbrain up --gateway gw-xiyuan-2 --duration 60

    Run it from the repository root (the default --site is configs/demo/site.yaml).
    Everything lives under --data-dir: logs/ has one log per process (the brokers log
    into broker/ and sensor-broker/); the admin password for the API is kept in
    DATA_DIR/secrets.yaml (mode 0600).
    """
    from microbrain.broker.embedded import (
        BrokerStartError,
        EmbeddedBroker,
        MosquittoBroker,
        mosquitto_executable,
        start_embedded_broker,
    )
    from microbrain.broker.mosquitto_conf import (
        CLOUD_PASSWORD_ENV,
        CLOUD_USER,
        BrokerConfigError,
        dynsec_plugin,
        write_broker_config,
    )
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
        run_as = "root" if os.name == "posix" and os.geteuid() == 0 else None
        try:
            mosquitto = mosquitto_executable()
            if mosquitto:
                try:
                    dynsec_plugin()
                except BrokerConfigError as err:
                    say(f"{err}; using the embedded broker instead")
                    mosquitto = None
            if mosquitto:
                files = write_broker_config(
                    loaded,
                    data_dir / "broker",
                    env=secret,
                    port=mqtt_port,
                    bind="127.0.0.1",
                    run_as=run_as,
                )
                brokers.append(
                    MosquittoBroker(
                        "127.0.0.1", mqtt_port, data_dir / "broker", conf=files.conf
                    ).start()
                )
                say(f"cloud broker: mosquitto on 127.0.0.1:{mqtt_port} (passwords + access rules)")
            else:
                brokers.append(
                    start_embedded_broker("127.0.0.1", mqtt_port, data_dir=data_dir / "broker")
                )
                say(
                    f"cloud broker: embedded on 127.0.0.1:{mqtt_port} "
                    "(no authentication: loopback only)"
                )
            # 2. the compound's local sensor bus
            brokers.append(
                start_embedded_broker("127.0.0.1", sensor_port, data_dir=data_dir / "sensor-broker")
            )
            say(f"sensor broker: 127.0.0.1:{sensor_port}")
        except BrokerStartError as err:
            fail(str(err))

        exe = [sys.executable, "-m", "microbrain"]
        # 3. the cloud
        cloud_env = {
            **env,
            "MB_CLOUD_BROKER_USERNAME": CLOUD_USER,
            "MB_CLOUD_BROKER_PASSWORD": secret[CLOUD_PASSWORD_ENV],
            "MB_CLOUD_ADMIN_PASSWORD": secret[ADMIN_PASSWORD_ENV],
            "MB_CLOUD_EVIDENCE_DIR": str(data_dir / "cloud-evidence"),
            "MB_CLOUD_INGEST_CLIENT_ID": "up-cloud-1",
        }
        cloud_args = [
            *exe,
            "cloud",
            "serve",
            "--db",
            f"sqlite:///{data_dir / 'cloud.db'}",
            "--broker",
            f"mqtt://127.0.0.1:{mqtt_port}",
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
        say(
            f"console: http://127.0.0.1:{api_port}/  API: http://127.0.0.1:{api_port}/docs  "
            f"(user admin, password in {data_dir / 'secrets.yaml'})"
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
                        "cloud": {"url": f"mqtt://127.0.0.1:{mqtt_port}"},
                        "local_broker": {"url": f"mqtt://127.0.0.1:{sensor_port}"},
                        "cloud_api": f"http://127.0.0.1:{api_port}",
                        "data_dir": str(data_dir / "gateways" / gid),
                        "video": video,
                        "loop_recordings": True,
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
                        *(["--faults"] if faults else []),
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
        for broker in reversed(brokers):
            broker.stop()
