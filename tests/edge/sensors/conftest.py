from __future__ import annotations

from pathlib import Path

import pytest

from microbrain.site import load_site
from microbrain.site.model import Site


@pytest.fixture(scope="session")
def demo_site(demo_site_path: Path) -> Site:
    return load_site(demo_site_path)
