#!/usr/bin/env python
"""Vendor the duty console's front-end libraries from the npm registry, pinned and checked.

The cloud runs on intranets without internet, so the console may not load htmx or ECharts
from a CDN: the files live in ``cloud/console/static/vendor/`` and are committed. This
script is how they got there and how anyone can tell they are still what was downloaded.

Fetch (needs https://registry.npmjs.org, or a mirror given with ``--registry``):

    .venv/bin/python scripts/vendor_web_assets.py

For each package in ``PINS`` it reads the registry's metadata for the pinned version,
downloads ``dist.tarball``, refuses it unless it matches both the registry's
``dist.integrity`` (sha512, SRI) and the sha256 pinned below (so a tarball republished
under the same version is refused too), and writes only the named files plus the licence
texts to ``vendor/<package>/``. ``vendor/VENDORED.json`` records, per package, version,
SPDX licence, tarball URL and sha256, and each file's path, sha256 and size.

Check (offline, for CI and reviewers; exit 1 naming each mismatch):

    .venv/bin/python scripts/vendor_web_assets.py --check

To move to a new version: change its ``version`` and ``tarball_sha256`` in ``PINS`` (the
sha256 of the tarball you reviewed: ``sha256sum <name>-<version>.tgz``), run the script,
read the diff, commit the script and ``cloud/console/static/vendor/`` together.

Only the standard library is used, so the script runs before any venv exists.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import shutil
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENDOR_DIR = REPO / "cloud" / "console" / "static" / "vendor"
MANIFEST_NAME = "VENDORED.json"
DEFAULT_REGISTRY = "https://registry.npmjs.org"
HTTP_TIMEOUT_S = 60.0
# npm packs every file under this top-level folder
TARBALL_ROOT = "package/"


@dataclass(frozen=True)
class Pin:
    """One npm package at one exact version, and which of its files the console serves.

    ``files`` maps a path inside the package (``dist/htmx.min.js``) to the path it gets
    under ``vendor/<name>/``; targets drop ``dist/`` (the repo's .gitignore ignores
    ``dist/`` folders). ``licence`` is the SPDX id expected in package.json; where a
    package.json has none (htmx-ext-sse), it is the id of its LICENSE file's text.
    """

    name: str
    version: str
    licence: str
    tarball_sha256: str
    files: Mapping[str, str]
    why: str


PINS: tuple[Pin, ...] = (
    Pin(
        name="htmx.org",
        version="2.0.11",
        licence="0BSD",
        tarball_sha256="165a2655073e9e6e55e307a7c74e8ebcdb76afb7701f9c16cfd106a13add408e",
        files={"dist/htmx.min.js": "htmx.min.js", "LICENSE": "LICENSE"},
        why="htmx 2.0, latest patch; every console page",
    ),
    Pin(
        name="htmx-ext-sse",
        version="2.2.4",
        licence="0BSD",
        tarball_sha256="90b46f5ab915ba2f64e6348448c8dba509277a47e15c125ffb65754eb4f6b5dc",
        # not htmx.org's dist/ext/sse.js: that is the htmx 1.x extension, kept there only
        # for old unpkg links (its dist/ext/README.md says so)
        files={"dist/sse.js": "sse.js", "LICENSE": "LICENSE"},
        why="the SSE extension for htmx 2; live alert list",
    ),
    Pin(
        name="echarts",
        version="5.6.0",
        licence="Apache-2.0",
        tarball_sha256="e1b82487dd7f8d9f0438eec1f1433051148e0095ac7a15d4db890afda45cf610",
        files={
            "dist/echarts.min.js": "echarts.min.js",
            "LICENSE": "LICENSE",
            "NOTICE": "NOTICE",
            # LICENSE points to it: d3 code is compiled into the dist build
            "licenses/LICENSE-d3": "licenses/LICENSE-d3",
        },
        why="ECharts 5, latest; the wall page only (about 330 KB gzipped)",
    ),
    Pin(
        name="zrender",
        version="5.6.1",
        licence="BSD-3-Clause",
        tarball_sha256="0a2228b558e1a4bd8f1c74d67bb492923e3f5807d03c83d1665fb97af180dc26",
        # licence only: echarts.min.js has zrender (echarts 5.6.0 depends on zrender 5.6.1)
        # compiled in, and BSD-3-Clause asks for its notice beside a binary redistribution
        files={"LICENSE": "LICENSE"},
        why="licence text of the renderer bundled in echarts.min.js",
    ),
)


class VendorError(Exception):
    """A download or a tarball that must not be vendored; the message says what to do."""


@dataclass(frozen=True)
class Fetched:
    """A verified package: where its tarball came from and the bytes of the chosen files."""

    pin: Pin
    tarball_url: str
    tarball_integrity: str
    licence: str
    licence_source: str
    contents: Mapping[str, bytes]  # target path under vendor/<name>/ -> bytes


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_sri(data: bytes, integrity: str) -> None:
    """Refuse ``data`` unless a sha512 entry of the SRI string ``integrity`` matches it.

    npm writes ``sha512-<base64>``; an SRI string may list several hashes separated by
    spaces. Weaker algorithms (sha1 in old packages) are not accepted on their own.
    """
    wanted = [
        entry.split("-", 1)[1].split("?", 1)[0]
        for entry in integrity.split()
        if entry.startswith("sha512-")
    ]
    if not wanted:
        raise VendorError(f"registry integrity {integrity!r} has no sha512 entry")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")
    if actual not in wanted:
        raise VendorError(
            f"tarball sha512 {actual} does not match the registry's integrity {integrity}"
        )


def verify_pinned_sha256(data: bytes, pin: Pin) -> None:
    """Refuse a tarball whose sha256 is not the one pinned (a republished or swapped file)."""
    actual = sha256_hex(data)
    if actual != pin.tarball_sha256:
        raise VendorError(
            f"{pin.name}@{pin.version}: tarball sha256 {actual} is not the pinned "
            f"{pin.tarball_sha256}; if the new tarball was reviewed, update the pin"
        )


def _safe_target(target: str) -> str:
    """A relative POSIX path with no ``..``: where the manifest and pins may write or read."""
    parts = target.split("/")
    if not target or target.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise VendorError(f"unsafe path {target!r}: must be relative, without '..'")
    return target


def extract_files(tarball: bytes, pin: Pin) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The pinned files' bytes (keyed by target) and the package.json, read in memory.

    Nothing is extracted to disk and only regular-file members are read, so a hostile
    tarball (symlinks, ``../`` names) cannot write anywhere; a missing file is an error.
    """
    try:
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
            package_json = json.loads(_read_member(archive, "package.json", pin))
            contents = {
                _safe_target(target): _read_member(archive, source, pin)
                for source, target in pin.files.items()
            }
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise VendorError(f"{pin.name}@{pin.version}: not a gzip tarball: {exc}") from exc
    except ValueError as exc:  # json.JSONDecodeError
        raise VendorError(f"{pin.name}@{pin.version}: bad package.json: {exc}") from exc
    if not isinstance(package_json, dict):
        raise VendorError(f"{pin.name}@{pin.version}: package.json is not an object")
    if package_json.get("name") != pin.name or package_json.get("version") != pin.version:
        raise VendorError(
            f"tarball's package.json says {package_json.get('name')}@"
            f"{package_json.get('version')}, not {pin.name}@{pin.version}"
        )
    if "LICENSE" not in contents:
        raise VendorError(f"{pin.name}: the pin must vendor the package's LICENSE file")
    return contents, package_json


def _read_member(archive: tarfile.TarFile, source: str, pin: Pin) -> bytes:
    name = TARBALL_ROOT + source
    try:
        member = archive.getmember(name)
    except KeyError:
        raise VendorError(
            f"{pin.name}@{pin.version}: tarball has no {name}; check its layout "
            "(tar tzf) and fix the pin's files"
        ) from None
    handle = archive.extractfile(member) if member.isfile() else None
    if handle is None:
        raise VendorError(f"{pin.name}@{pin.version}: {name} is not a regular file")
    with handle:
        return handle.read()


def licence_of(package_json: Mapping[str, Any], pin: Pin) -> tuple[str, str]:
    """The SPDX licence and where it was read; refuses one that differs from the pin."""
    declared = package_json.get("license")
    if declared is None:
        return pin.licence, "LICENSE file (package.json has no license field)"
    if declared != pin.licence:
        raise VendorError(
            f"{pin.name}@{pin.version}: package.json licence {declared!r} is not the pinned "
            f"{pin.licence!r}; review the new licence before changing the pin"
        )
    return declared, "package.json"


def _get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json, */*"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        raise VendorError(f"GET {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        host = urllib.parse.urlsplit(url).netloc
        raise VendorError(
            f"cannot reach {host} ({exc}). Run this script on a machine that reaches the "
            f"npm registry, or pass --registry URL of an npm mirror on your network; then "
            f"commit cloud/console/static/vendor/. Nothing was changed on disk. "
            f"(--check needs no network.)"
        ) from exc


def fetch(pin: Pin, registry: str) -> Fetched:
    """Download and verify one pinned package; raises VendorError before anything is written."""
    meta_url = f"{registry.rstrip('/')}/{urllib.parse.quote(pin.name, safe='@')}/{pin.version}"
    try:
        meta = json.loads(_get(meta_url))
        tarball_url: str = meta["dist"]["tarball"]
        integrity: str = meta["dist"]["integrity"]
    except (ValueError, KeyError, TypeError) as exc:
        raise VendorError(f"{meta_url}: no dist.tarball / dist.integrity ({exc!r})") from exc
    if meta.get("version") != pin.version:
        raise VendorError(f"{meta_url}: registry answered version {meta.get('version')!r}")
    tarball = _get(tarball_url)
    verify_sri(tarball, integrity)
    verify_pinned_sha256(tarball, pin)
    contents, package_json = extract_files(tarball, pin)
    licence, licence_source = licence_of(package_json, pin)
    return Fetched(pin, tarball_url, integrity, licence, licence_source, contents)


def manifest_of(fetched: Sequence[Fetched], registry: str) -> dict[str, Any]:
    """VENDORED.json's content; file paths are relative to the vendor folder."""
    packages: dict[str, Any] = {}
    for item in fetched:
        sources = {target: source for source, target in item.pin.files.items()}
        packages[item.pin.name] = {
            "version": item.pin.version,
            "licence": item.licence,
            "licence_source": item.licence_source,
            "why": item.pin.why,
            "tarball": item.tarball_url,
            "tarball_sha256": item.pin.tarball_sha256,
            "tarball_integrity": item.tarball_integrity,
            "files": [
                {
                    "path": f"{item.pin.name}/{target}",
                    "source": sources[target],
                    "sha256": sha256_hex(data),
                    "size": len(data),
                }
                for target, data in sorted(item.contents.items())
            ],
        }
    return {
        "about": (
            "Written by scripts/vendor_web_assets.py from the npm registry; do not edit. "
            "Check with: python scripts/vendor_web_assets.py --check"
        ),
        "registry": registry,
        "packages": packages,
    }


def write_vendor_dir(vendor_dir: Path, fetched: Sequence[Fetched], registry: str) -> None:
    """Replace each package's folder with exactly its pinned files, then the manifest.

    A package's folder is emptied first so a file dropped from a pin does not linger.
    """
    vendor_dir.mkdir(parents=True, exist_ok=True)
    for item in fetched:
        package_dir = vendor_dir / item.pin.name
        if package_dir.exists():
            shutil.rmtree(package_dir)
        for target, data in item.contents.items():
            path = package_dir / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    manifest = manifest_of(fetched, registry)
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    (vendor_dir / MANIFEST_NAME).write_text(text, encoding="utf-8")


def check_vendor_dir(vendor_dir: Path, pins: Sequence[Pin] = PINS) -> list[str]:
    """Every mismatch between the files in ``vendor_dir``, its VENDORED.json and ``pins``.

    Offline. An empty list means: each listed file exists with its sha256 and size, each
    pinned package is listed at its pinned version and tarball sha256 with a LICENSE, and
    no file lies in the folder that the manifest does not list.
    """
    manifest_path = vendor_dir / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        packages: dict[str, Any] = manifest["packages"]
    except FileNotFoundError:
        return [f"{manifest_path}: missing; run scripts/vendor_web_assets.py"]
    except (ValueError, KeyError, TypeError) as exc:
        return [f"{manifest_path}: unreadable ({exc!r})"]

    problems: list[str] = []
    listed: set[str] = {MANIFEST_NAME}
    pinned = {pin.name: pin for pin in pins}
    for name in sorted(set(packages) - set(pinned)):
        problems.append(f"{name}: in {MANIFEST_NAME} but not pinned in the script")
    for name, pin in pinned.items():
        entry = packages.get(name)
        if entry is None:
            problems.append(f"{name}: pinned at {pin.version} but not in {MANIFEST_NAME}")
            continue
        if entry.get("version") != pin.version:
            listed_version = entry.get("version")
            problems.append(f"{name}: {MANIFEST_NAME} has {listed_version}, pin {pin.version}")
        if entry.get("tarball_sha256") != pin.tarball_sha256:
            problems.append(f"{name}: tarball sha256 in {MANIFEST_NAME} is not the pinned one")
        files = entry.get("files", [])
        if f"{name}/LICENSE" not in {f.get("path") for f in files}:
            problems.append(f"{name}: no LICENSE file listed")
        for item in files:
            problems.extend(_check_file(vendor_dir, item, listed))
    for path in sorted(vendor_dir.rglob("*")):
        relative = path.relative_to(vendor_dir).as_posix()
        if path.is_file() and relative not in listed:
            problems.append(f"{relative}: on disk but not in {MANIFEST_NAME}")
    return problems


def _check_file(vendor_dir: Path, item: Mapping[str, Any], listed: set[str]) -> list[str]:
    try:
        relative = _safe_target(str(item["path"]))
        want_sha, want_size = str(item["sha256"]), int(item["size"])
    except (KeyError, ValueError, TypeError, VendorError) as exc:
        return [f"{MANIFEST_NAME}: bad file entry {item!r} ({exc})"]
    listed.add(relative)
    path = vendor_dir / relative
    if not path.is_file():
        return [f"{relative}: missing"]
    data = path.read_bytes()
    if len(data) != want_size:
        return [f"{relative}: size {len(data)}, {MANIFEST_NAME} says {want_size}"]
    if sha256_hex(data) != want_sha:
        return [f"{relative}: sha256 {sha256_hex(data)}, {MANIFEST_NAME} says {want_sha}"]
    return []


def _summary(vendor_dir: Path) -> str:
    """Sizes as the console's load budget sees them (gzip is what a server may send)."""
    lines = []
    manifest = json.loads((vendor_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    for name, entry in manifest["packages"].items():
        lines.append(f"{name}@{entry['version']} ({entry['licence']})")
        for item in entry["files"]:
            if item["path"].endswith(".js"):
                data = (vendor_dir / item["path"]).read_bytes()
                gz = len(gzip.compress(data, compresslevel=9))
                lines.append(f"  {item['path']}: {len(data):,} bytes, {gz:,} gzip level 9")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="verify, offline, that the vendored files match VENDORED.json and the pins",
    )
    parser.add_argument(
        "--vendor-dir",
        type=Path,
        default=VENDOR_DIR,
        help="folder to write or check (default: %(default)s)",
    )
    parser.add_argument(
        "--registry",
        default=DEFAULT_REGISTRY,
        help="npm registry or mirror to download from (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    vendor_dir: Path = args.vendor_dir

    if args.check:
        problems = check_vendor_dir(vendor_dir)
        for problem in problems:
            print(f"MISMATCH {problem}", file=sys.stderr)
        if problems:
            print("re-run scripts/vendor_web_assets.py to restore the files", file=sys.stderr)
            return 1
        print(f"ok: {vendor_dir} matches {MANIFEST_NAME} and the pins")
        return 0

    try:
        # every package is verified before anything on disk changes
        fetched = [fetch(pin, args.registry) for pin in PINS]
    except VendorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_vendor_dir(vendor_dir, fetched, args.registry)
    print(_summary(vendor_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
