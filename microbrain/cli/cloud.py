"""`microbrain cloud serve` (placeholder until issue 5 lands; its owner replaces this file)."""

from __future__ import annotations

from microbrain.cli.errors import fail


def serve() -> None:
    """Not built yet (issue 5)."""
    fail("'microbrain cloud serve' is not built yet (issue 5)", code=1)
