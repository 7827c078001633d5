from pathlib import Path

import cv2
import pytest

from microbrain.resources import (
    SAMPLES,
    ResourceMissing,
    _Resource,
    resolve_source,
    sample,
    usb_device,
)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_is_installed_and_decodes(name: str) -> None:
    path = sample(name)
    if name.endswith((".jpg", ".png")):
        assert cv2.imread(str(path)) is not None
    else:
        cap = cv2.VideoCapture(str(path))
        ok, frame = cap.read()
        cap.release()
        assert ok and frame.ndim == 3


def test_default_model_loads_in_opencv(default_model_files: tuple[Path, Path]) -> None:
    pb, pbtxt = default_model_files
    net = cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))
    assert not net.empty()


def test_missing_resource_names_the_fix() -> None:
    missing = _Resource("a thing", "no_such_package_xyz", "x.bin", "pip install no-such-package")
    with pytest.raises(ResourceMissing, match="pip install no-such-package"):
        missing.locate()
    with pytest.raises(ResourceMissing, match="known:"):
        sample("nope.avi")


def test_resolve_source(tmp_path: Path) -> None:
    assert resolve_source("rtsp://cam/1") == "rtsp://cam/1"
    assert resolve_source("usb:0") == "usb:0"
    assert resolve_source("usb:/dev/video2") == "usb:/dev/video2"
    assert resolve_source("clip.mp4", tmp_path) == str(tmp_path / "clip.mp4")
    assert resolve_source("sample:vtest.avi").endswith("vtest.avi")


@pytest.mark.parametrize(
    ("source", "device"),
    [
        ("usb:0", 0),
        ("usb:12", 12),
        ("usb:/dev/video2", "/dev/video2"),
        (
            "usb:/dev/v4l/by-id/usb-046d_C920-video-index0",
            "/dev/v4l/by-id/usb-046d_C920-video-index0",
        ),
        ("rtsp://cam/1", None),
        ("clip.mp4", None),
        ("/dev/video0", None),
    ],
)
def test_usb_device(source: str, device: int | str | None) -> None:
    assert usb_device(source) == device


@pytest.mark.parametrize(
    "source",
    ["usb:", "usb:front-door", "usb:-1", "usb:0x1", "usb:video0", "usb:/tmp/cam.avi", "usb:1 2"],
)
def test_usb_device_refuses_what_is_not_a_device(source: str) -> None:
    with pytest.raises(ValueError, match="is not a USB camera: write usb:N"):
        usb_device(source)
