"""The ``microbrain`` command line: one entry point for the gateway, the cloud and tools.

Command modules import ``edge`` and ``cloud`` lazily inside their functions, so a
cloud-only or gateway-only install still starts the CLI.
"""

from __future__ import annotations

import typer

from microbrain.cli import (
    agent,
    analyze,
    bench,
    broker,
    cloud,
    doctor,
    model,
    model_registry,
    playbooks,
    simulate,
    site,
    up,
)

app = typer.Typer(
    name="microbrain",
    help="社区微脑 microbrain: edge video/IoT gateways and the cloud that alerts, escalates "
    "and dispatches.\n\nStart with:  microbrain site check configs/demo/site.yaml",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

site_app = typer.Typer(
    help="Validate and inspect site files (the district's YAML).", no_args_is_help=True
)
site_app.command("check")(site.check)

edge_app = typer.Typer(
    help="The compound gateway: video analytics, sensors, uplink.", no_args_is_help=True
)
edge_app.command("analyze")(analyze.analyze)
edge_app.command("run")(agent.run)

cloud_app = typer.Typer(
    help="The central service: ingest, alerts, escalation, API.", no_args_is_help=True
)
cloud_app.command("serve")(cloud.serve)

simulate_app = typer.Typer(
    help="Simulated devices for demos, load tests and drills.", no_args_is_help=True
)
simulate_app.command("sensors")(simulate.sensors)

broker_app = typer.Typer(help="MQTT broker configuration.", no_args_is_help=True)
broker_app.command("config")(broker.config)

model_app = typer.Typer(
    help="Detector models: train, export, evaluate and check them; field data as datasets.",
    no_args_is_help=True,
)
model_app.command("check")(model.check)
# the cloud's registry, over its HTTP API (microbrain/cli/model_registry.py)
for _name in ("push", "rollout", "status", "abort", "rollback", "key"):
    model_app.command(_name)(getattr(model_registry, _name))
model_app.command("train")(model.train)
model_app.command("export")(model.export)
model_app.command("eval")(model.evaluate)
model_app.command("autolabel")(model.autolabel)
dataset_app = typer.Typer(
    help="Field data: the console's verdicts as a YOLO dataset.", no_args_is_help=True
)
dataset_app.command("export")(model.dataset_export)
model_app.add_typer(dataset_app, name="dataset")

playbooks_app = typer.Typer(
    help="Smart response: what the cloud does when an alert opens.", no_args_is_help=True
)
playbooks_app.command("check")(playbooks.check)

app.add_typer(site_app, name="site")
app.add_typer(playbooks_app, name="playbooks")
app.add_typer(edge_app, name="edge")
app.add_typer(cloud_app, name="cloud")
app.add_typer(simulate_app, name="simulate")
app.add_typer(broker_app, name="broker")
app.add_typer(model_app, name="model")
app.command("bench")(bench.bench)
app.command("up")(up.up)
app.command("doctor")(doctor.doctor)


def main() -> None:
    app()
