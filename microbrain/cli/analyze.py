"""`microbrain edge analyze` (placeholder until issue 3 lands; its owner replaces this file)."""

from __future__ import annotations

from microbrain.cli.errors import fail


def analyze() -> None:
    """Not built yet (issue 3)."""
    fail("'microbrain edge analyze' is not built yet (issue 3)", code=1)
