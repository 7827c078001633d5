"""Edited copies of the default SSD's text graph (.pbtxt): the real frozen weights (.pb)
under a graph that ends early or does not match them — what a wrong or half-exported
model looks like to OpenCV."""

from __future__ import annotations

import re
from pathlib import Path

# one ``node { … }`` block per layer, then the ``library { }`` block
_BLOCK = re.compile(r"(?m)^(?=node \{|library \{)")


def cut_text_graph(pbtxt: Path, last: str, out: Path) -> Path:
    """A copy of ``pbtxt`` that ends with node ``last``: the layers after it (the SSD
    head, DetectionOutput last of all) are dropped, so the network's output is that
    layer's tensor instead of [1, 1, N, 7]."""
    blocks = [b for b in _BLOCK.split(pbtxt.read_text()) if b]
    library = [b for b in blocks if b.startswith("library")]
    for n, block in enumerate(blocks):
        if re.search(rf'^  name: "{re.escape(last)}"$', block, re.M):
            out.write_text("".join(blocks[: n + 1] + library))
            return out
    raise ValueError(f"no node {last!r} in {pbtxt}")


def edit_text_graph(pbtxt: Path, old: str, new: str, out: Path) -> Path:
    """A copy of ``pbtxt`` with the one line ``old`` replaced by ``new``."""
    text = pbtxt.read_text()
    if text.count(old) != 1:
        raise ValueError(f"{old!r} is not one line of {pbtxt}")
    out.write_text(text.replace(old, new))
    return out
