"""Secret files are the owner's alone from their first byte."""

from __future__ import annotations

import json
import os
from pathlib import Path

from microbrain.broker.mosquitto_conf import write_broker_config
from microbrain.files import write_private
from microbrain.site import load_site


def test_write_private_creates_and_narrows_to_0600(tmp_path: Path) -> None:
    old = os.umask(0)  # the worst umask: a plain write would be 0666
    try:
        fresh = tmp_path / "fresh"
        write_private(fresh, "s3cret\n")
        assert fresh.stat().st_mode & 0o777 == 0o600
        assert fresh.read_text() == "s3cret\n"
        existing = tmp_path / "existing"
        existing.write_text("an older, longer secret\n")
        existing.chmod(0o644)
        write_private(existing, "new\n")
        assert existing.stat().st_mode & 0o777 == 0o600
        assert existing.read_text() == "new\n"
    finally:
        os.umask(old)


def test_broker_passwd_is_written_private(tmp_path: Path, demo_site_path: Path) -> None:
    env = {
        "MB_CLOUD_PASSWORD": "pw-cloud",
        "MB_GW_XIYUAN_1_PASSWORD": "pw-x1",
        "MB_GW_XIYUAN_2_PASSWORD": "pw-x2",
        "MB_GW_DONGCHENG_GARDEN_PASSWORD": "pw-dg",
        "MB_GW_DONGCHENG_PLAZA_PASSWORD": "pw-dp",
    }
    (tmp_path / "dynamic-security.json").write_text("left over\n")
    (tmp_path / "dynamic-security.json").chmod(0o644)
    files = write_broker_config(load_site(demo_site_path), tmp_path, env=env)
    assert files.dynsec.stat().st_mode & 0o777 == 0o600
    assert json.loads(files.dynsec.read_text())["clients"][0]["username"] == "cloud"
