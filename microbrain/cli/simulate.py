"""`microbrain simulate sensors`: publish realistic device payloads (and faults)."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import typer

from microbrain.broker.address import parse_broker_url
from microbrain.cli.errors import fail

CONNACK_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 10.0  # at the end, how long outstanding publishes may take to be acknowledged


def sensors(
    site: Path = typer.Option(..., "--site", help="the site YAML"),
    rate: float = typer.Option(
        1.0, "--rate", min=0.001, max=100_000, help="messages per second, over all sensors"
    ),
    faults: bool = typer.Option(False, "--faults", help="inject fault episodes"),
    garbage: float = typer.Option(
        0.0, "--garbage", min=0.0, max=1.0, help="fraction of malformed payloads (for drills)"
    ),
    broker: str = typer.Option("mqtt://127.0.0.1:1883", "--broker", help="the local sensor broker"),
    gateway: str = typer.Option(None, "--gateway", help="only this gateway's sensors"),
    duration: float = typer.Option(0.0, "--duration", min=0.0, help="seconds; 0 runs until Ctrl-C"),
    seed: int = typer.Option(None, "--seed", help="repeatable runs"),
    first_fault_within: float = typer.Option(
        None,
        "--first-fault-within",
        min=1.0,
        help="with --faults: every sensor has its first fault episode within this many "
        "seconds, their starts spread evenly (demos)",
    ),
) -> None:
    """Publish each sensor's readings in its vendor's format on its topic.

    Example:  microbrain simulate sensors --site configs/demo/site.yaml --rate 20 --faults
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    from microbrain.simulate.sensors import SensorSimulator
    from microbrain.site import SiteError, load_site

    try:
        address = parse_broker_url(broker)
    except ValueError as err:
        fail(f"--broker: {err}")
    if address.tls:
        fail(f"--broker {broker!r}: the simulator speaks plain MQTT only; use mqtt://")
    try:
        loaded = load_site(site)
        # the simulator counts in ticks: one message per sensor each; ticks in the window
        devices = sum(
            len(p.gateway.sensors)
            for p in loaded.gateways()
            if gateway is None or p.gateway.id == gateway
        )
        first_fault_by = (
            max(1, int(first_fault_within * rate / max(1, devices)))
            if first_fault_within is not None
            else None
        )
        sim = SensorSimulator(
            loaded,
            gateway=gateway,
            seed=seed,
            faults=faults,
            garbage_rate=garbage,
            first_fault_by=first_fault_by,
        )
    except (SiteError, KeyError, ValueError) as err:
        fail(str(err))
    if not sim.devices:
        fail("the site has no sensors to simulate")
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    connack: list[ReasonCode] = []
    answered = threading.Event()

    def on_connect(
        c: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        connack.append(reason_code)
        answered.set()
        if controllers and not reason_code.is_failure:
            c.subscribe([(topic, 1) for topic in controllers])

    controllers = sim.controllers

    def on_command(c: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        device = controllers.get(message.topic, "?")
        text = bytes(message.payload)[:300].decode(errors="replace")
        typer.echo(f"{device} got a command on {message.topic}: {text}")

    client.on_connect = on_connect
    client.on_message = on_command
    try:
        client.connect(address.host, address.port)
    except OSError as err:
        fail(f"cannot reach the broker at {broker}: {err}")
    client.loop_start()
    # a TCP connection is not a session: wait for the CONNACK, or every publish below
    # would be queued in memory and silently dropped at exit
    if not answered.wait(CONNACK_TIMEOUT_S) or connack[0].is_failure:
        client.loop_stop()
        reason = connack[0] if connack else f"no answer within {CONNACK_TIMEOUT_S:g} s"
        fail(f"the broker at {broker} refused the connection: {reason}")
    typer.echo(f"simulating {len(sim.devices)} sensor(s) at {rate:g} msg/s on {broker}")
    interval = len(sim.devices) / rate  # one tick publishes one message per sensor
    start = time.monotonic()
    sent = 0
    pending: list[mqtt.MQTTMessageInfo] = []  # QoS 1 publishes not yet PUBACKed
    delivered = 0
    try:
        while not duration or time.monotonic() - start < duration:
            t = time.monotonic() - start
            for topic, payload in sim.tick(t):
                pending.append(client.publish(topic, payload, qos=1))
                sent += 1
            if len(pending) > 1000:
                still = [info for info in pending if not info.is_published()]
                delivered += len(pending) - len(still)
                pending = still
            delay = start + (sent / len(sim.devices)) * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    except KeyboardInterrupt:
        pass
    finally:
        # let the network thread finish what is in flight before hanging up
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        for info in pending:
            # the connection is gone (or the message was refused): not delivered
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            delivered += info.is_published()
        client.disconnect()
        client.loop_stop()
    typer.echo(f"sent {sent} message(s), {delivered} delivered (acknowledged by the broker)")
    if delivered < sent:
        fail(
            f"{sent - delivered} message(s) were not acknowledged within {DRAIN_TIMEOUT_S:g} s",
            code=1,
        )
