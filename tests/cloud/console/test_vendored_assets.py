"""The console's vendored front-end files are the ones scripts/vendor_web_assets.py pinned.

Offline: the committed files are checked against the committed VENDORED.json and the
script's pin table; the script's tarball checks run on tarballs built here.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "vendor_web_assets.py"
VENDOR = REPO / "cloud" / "console" / "static" / "vendor"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vendor_web_assets", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


vendor = _load_script()
MANIFEST = json.loads((VENDOR / "VENDORED.json").read_text(encoding="utf-8"))
FILES = [item for entry in MANIFEST["packages"].values() for item in entry["files"]]


@pytest.mark.parametrize("item", FILES, ids=[item["path"] for item in FILES])
def test_each_listed_file_has_its_sha256_and_size(item):
    data = (VENDOR / item["path"]).read_bytes()
    assert len(data) == item["size"]
    assert hashlib.sha256(data).hexdigest() == item["sha256"]


def test_every_package_vendors_its_licence():
    for name, entry in MANIFEST["packages"].items():
        assert (VENDOR / name / "LICENSE").stat().st_size > 0
        assert f"{name}/LICENSE" in {item["path"] for item in entry["files"]}
        assert entry["licence"]


def test_manifest_versions_are_the_scripts_pins():
    pins = {pin.name: (pin.version, pin.tarball_sha256) for pin in vendor.PINS}
    listed = {
        name: (entry["version"], entry["tarball_sha256"])
        for name, entry in MANIFEST["packages"].items()
    }
    assert listed == pins
    assert pins["htmx.org"][0].startswith("2.0.")
    assert pins["htmx-ext-sse"][0].startswith("2.")
    assert pins["echarts"][0].startswith("5.")


def test_the_console_scripts_are_vendored():
    for path in ("htmx.org/htmx.min.js", "htmx-ext-sse/sse.js", "echarts/echarts.min.js"):
        assert path in {item["path"] for item in FILES}


def test_the_committed_folder_passes_the_check():
    assert vendor.check_vendor_dir(VENDOR) == []
    assert vendor.main(["--check"]) == 0


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "vendor"
    shutil.copytree(VENDOR, target)
    assert vendor.check_vendor_dir(target) == []
    return target


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_changed_byte_is_reported(copy: Path, capsys):
    _flip_a_byte(copy / "htmx.org" / "htmx.min.js")
    problems = vendor.check_vendor_dir(copy)
    assert len(problems) == 1
    assert problems[0].startswith("htmx.org/htmx.min.js: sha256")
    assert vendor.main(["--check", "--vendor-dir", str(copy)]) == 1
    assert "MISMATCH htmx.org/htmx.min.js" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda d: (d / "echarts" / "NOTICE").unlink(), "echarts/NOTICE: missing"),
        (
            lambda d: (d / "htmx-ext-sse" / "sse.js").write_bytes(b"x"),
            "htmx-ext-sse/sse.js: size 1",
        ),
        (lambda d: (d / "htmx.org" / "evil.js").write_text("1"), "htmx.org/evil.js: on disk"),
        (lambda d: (d / "VENDORED.json").unlink(), "VENDORED.json: missing"),
        (lambda d: (d / "VENDORED.json").write_text("{"), "VENDORED.json: unreadable"),
    ],
    ids=["file-removed", "file-truncated", "file-added", "manifest-removed", "manifest-broken"],
)
def test_damage_is_reported(copy: Path, damage, expected):
    damage(copy)
    problems = vendor.check_vendor_dir(copy)
    assert any(expected in problem for problem in problems), problems


def _edit_manifest(directory: Path, change) -> None:
    path = directory / "VENDORED.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest["packages"])
    path.write_text(json.dumps(manifest), encoding="utf-8")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: p["echarts"].update(version="5.5.1"), "echarts: VENDORED.json has 5.5.1"),
        (lambda p: p.pop("zrender"), "zrender: pinned at"),
        (
            lambda p: p["htmx.org"]["files"][0].update(path="../../etc/passwd"),
            "bad file entry",
        ),
        (
            lambda p: p["htmx.org"].update(
                files=[f for f in p["htmx.org"]["files"] if f["source"] != "LICENSE"]
            ),
            "htmx.org: no LICENSE file listed",
        ),
    ],
    ids=["version-differs-from-pin", "pinned-package-missing", "path-escapes", "no-licence"],
)
def test_a_manifest_out_of_step_with_the_pins_is_reported(copy: Path, change, expected):
    _edit_manifest(copy, change)
    problems = vendor.check_vendor_dir(copy)
    assert any(expected in problem for problem in problems), problems


# -- the download's checks, on tarballs built here ----------------------------------------


def _tarball(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if symlink is not None:
            info = tarfile.TarInfo(f"package/{symlink}")
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            archive.addfile(info)
    return buffer.getvalue()


def _pin(tarball: bytes, **overrides):
    fields = {
        "name": "demo",
        "version": "1.2.3",
        "licence": "MIT",
        "tarball_sha256": hashlib.sha256(tarball).hexdigest(),
        "files": {"dist/demo.js": "demo.js", "LICENSE": "LICENSE"},
        "why": "test",
    }
    return vendor.Pin(**{**fields, **overrides})


PACKAGE_JSON = json.dumps({"name": "demo", "version": "1.2.3", "license": "MIT"}).encode()
GOOD = {"package.json": PACKAGE_JSON, "dist/demo.js": b"demo()", "LICENSE": b"MIT text"}


def _sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def test_a_good_tarball_gives_only_the_pinned_files():
    tarball = _tarball({**GOOD, "dist/other.js": b"not wanted"})
    pin = _pin(tarball)
    vendor.verify_sri(tarball, _sri(tarball))
    vendor.verify_pinned_sha256(tarball, pin)
    contents, package_json = vendor.extract_files(tarball, pin)
    assert contents == {"demo.js": b"demo()", "LICENSE": b"MIT text"}
    assert vendor.licence_of(package_json, pin) == ("MIT", "package.json")


@pytest.mark.parametrize(
    "integrity",
    ["sha512-" + base64.b64encode(b"\0" * 64).decode(), "sha1-abc", ""],
    ids=["wrong-sha512", "sha1-only", "empty"],
)
def test_a_tarball_not_matching_the_registry_integrity_is_refused(integrity):
    tarball = _tarball(GOOD)
    with pytest.raises(vendor.VendorError):
        vendor.verify_sri(tarball, integrity)


def test_a_tarball_not_matching_the_pinned_sha256_is_refused():
    tarball = _tarball(GOOD)
    republished = _tarball({**GOOD, "dist/demo.js": b"demo(); steal()"})
    with pytest.raises(vendor.VendorError, match="is not the pinned"):
        vendor.verify_pinned_sha256(republished, _pin(tarball))


@pytest.mark.parametrize(
    ("tarball", "pin_overrides", "message"),
    [
        (_tarball({"package.json": PACKAGE_JSON, "LICENSE": b"x"}), {}, "has no package/dist"),
        (
            _tarball({"package.json": PACKAGE_JSON, "LICENSE": b"x"}, symlink="dist/demo.js"),
            {},
            "not a regular file",
        ),
        (_tarball(GOOD), {"version": "9.9.9"}, "not demo@9.9.9"),
        (_tarball(GOOD), {"files": {"dist/demo.js": "../demo.js"}}, "unsafe path"),
        (_tarball(GOOD), {"files": {"dist/demo.js": "demo.js"}}, "must vendor the package's"),
        (b"not a tarball", {}, "not a gzip tarball"),
    ],
    ids=["file-missing", "symlink", "other-version", "escaping-target", "no-licence", "garbage"],
)
def test_a_bad_tarball_is_refused(tarball, pin_overrides, message):
    pin = _pin(tarball, **pin_overrides)
    with pytest.raises(vendor.VendorError, match=message):
        vendor.extract_files(tarball, pin)


def test_a_licence_other_than_the_pinned_one_is_refused():
    tarball = _tarball(GOOD)
    with pytest.raises(vendor.VendorError, match="review the new licence"):
        vendor.licence_of({"license": "GPL-3.0-only"}, _pin(tarball))
    assert vendor.licence_of({}, _pin(tarball))[1].startswith("LICENSE file")


def test_an_unreachable_registry_names_the_fix(tmp_path: Path, capsys):
    # port 9 (discard) on loopback: refused at once, nothing leaves the machine
    target = tmp_path / "vendor"
    assert vendor.main(["--registry", "http://127.0.0.1:9", "--vendor-dir", str(target)]) == 2
    err = capsys.readouterr().err
    assert "cannot reach 127.0.0.1:9" in err and "--registry" in err
    assert not target.exists()
