"""The question box answers the fixture (questions.yaml: every topic, place level and
time expression) with the numbers this test counts from the seed list itself, on both
stores; nonsense is refused naming what was not understood; the API answers the same."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from fastapi.testclient import TestClient

from cloud import auth
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.assistant.answer import Answer, ask
from cloud.assistant.config import AssistantConfigError, load_config
from cloud.clock import ManualClock
from cloud.db import make_engine, session_factory, transaction
from cloud.db import models as m
from cloud.settings import Settings
from tests.cloud.analysis.district import (
    ALERTS,
    COMPOUNDS,
    NOW,
    NOW_LOCAL,
    READINGS,
    TZ,
    A,
    District,
    seed_district,
)
from tests.cloud.conftest import migrated

FIXTURE = yaml.safe_load((Path(__file__).parent / "questions.yaml").read_text("utf-8"))
HOURS = {"night": {22, 23, 0, 1, 2, 3, 4, 5}, "early": {0, 1, 2, 3, 4, 5}}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def district(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    migrated_sqlite_template: Path,
) -> Iterator[District]:
    """One seeded district per store for the whole module (seeding takes a second)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("assistant") / "district.db"
        url = migrated(f"sqlite:///{path}", migrated_sqlite_template)
    else:
        url = migrated(request.getfixturevalue("postgres_url"))
    engine = make_engine(url)
    yield seed_district(session_factory(engine))
    engine.dispose()


def _time(text: str) -> datetime:
    return NOW_LOCAL if text == "now" else datetime.fromisoformat(text).replace(tzinfo=TZ)


def _at(a: A, place: str) -> bool:
    if place == "community":
        return True
    compound, _, building = place.partition("/")
    return a.compound == compound and (not building or a.building == building)


def _matching(spec: dict[str, Any]) -> list[A]:
    start, end = _time(spec["from"]), _time(spec["to"])
    hours = HOURS.get(spec.get("hours", ""), set(range(24)))
    return [
        a
        for a in ALERTS
        if start <= a.local < end
        and (not spec.get("kinds") or a.kind in spec["kinds"])
        and (not spec.get("places") or any(_at(a, p) for p in spec["places"]))
        and a.local.hour in hours
    ]


def _ranking(spec: dict[str, Any]) -> list[tuple[str | None, str | None, int]]:
    level = spec["level"]
    keys: Counter[tuple[str | None, str | None]] = Counter()
    for a in _matching(spec):
        if level == "community":
            keys[(None, None)] += 1
        elif level == "compound":
            keys[(a.compound, None)] += 1
        elif a.building is not None:
            keys[(a.compound, a.building)] += 1
    ranked = sorted(keys.items(), key=lambda kv: (-kv[1], kv[0][0] or "", kv[0][1] or ""))
    return [(c, b, n) for (c, b), n in ranked[:5]]


def _ask(district: District, entry: dict[str, Any]) -> Answer:
    user = district.user(compound=entry.get("user"))
    with district.factory() as s:
        return ask(s, user, entry["q"], NOW)


def _check(answer: Answer, entry: dict[str, Any]) -> None:
    question = entry["q"]
    if "refused" in entry:
        assert answer.refused, (question, answer)
        assert answer.value is None and answer.link is None
        said = f"{answer.text} {answer.not_understood}"
        for word in entry["refused"]:
            assert word in said, (question, said)
        assert "可以这样问" in (answer.not_understood or "")
        return
    assert not answer.refused, (question, answer)
    assert answer.not_understood is None, (question, answer.not_understood)
    assert answer.interpretation and answer.interpretation.startswith("按：")
    if "line" in entry:
        assert answer.interpretation == entry["line"]
    if "count" in entry:
        want = len(_matching(entry["count"]))
        assert (answer.intent, answer.value) == ("count", want), (question, answer)
        assert answer.text == f"{want}起"
        _check_link(answer, entry["count"], scoped=bool(entry.get("user")))
    elif "whether" in entry:
        want = len(_matching(entry["whether"]))
        assert (answer.intent, answer.value) == ("whether", want), (question, answer)
        assert answer.text.startswith("有，" if want else "没有")
    elif "which" in entry:
        want_rank = _ranking(entry["which"])
        got = [
            (
                r["compound"] if entry["which"]["level"] != "community" else None,
                r["building"],
                r["count"],
            )
            for r in answer.items
        ]
        assert (answer.intent, got) == ("which", want_rank), (question, answer)
        if want_rank:
            assert answer.text.endswith(f"最多（{want_rank[0][2]}起）") or "；其次" in answer.text
    else:
        _check_sensor(answer, entry["sensor"])


def _check_link(answer: Answer, spec: dict[str, Any], *, scoped: bool) -> None:
    assert answer.link is not None
    query = parse_qs(urlsplit(answer.link).query)
    assert sorted(query.get("kind", [])) == sorted(spec.get("kinds", []))
    assert query["since"] == [_time(spec["from"]).strftime("%Y-%m-%dT%H:%M")]
    places = spec.get("places", [])
    if len(places) == 1 and places[0] != "community" and not scoped:
        assert query["compound"] == [places[0].split("/")[0]]


def _check_sensor(answer: Answer, places: list[str]) -> None:
    assert answer.intent == "sensor"
    want = []
    for place in places:
        compound, building = place.split("/")
        mine = [
            r
            for r in READINGS
            if (r.compound, r.building) == (compound, building)
            and NOW_LOCAL - timedelta(hours=48) <= r.local <= NOW_LOCAL
        ]
        latest = max(mine, key=lambda r: r.local)
        warnings = sorted(
            {
                a.kind
                for a in ALERTS
                if a.active
                and a.kind.startswith("hydrant_pressure")
                and a.compound == compound
                and a.building in (building, None)
            }
        )
        want.append((latest.pressure_mpa, warnings))
    got = [(item["value"], item["warnings"]) for item in answer.items]
    assert got == want, answer
    assert (str(want[0][0]) in answer.text) and ("预警" in answer.text)


def test_the_fixture_is_big_enough() -> None:
    """≥ 40 questions, every topic of the config, every place level and time word."""
    assert len(FIXTURE) >= 40
    text = " ".join(e["q"] for e in FIXTURE)
    for word in ("今天", "昨天", "前天", "本周", "上周", "本月", "上", "最近", "夜里", "凌晨"):
        assert word in text
    assert "3月5日" in text and "3月网关" in text
    kinds = {k for e in FIXTURE for spec in (e.get("count"), e.get("whether"), e.get("which"))
             if spec for k in spec.get("kinds", [])}  # fmt: skip
    assert {k for t in load_config().topics for k in t.kinds} <= kinds
    specs = [s for e in FIXTURE for s in (e.get("count"), e.get("whether"), e.get("which")) if s]
    levels = {p.count("/") for s in specs for p in s.get("places", []) if p != "community"}
    assert levels == {0, 1}
    assert any("community" in (e.get("count") or {}).get("places", []) for e in FIXTURE)
    assert any("sensor" in e for e in FIXTURE) and sum("refused" in e for e in FIXTURE) >= 8


@pytest.mark.parametrize("entry", FIXTURE, ids=[e["q"] or "(empty)" for e in FIXTURE])
def test_the_fixture(district: District, entry: dict[str, Any]) -> None:
    _check(_ask(district, entry), entry)


def test_a_compound_user_is_never_told_another_compound(district: District) -> None:
    """东苑小区's user: another compound's name reads exactly like a name that does not
    exist, its building is not found, and rankings hold only their own compound."""
    user = district.user(compound="c-dy")
    with district.factory() as s:
        other = ask(s, user, "西苑小区有几起违停", NOW)
        none = ask(s, user, "北苑小区有几起违停", NOW)
        assert other.refused and none.refused
        assert other.text.replace("西苑", "北苑") == none.text
        assert other.value is None and other.items == []
        sensor = ask(s, user, "3号楼的消防栓压力怎么样", NOW)
        assert sensor.refused and sensor.items == []
        ranked = ask(s, user, "哪个小区违停最多", NOW)
        assert {i["compound"] for i in ranked.items} <= {"c-dy"}


def test_the_config_is_strict(tmp_path: Path) -> None:
    path = tmp_path / "assistant.yaml"
    path.write_text(
        "schema: 1\ntopics:\n"
        "  - {id: a, name: 甲, kinds: [k1], words: [违停]}\n"
        "  - {id: b, name: 乙, kinds: [k2], words: [违停]}\n",
        encoding="utf-8",
    )
    with pytest.raises(AssistantConfigError, match=r"line 4.*违停.*twice"):
        load_config(path)
    path.write_text(
        "schema: 1\ntopics:\n  - {id: a, name: 甲, kinds: [k], words: [违停], colour: red}\n"
    )
    with pytest.raises(AssistantConfigError, match="colour"):
        load_config(path)


@pytest.fixture
def api(district: District) -> Iterator[tuple[TestClient, dict[str, str]]]:
    state = ApiState(
        settings=Settings(environment="test"), factory=district.factory, clock=ManualClock(NOW)
    )
    with transaction(district.factory) as s:
        user = m.User(
            username=f"u-{uuid.uuid4().hex[:10]}",
            password_hash="x",
            role="duty",
            community=district.community,
            active=True,
            created_at=NOW,
        )
        s.add(user)
        s.flush()
        token = auth.issue_token(s, user, now=NOW, ttl_s=3600)
    with TestClient(create_api(state)) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def test_the_api(api: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = api
    entry = FIXTURE[0]
    r = client.post("/api/assistant/ask", json={"question": entry["q"]}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["value"] == len(_matching(entry["count"]))
    assert r.json()["interpretation"] == entry["line"]
    r = client.post("/api/assistant/ask", json={"question": "asdf"}, headers=headers)
    assert r.status_code == 200 and r.json()["refused"] and "asdf" in r.json()["not_understood"]
    assert (
        client.post("/api/assistant/ask", json={"question": "x" * 501}, headers=headers).status_code
        == 422
    )
    assert client.post("/api/assistant/ask", json={"q": "违停"}, headers=headers).status_code == 422
    assert client.post("/api/assistant/ask", json={"question": "违停"}).status_code == 401
    r = client.post("/api/assistant/ask", json={"question": "哪个小区违停最多"}, headers=headers)
    assert r.status_code == 200 and r.json()["intent"] == "which"
    assert {i["name"] for i in r.json()["items"]} <= set(COMPOUNDS.values())
