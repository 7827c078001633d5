"""``microbrain model push|rollout|status|abort|rollback|key`` against the served API."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cloud.model_registry import step as rollout_step
from cloud.permissions import Role
from microbrain.cli import app
from microbrain.signing import parse_public_key
from tests.cloud.model_registry.conftest import PASSWORD, Registry, evaluation, onnx_model
from tests.utils.api_server import serve


def test_push_rollout_status_abort_rollback_and_key_from_the_command_line(
    registry: Registry, tmp_path
):
    runner = CliRunner()
    user = registry.named_user(Role.ENGINEER)
    gw = registry.gateway()
    registry.heartbeat(gw)
    model = onnx_model(tmp_path / "best.onnx")
    (tmp_path / "eval.json").write_text(json.dumps(evaluation()))
    worse = tmp_path / "worse.json"
    worse.write_text(json.dumps(evaluation(candidate_map=0.1)))
    with serve(registry.client.app) as served:
        login = ["--cloud", served.url, "--user", user]
        env = {"MB_PASSWORD": PASSWORD}

        def run(*args: str, code: int = 0) -> str:
            result = runner.invoke(app, ["model", *args, *login], env=env)
            assert result.exit_code == code, result.output
            return result.output

        out = run("push", str(model), "--name", registry.name, "--version", "2.0.0",
                  "--evaluation", str(tmp_path / "eval.json"), "--json")  # fmt: skip
        pushed = json.loads(out[out.index("{") :])
        assert pushed["card"]["classes"] == ["person", "ebike", "dog"] and not pushed["gate"]
        out = run("push", str(model), "--name", registry.name, "--version", "2.0.1",
                  "--evaluation", str(worse))  # fmt: skip
        assert "may not roll out unforced" in out
        out = run("rollout", str(pushed["id"]), "--gateway", gw.gateway, "--canary", "0")
        assert f"{registry.name}@2.0.0" in out and gw.gateway in out and "rolling" in out
        rollout_id = int(out.split()[1].rstrip(":"))
        rollout_step.run_step(registry.factory, registry.state.commands, registry.clock(), 60)
        out = run("status", str(rollout_id))
        assert "sent" in out
        # the gate: refused with its reason, then forced with one
        second = pushed["id"] + 1
        out = run("rollout", str(second), "--gateway", gw.gateway, code=2)
        assert "mAP50" in out
        out = run("abort", str(rollout_id), "--reason", "wrong compound")
        assert "aborted" in out
        out = run("rollout", str(second), "--gateway", gw.gateway, "--canary", "0",
                  "--force", "site asked for the ebike class")  # fmt: skip
        assert "forced: site asked for the ebike class" in out
        # the forced rollout holds the gateway: no rollback over it
        out = run("rollback", str(rollout_id), "--to", str(second), code=2)
        assert "still active" in out
        # wrong password: a clear refusal
        bad = runner.invoke(app, ["model", "status", *login], env={"MB_PASSWORD": "nope"})
        assert bad.exit_code == 2 and "login" in bad.output
        key_file = tmp_path / "model.key"
        result = runner.invoke(app, ["model", "key", "--cloud", served.url, "--out", str(key_file)])
        assert result.exit_code == 0, result.output
        parse_public_key(key_file.read_text())
