"""One list of Debian packages (scripts/install-system-deps.sh) serves the README's install
command, .ci/run and every fix the code names: the README's install once left out the
RTSP tests' GStreamer packages, which only .ci/run installed (issue 9 item 16)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install-system-deps.sh"
# the package names after "apt-get install" in a message that tells how to fix something
NAME = r"[a-z0-9][a-z0-9.+-]*[a-z0-9+]"
FIX = re.compile(rf"apt-get install ({NAME}(?: {NAME})*)")


def packages() -> set[str]:
    out = subprocess.run(
        [str(SCRIPT), "--list"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return set(out.split())


def _bash_block_after(text: str, marker: str) -> str:
    start = text.index(marker)
    return text[
        text.index("```bash", start) : text.index("```\n", text.index("```bash", start) + 7)
    ]


def test_readme_install_and_ci_call_the_one_list() -> None:
    install = _bash_block_after((ROOT / "README.md").read_text(), "## Install, run, test")
    assert "scripts/install-system-deps.sh" in install and "apt-get" not in install
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/install-system-deps.sh" in ci
    assert not re.search(r"apt-get install|apt_install", ci), "a second list in .ci/run"


def test_every_package_a_fix_names_is_in_the_list() -> None:
    from tests.edge.video.servers import RTSP_PACKAGES

    named = set(RTSP_PACKAGES.split())
    for folder in ("microbrain", "edge", "cloud", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == Path(__file__).resolve():
                continue
            for match in FIX.finditer(path.read_text(errors="replace")):
                named |= set(match.group(1).split())
    assert {"mosquitto", "darknet", "opencv-doc", "espeak-ng", "gstreamer1.0-plugins-good"} <= named
    missing = named - packages()
    assert not missing, f"named in fixes but not installed by the script: {missing}"


def test_this_machine_has_every_package() -> None:
    # what the suite needs, said up front with the command that fixes it
    check = subprocess.run(
        [str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60, check=False
    )
    assert check.returncode == 0, f"{check.stdout.strip()}; run: {SCRIPT.relative_to(ROOT)}"
