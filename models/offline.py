"""Ultralytics without the internet: no weight, font or settings download, ever.

Ultralytics reaches out in three places a gateway builder's machine (or CI) cannot allow:
a bare model name such as ``yolov8n.pt`` is fetched from GitHub, the plotting code fetches
``Arial.ttf`` into its config folder, and it probes DNS to decide whether it is online.
:func:`prepare` closes all three before ultralytics is imported: ``YOLO_OFFLINE=1``, a
config folder we choose holding the fonts (copies of matplotlib's DejaVuSans, which is
on disk wherever matplotlib is), and :func:`resolve_base` refuses any base that is not a
local checkpoint or an architecture yaml that ships inside ultralytics.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from importlib.util import find_spec
from pathlib import Path

# the fonts ultralytics' check_font asks for (plots: Arial; non-Latin labels: Arial.Unicode)
FONTS = ("Arial.ttf", "Arial.Unicode.ttf")
# where ultralytics keeps settings.json and the fonts unless MB_ULTRALYTICS_DIR (or
# YOLO_CONFIG_DIR) says otherwise
DEFAULT_DIR = Path("~/.cache/microbrain/ultralytics")
# "yolov8n" -> "yolov8" + scale "n": ultralytics builds every scale from one unscaled yaml
_SCALED = re.compile(r"^(yolo(?:v)?\d+)([nslmx])(-[a-z0-9-]+)?$")


class OfflineError(ValueError):
    """A base model that would need a download, or a missing local file; names the fix."""


def _font_source() -> Path:
    spec = find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise OfflineError("matplotlib is not installed; install it with: pip install matplotlib")
    font = Path(next(iter(spec.submodule_search_locations))) / "mpl-data/fonts/ttf/DejaVuSans.ttf"
    if not font.is_file():
        raise OfflineError(f"matplotlib's DejaVuSans.ttf is missing ({font}); reinstall matplotlib")
    return font


def prepare(config_dir: Path | None = None) -> Path:
    """Make ultralytics offline; call before importing it. Returns its config folder.

    Idempotent. If ultralytics is already imported, its config folder is fixed: the fonts
    go there instead (and ``YOLO_OFFLINE`` only matters for what it checks later).
    """
    os.environ["YOLO_OFFLINE"] = "1"
    if "ultralytics" in sys.modules:
        from ultralytics.utils import USER_CONFIG_DIR

        folder = Path(USER_CONFIG_DIR)
    else:
        # an explicit folder, then ours, then one the caller set for ultralytics itself
        chosen = os.environ.get("MB_ULTRALYTICS_DIR") or os.environ.get("YOLO_CONFIG_DIR")
        base = config_dir or Path(chosen or DEFAULT_DIR)
        base = base.expanduser().resolve()
        os.environ["YOLO_CONFIG_DIR"] = str(base)
        folder = base / "Ultralytics"  # the sub-folder ultralytics appends
    folder.mkdir(parents=True, exist_ok=True)
    source = _font_source()
    for name in FONTS:
        target = folder / name
        if not target.is_file():
            shutil.copyfile(source, target)
    return folder


def quiet_settings() -> None:
    """Ultralytics' own settings: no analytics sync, no hub; call after :func:`prepare`."""
    from ultralytics.utils import SETTINGS

    SETTINGS["sync"] = False


def _shipped_architectures() -> Path:
    spec = find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise OfflineError(
            "ultralytics is not installed; install the training extra: pip install -e '.[train]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "cfg" / "models"


def resolve_base(base: str) -> str:
    """The base to train from, as ultralytics takes it, if it needs no download.

    Accepted: a path to a local checkpoint (``.pt``) or architecture yaml, or the name of
    an architecture yaml shipped inside ultralytics (``yolov8n.yaml``, ``yolo11n.yaml``:
    random weights). Refused, with the fix: a bare weights name (``yolov8n.pt``), which
    ultralytics would download, and anything else.
    """
    path = Path(base).expanduser()
    if path.suffix not in (".pt", ".yaml", ".yml"):
        raise OfflineError(
            f"base {base!r} is neither a checkpoint (.pt) nor an architecture (.yaml); "
            "give e.g. yolov8n.yaml (trains from scratch) or the path of a local .pt"
        )
    if path.is_file():
        return str(path.resolve())
    if path.suffix == ".pt":
        raise OfflineError(
            f"base {base!r} is not a file here, and ultralytics would download it: microbrain "
            "trains offline. Give the path of a local checkpoint, or an architecture yaml "
            "such as yolov8n.yaml or yolo11n.yaml to train from scratch"
        )
    if path.parent != Path("."):
        raise OfflineError(f"base {base!r}: no such architecture file")
    if re.search(r"-(cls|seg|pose|obb|world|worldv2)\b", path.stem):
        raise OfflineError(
            f"base {base!r} is not a detection architecture; microbrain trains detectors "
            "(e.g. yolov8n.yaml, yolo11n.yaml)"
        )
    match = _SCALED.match(path.stem)
    unscaled = f"{match[1]}{match[3] or ''}{path.suffix}" if match else path.name
    shipped = _shipped_architectures()
    if not any(shipped.rglob(path.name)) and not any(shipped.rglob(unscaled)):
        known = sorted({p.name for p in shipped.rglob("yolo*.yaml")})[:12]
        raise OfflineError(
            f"base {base!r} is not an architecture shipped with ultralytics; "
            f"known ones include {', '.join(known)} (a scale letter n/s/m/l/x goes after "
            "the version, e.g. yolov8n.yaml), or give a local file"
        )
    return path.name
