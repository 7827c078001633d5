"""The question box page: the form, an answer with its interpretation and queue link,
the htmx partial, a refusal, and the nav link; the user's scope holds on the page."""

from __future__ import annotations

import html
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from cloud.clock import ManualClock
from cloud.db import models as m
from cloud.db import transaction
from tests.cloud.analysis.district import NOW, seed_district
from tests.cloud.assistant.test_questions import FIXTURE, _matching
from tests.cloud.console.conftest import PASSWORD, Console, console, password_hash
from tests.cloud.console.test_pages import signed_in

__all__ = ["console"]  # the fixture, imported for pytest


@pytest.fixture
def asker(console: Console) -> Iterator[tuple[httpx.Client, str]]:
    console.state.clock = ManualClock(NOW)
    district = seed_district(console.factory)
    name = f"duty-{uuid.uuid4().hex[:8]}"
    with transaction(console.factory) as s:
        s.add(
            m.User(
                username=name,
                password_hash=password_hash(),
                role="duty",
                community=district.community,
                compound="c-xy",
                active=True,
                created_at=NOW,
            )
        )
    with signed_in(console, name, PASSWORD) as client:
        yield client, district.community


def test_the_page_answers(asker: tuple[httpx.Client, str]) -> None:
    client, community = asker
    question = FIXTURE[0]["q"]
    r = client.get(f"/ask?q={quote(question)}")
    assert r.status_code == 200
    page = html.unescape(r.text)
    assert 'href="/ask"' in page and "智能助手" in page  # the nav link
    assert 'hx-get="/ask/answer"' in page
    assert "按：西苑小区 · 违停 · 本周一至今" in page
    assert f"{len(_matching(FIXTURE[0]['count']))}起" in page  # counted from the seed list
    assert f"community={community}&compound=c-xy" in page
    partial = client.get("/ask/answer", params={"q": "asdf"})
    assert partial.status_code == 200 and "<html" not in partial.text
    assert "没有听懂：asdf" in html.unescape(partial.text)
    # another compound of the community is not the user's: refused, not counted
    other = html.unescape(client.get("/ask/answer", params={"q": "东苑小区有几起违停"}).text)
    assert "没有这个地方：东苑小区" in other


def test_the_page_needs_a_login(console: Console) -> None:
    with httpx.Client(base_url=console.url, timeout=30) as client:
        r = client.get("/ask")
        assert r.status_code in (303, 307) and "/login" in r.headers["location"]
