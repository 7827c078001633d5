from pathlib import Path

import cv2
import pytest

from microbrain.resources import SAMPLES, ResourceMissing, _Resource, resolve_source, sample


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
    assert resolve_source("clip.mp4", tmp_path) == str(tmp_path / "clip.mp4")
    assert resolve_source("sample:vtest.avi").endswith("vtest.avi")
