"""Where each node of a site file is declared (microbrain.site.loader.site_sources): every
node of the demo site has a source, each names the line holding its id, the file is named
as given (relative stays relative), and merges and flow mappings point at the right line.

A site file holds its whole tree (cameras sit under their gateway; no file includes
another), so every source names the one file read."""

from __future__ import annotations

from pathlib import Path

import pytest

from microbrain.site import load_site
from microbrain.site.loader import SiteError, load_site_with_sources, site_sources

ROOT = Path(__file__).resolve().parents[2]
DEMO = "configs/demo/site.yaml"


def _line(sources: dict[str, str], key: str) -> tuple[str, str]:
    """The file a source names and the text of its line."""
    file, line = sources[key].rsplit(":", 1)
    path = Path(file) if Path(file).is_absolute() else ROOT / file
    return file, path.read_text(encoding="utf-8").splitlines()[int(line) - 1]


def _expected_keys(path: Path | str) -> dict[str, str]:
    """Every node of the loaded model with its key and the id its line must hold."""
    site = load_site(path)
    keys = {"district": site.district.id}
    keys |= {f"department:{d.id}": d.id for d in site.departments}
    keys |= {f"sensor_profile:{p.id}": p.id for p in site.sensor_profiles}
    for c in site.communities:
        keys[f"community:{c.id}"] = c.id
        for k in c.compounds:
            keys[f"compound:{c.id}/{k.id}"] = k.id
            keys |= {f"building:{c.id}/{k.id}/{b.id}": b.id for b in k.buildings}
    for place in site.gateways():
        g = place.gateway
        keys[f"gateway:{g.id}"] = g.id
        keys |= {f"camera:{g.id}/{cam.id}": cam.id for cam in g.cameras}
        keys |= {f"sensor:{g.id}/{s.id}": s.id for s in g.sensors}
    return keys


def test_every_node_of_the_demo_site_points_at_the_line_of_its_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    sources = site_sources(DEMO)
    expected = _expected_keys(DEMO)
    assert set(sources) == set(expected) | {"escalation"}
    for key, node_id in expected.items():
        file, text = _line(sources, key)
        assert file == DEMO, key  # relative, as given
        assert f"id: {node_id}" in text, (key, sources[key], text)
    # a few by hand: the block, a flow-mapping building, a camera, a nested sensor
    assert _line(sources, "escalation")[1] == "escalation:"
    assert "1号楼" in _line(sources, "building:xiyuan/xiyuan-1/b1")[1]
    assert "2号楼" in _line(sources, "building:xiyuan/xiyuan-2/b2")[1]
    assert _line(sources, "camera:gw-xiyuan-1/cam-entrance")[1].strip() == "- id: cam-entrance"
    assert "mall-hydrant-top" in _line(sources, "sensor:gw-dongcheng-plaza/mall-hydrant-top")[1]
    # same-named buildings of two compounds are two nodes on two lines
    assert sources["building:xiyuan/xiyuan-1/b1"] != sources["building:xiyuan/xiyuan-2/b1"]


def test_an_absolute_path_is_named_absolute_and_one_reading_gives_both(
    demo_site_path: Path,
) -> None:
    site, sources = load_site_with_sources(demo_site_path)
    assert site == load_site(demo_site_path)
    assert sources == site_sources(demo_site_path)
    assert all(v.startswith(f"{demo_site_path}:") for v in sources.values())


SITE = """\
schema: 1
district: {id: d, name: 街道}
departments:
  - {id: fire, name: 消防}
base: &base
  category: residential_highrise
communities:
  - id: c1
    name: 一社区
    compounds:
      - name: 一区
        id: k1
        buildings:
          - <<: *base
            name: 1号楼
            id: b1
        gateways:
          - name: 网关
            id: g1
            cameras:
              - name: 门口
                id: cam1
                source: sample:vtest.avi
                zones: []
"""


def test_lines_follow_the_id_wherever_it_sits_in_its_mapping(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    # (load_site would refuse the top-level 'base' key: site_sources reads, not validates)
    path.write_text(SITE, encoding="utf-8")
    sources = site_sources(path)
    lines = SITE.splitlines()

    def line(key: str) -> str:
        return lines[int(sources[key].rsplit(":", 1)[1]) - 1].strip()

    assert line("district") == "district: {id: d, name: 街道}"
    assert line("department:fire") == "- {id: fire, name: 消防}"
    assert line("community:c1") == "- id: c1"
    assert line("compound:c1/k1") == "id: k1"
    assert line("building:c1/k1/b1") == "id: b1"  # after a merge
    assert line("gateway:g1") == "id: g1"
    assert line("camera:g1/cam1") == "id: cam1"
    assert "escalation" not in sources  # not in the file: nothing to point at


def test_an_unreadable_file_is_a_site_error(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("district: {id: a, id: b}\n", encoding="utf-8")
    with pytest.raises(SiteError, match="duplicate key"):
        site_sources(path)
    with pytest.raises(SiteError, match="no such file"):
        site_sources(tmp_path / "missing.yaml")
