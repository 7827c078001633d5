"""``microbrain model push|rollout|status|abort|rollback|key``: the cloud's model registry
over its HTTP API, as an engineer (``--cloud``, ``--user``; the password from
``MB_PASSWORD`` or a prompt).

Example:  microbrain model push runs/best.onnx --name yolo-mb --version 1.2.0 --evaluation eval.json
Example:  microbrain model rollout 7 --compound c1/k1 --canary 1 --canary-healthy 600
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from microbrain.cli.errors import fail

CloudUrl = Annotated[
    str,
    typer.Option("--cloud", envvar="MB_CLOUD_URL", help="the cloud's base URL (env MB_CLOUD_URL)"),
]
User = Annotated[
    str, typer.Option("--user", envvar="MB_USER", help="an engineer or admin (env MB_USER)")
]
Password = Annotated[
    str | None,
    typer.Option("--password", envvar="MB_PASSWORD", help="(env MB_PASSWORD; prompted when unset)"),
]
AsJson = Annotated[bool, typer.Option("--json", help="print the API's JSON answer")]
DEFAULT_CLOUD = "http://127.0.0.1:8000"


class Cloud:
    """An HTTP client logged in to the cloud's API with a user's bearer token."""

    def __init__(self, url: str, user: str, password: str | None) -> None:
        if password is None:
            password = typer.prompt(f"password for {user}", hide_input=True)
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=120)
        try:
            r = self.http.post("/api/auth/token", json={"username": user, "password": password})
        except httpx.HTTPError as err:
            fail(f"cannot reach the cloud at {url} ({err}); is it running? (--cloud URL)")
        if r.status_code != 200:
            fail(f"login as {user!r} refused ({r.status_code}): {_detail(r)}")
        self.http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201), **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as err:
            fail(f"{method} {path}: {err}")
        if r.status_code not in ok:
            fail(f"{method} {path} refused ({r.status_code}): {_detail(r)}")
        return r.json()


def _detail(r: httpx.Response) -> str:
    try:
        detail = r.json().get("detail", r.text)
    except ValueError:
        return r.text[:500]
    return detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)[:1000]


def _print_rollout(body: dict[str, Any]) -> None:
    flags = " (rollback)" if body["rollback"] else ""
    flags += f" (forced: {body['force_reason']})" if body["forced"] else ""
    typer.echo(
        f"rollout {body['id']}: {body['model']} serial {body['serial']} — {body['state']}{flags}"
    )
    if body.get("reason"):
        typer.echo(f"  reason: {body['reason']}")
    counts = ", ".join(f"{n} {state}" for state, n in sorted(body["counts"].items()))
    typer.echo(f"  gateways: {counts or 'none'}")
    for g in body["gateways"]:
        tags = (" canary" if g["canary"] else "") + ("" if g["online"] else " offline")
        why = f" — {g['reason']}" if g["reason"] else ""
        typer.echo(
            f"  {g['gateway']:<24} {g['state']:<10} {g['running_version'] or '-':<24}{tags}{why}"
        )


def push(
    model: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the .onnx file")],
    name: Annotated[str, typer.Option(help="model name, e.g. yolo-mb")],
    version: Annotated[str, typer.Option(help="version, new for this name, e.g. 1.2.0")],
    evaluation: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="`microbrain model eval`'s JSON"),
    ] = None,
    classes: Annotated[
        str | None, typer.Option(help="comma-separated; default: the file's metadata")
    ] = None,
    input_size: Annotated[int | None, typer.Option(min=32, max=2048)] = None,
    min_gateway_version: Annotated[str, typer.Option()] = "0.1.0",
    expires_days: Annotated[int, typer.Option(min=1, max=3650)] = 365,
    notes: Annotated[str | None, typer.Option(help="free text for the model card")] = None,
    cloud: CloudUrl = DEFAULT_CLOUD,
    user: User = "admin",
    password: Password = None,
    as_json: AsJson = False,
) -> None:
    """Register a model file with its card in the cloud's registry (it is hashed, loaded
    with onnxruntime and kept under its sha256).

    Example:  microbrain model push best.onnx --name yolo-mb --version 1.2.0 --evaluation eval.json
    """
    api = Cloud(cloud, user, password)
    form = {
        "name": name,
        "version": version,
        "min_gateway_version": min_gateway_version,
        "expires_days": str(expires_days),
    }
    if evaluation is not None:
        form["evaluation"] = evaluation.read_text()
    if classes:
        form["classes"] = classes
    if input_size:
        form["input_size"] = str(input_size)
    if notes:
        form["notes"] = notes
    size = model.stat().st_size
    with (
        model.open("rb") as f,
        typer.progressbar(length=size, label=f"uploading {model.name}") as bar,
    ):
        body = api.call(
            "POST", "/api/models", files={"file": (model.name, _Counted(f, bar))}, data=form
        )
    if as_json:
        typer.echo(json.dumps(body, ensure_ascii=False, indent=2))
        return
    typer.echo(f"registered model {body['id']}: {body['name']} {body['version']}")
    typer.echo(f"  sha256 {body['sha256']}, {body['bytes']} bytes")
    typer.echo(f"  classes: {', '.join(body['card']['classes'])}")
    if body["gate"]:
        typer.echo("  gate: may not roll out unforced: " + "; ".join(body["gate"]))


class _Counted:
    """A file that moves a progress bar as it is read."""

    def __init__(self, f: Any, bar: Any) -> None:
        self.f, self.bar = f, bar

    def read(self, n: int = -1) -> bytes:
        chunk: bytes = self.f.read(n)
        self.bar.update(len(chunk))
        return chunk


def _target(
    gateway: list[str] | None, compound: list[str] | None, community: list[str] | None, all_: bool
) -> dict[str, Any]:
    given = [
        (kind, ids)
        for kind, ids in (("gateway", gateway), ("compound", compound), ("community", community))
        if ids
    ]
    if len(given) + all_ != 1:
        fail("name one target: --gateway, --compound, --community (repeatable) or --all")
    return {"kind": "all"} if all_ else {"kind": given[0][0], "ids": list(given[0][1])}


def rollout(
    model_id: Annotated[int, typer.Argument(min=1, help="the registry's model id (see push)")],
    gateway: Annotated[list[str] | None, typer.Option(help="a gateway id")] = None,
    compound: Annotated[list[str] | None, typer.Option(help="community/compound")] = None,
    community: Annotated[list[str] | None, typer.Option(help="a community id")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every gateway in your area")] = False,
    canary: Annotated[
        str, typer.Option(help="how many canaries (0: none), or gateway ids, comma-separated")
    ] = "1",
    canary_healthy: Annotated[
        int, typer.Option(min=0, help="seconds the canary must be healthy before the rest")
    ] = 300,
    abort_failures: Annotated[int, typer.Option(min=1, help="canary failures that abort")] = 1,
    abort_failures_total: Annotated[
        int | None, typer.Option(min=1, help="failures overall that abort (default: a tenth)")
    ] = None,
    abort_fp_ratio: Annotated[
        float, typer.Option(min=0.01, help="abort when the canary's FP rate > previous × this")
    ] = 1.5,
    force: Annotated[
        str | None, typer.Option(help="roll out despite the evaluation gate; the reason")
    ] = None,
    cloud: CloudUrl = DEFAULT_CLOUD,
    user: User = "admin",
    password: Password = None,
    as_json: AsJson = False,
) -> None:
    """Roll a registered model out: canary first, the rest after the canary has been
    healthy for --canary-healthy seconds; stops past the abort thresholds.

    Example:  microbrain model rollout 7 --compound c1/k1 --canary 1 --canary-healthy 600
    """
    body: dict[str, Any] = {
        "model_id": model_id,
        "target": _target(gateway, compound, community, all_),
        "canary": int(canary) if canary.isdigit() else [c.strip() for c in canary.split(",")],
        "canary_healthy_s": canary_healthy,
        "abort_failures": abort_failures,
        "abort_fp_ratio": abort_fp_ratio,
    }
    if abort_failures_total is not None:
        body["abort_failures_total"] = abort_failures_total
    if force:
        body |= {"force": True, "force_reason": force}
    answer = Cloud(cloud, user, password).call("POST", "/api/rollouts", json=body)
    _echo(answer, as_json)


def _echo(body: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(body, ensure_ascii=False, indent=2))
    elif isinstance(body, list):
        for item in body:
            _print_rollout(item)
    else:
        _print_rollout(body)


def status(
    rollout_id: Annotated[
        int | None, typer.Argument(min=1, help="one rollout; default: all")
    ] = None,
    cloud: CloudUrl = DEFAULT_CLOUD,
    user: User = "admin",
    password: Password = None,
    as_json: AsJson = False,
) -> None:
    """Rollouts and each gateway's state, reason and running version."""
    api = Cloud(cloud, user, password)
    path = f"/api/rollouts/{rollout_id}" if rollout_id else "/api/rollouts"
    _echo(api.call("GET", path), as_json)


def abort(
    rollout_id: Annotated[int, typer.Argument(min=1)],
    reason: Annotated[str | None, typer.Option(help="recorded in the audit log")] = None,
    cloud: CloudUrl = DEFAULT_CLOUD,
    user: User = "admin",
    password: Password = None,
    as_json: AsJson = False,
) -> None:
    """Stop an active rollout (installed gateways keep the model; roll it back for that)."""
    body = Cloud(cloud, user, password).call(
        "POST", f"/api/rollouts/{rollout_id}/abort", json={"reason": reason}
    )
    _echo(body, as_json)


def rollback(
    rollout_id: Annotated[int, typer.Argument(min=1)],
    to: Annotated[
        int | None, typer.Option("--to", min=1, help="model id; default: the previous one")
    ] = None,
    cloud: CloudUrl = DEFAULT_CLOUD,
    user: User = "admin",
    password: Password = None,
    as_json: AsJson = False,
) -> None:
    """Take a rollout's gateways back with a new signed manifest (higher serial,
    rollback=true) for the previous model."""
    body = Cloud(cloud, user, password).call(
        "POST", f"/api/rollouts/{rollout_id}/rollback", json={"model_id": to}
    )
    _echo(body, as_json)


def key(
    cloud: CloudUrl = DEFAULT_CLOUD,
    out: Annotated[
        Path | None, typer.Option(help="write it here (a gateway's model_key file)")
    ] = None,
) -> None:
    """The registry's public key (one base64 line) for the gateways' ``model_key``."""
    try:
        r = httpx.get(f"{cloud.rstrip('/')}/api/models/key", timeout=30)
    except httpx.HTTPError as err:
        fail(f"cannot reach the cloud at {cloud} ({err}); is it running? (--cloud URL)")
    if r.status_code != 200:
        fail(f"GET /api/models/key refused ({r.status_code}): {_detail(r)}")
    text = r.text.strip()
    if out is not None:
        out.write_text(text + "\n")
        typer.echo(f"wrote {out}")
    else:
        typer.echo(text)
