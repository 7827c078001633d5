"""`microbrain simulate sensors`: publish realistic device payloads (and faults)."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import typer

from microbrain.cli.errors import fail


def sensors(
    site: Path = typer.Option(..., "--site", help="the site YAML"),
    rate: float = typer.Option(1.0, "--rate", min=0.001, max=100_000,
                               help="messages per second, over all sensors"),
    faults: bool = typer.Option(False, "--faults", help="inject fault episodes"),
    garbage: float = typer.Option(0.0, "--garbage", min=0.0, max=1.0,
                                  help="fraction of malformed payloads (for drills)"),
    broker: str = typer.Option("mqtt://127.0.0.1:1883", "--broker", help="the local sensor broker"),
    gateway: str = typer.Option(None, "--gateway", help="only this gateway's sensors"),
    duration: float = typer.Option(0.0, "--duration", min=0.0, help="seconds; 0 runs until Ctrl-C"),
    seed: int = typer.Option(None, "--seed", help="repeatable runs"),
) -> None:
    """Publish each sensor's readings in its vendor's format on its topic.

    Example:  microbrain simulate sensors --site configs/demo/site.yaml --rate 20 --faults
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from microbrain.simulate.sensors import SensorSimulator
    from microbrain.site import SiteError, load_site

    parts = urlsplit(broker)
    if parts.scheme != "mqtt" or not parts.hostname:
        fail(f"--broker {broker!r} is not an mqtt://host:port URL")
    try:
        sim = SensorSimulator(load_site(site), gateway=gateway, seed=seed, faults=faults,
                              garbage_rate=garbage)
    except (SiteError, KeyError, ValueError) as err:
        fail(str(err))
    if not sim.devices:
        fail("the site has no sensors to simulate")
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    try:
        client.connect(parts.hostname, parts.port or 1883)
    except OSError as err:
        fail(f"cannot reach the broker at {broker}: {err}")
    client.loop_start()
    typer.echo(f"simulating {len(sim.devices)} sensor(s) at {rate:g} msg/s on {broker}")
    interval = len(sim.devices) / rate  # one tick publishes one message per sensor
    start = time.monotonic()
    sent = 0
    try:
        while not duration or time.monotonic() - start < duration:
            t = time.monotonic() - start
            for topic, payload in sim.tick(t):
                client.publish(topic, payload, qos=1)
                sent += 1
            delay = start + (sent / len(sim.devices)) * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    except KeyboardInterrupt:
        pass
    finally:
        client.loop_stop()
        client.disconnect()
    typer.echo(f"sent {sent} message(s)")
