"""The CJK font the report's charts and PDF are drawn in: Noto Sans CJK SC from Debian's
``fonts-noto-cjk``, as a lean copy made once.

Debian ships the face inside a collection of ten (``NotoSansCJK-Regular.ttc``, 20 MB)
with large OpenType layout tables (GSUB, GPOS: vertical forms, locale variants) that a
report never uses. matplotlib subsets the embedded font for every PDF with fontTools,
which decompiles those tables each time: about 1.3 s a weight, most of a PDF's time. The
lean copy is the SC face alone without them, renamed (``Microbrain CJK SC``) so that
matplotlib's font list, which also holds the collection, cannot hand back the heavy one;
subsetting it takes a fifth of the time. It is written once into matplotlib's cache
directory (atomically: several processes may start at once); when that cannot be done
the collection itself is used, slower but the same glyphs.
"""

from __future__ import annotations

import logging
import os
import tempfile
from functools import cache
from pathlib import Path

import matplotlib
from fontTools.ttLib import TTCollection, TTLibError
from matplotlib import font_manager

log = logging.getLogger(__name__)

CJK_FAMILY = "Noto Sans CJK SC"
LEAN_FAMILY = "Microbrain CJK SC"
CJK_PACKAGE = "fonts-noto-cjk"
CJK_FILES = {
    "Regular": Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    "Bold": Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"),
}
# what a report never draws with: OpenType layout (substitutions, positioning) and
# vertical metrics
DROPPED_TABLES = ("GSUB", "GPOS", "GDEF", "BASE", "JSTF", "MATH", "VORG", "vhea", "vmtx")
VERSION = 1  # in the file name: a change to how the copy is made makes a new one


class FontMissing(RuntimeError):
    """The CJK font is not installed: charts would draw boxes for Chinese."""


def _lean_copy(collection: Path, weight: str, target: Path) -> None:
    """Write the SC face of ``collection`` to ``target`` without its layout tables,
    renamed to :data:`LEAN_FAMILY`."""
    fonts = TTCollection(str(collection)).fonts
    face = next(f for f in fonts if f["name"].getDebugName(1) == CJK_FAMILY)
    for tag in DROPPED_TABLES:
        if tag in face:
            del face[tag]
    names = face["name"]
    postscript = f"{LEAN_FAMILY.replace(' ', '')}-{weight}"
    renamed = {1: LEAN_FAMILY, 16: LEAN_FAMILY, 4: f"{LEAN_FAMILY} {weight}", 6: postscript}
    for record in list(names.names):  # family, typographic family, full and PostScript name
        if record.nameID in renamed:
            where = (record.platformID, record.platEncID, record.langID)
            names.setName(renamed[record.nameID], record.nameID, *where)
    if "CFF " in face:  # the CFF table carries its own name for the font
        cff = face["CFF "].cff
        cff.fontNames = [postscript]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".otf.tmp")
    os.close(fd)
    try:
        face.save(tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _lean_family(cache_dir: Path) -> str | None:
    """Register the lean copies (making them first if need be); None when they could
    not be made."""
    targets = {w: cache_dir / f"MicrobrainCJKSC-{w}-v{VERSION}.otf" for w in CJK_FILES}
    try:
        for weight, target in targets.items():
            if not target.exists():
                _lean_copy(CJK_FILES[weight], weight, target)
                log.info("made the lean CJK font %s (once)", target)
    except (OSError, TTLibError, StopIteration, KeyError) as err:
        log.warning("lean CJK font not made (%s); drawing with the full collection", err)
        return None
    for target in targets.values():
        font_manager.fontManager.addfont(str(target))
    return LEAN_FAMILY


def _found(family: str) -> bool:
    try:
        font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
    except ValueError:
        return False
    return True


@cache
def cjk_family() -> str:
    """The family to draw Chinese in, registered with matplotlib: the lean copy, else the
    collection itself (matplotlib's font list may predate the font's installation), else
    :class:`FontMissing` naming the package to install."""
    if not all(p.exists() for p in CJK_FILES.values()):
        raise FontMissing(
            f"the CJK font {CJK_FAMILY!r} is not installed: install the Debian package "
            f"{CJK_PACKAGE} (apt-get install {CJK_PACKAGE}); looked for "
            f"{', '.join(str(p) for p in CJK_FILES.values())}"
        )
    lean = _lean_family(Path(matplotlib.get_cachedir()) / "microbrain-fonts")
    if lean is not None and _found(lean):
        return lean
    for path in CJK_FILES.values():
        font_manager.fontManager.addfont(str(path))
    if not _found(CJK_FAMILY):
        raise FontMissing(f"matplotlib does not find {CJK_FAMILY!r} in {CJK_PACKAGE}'s files")
    return CJK_FAMILY
