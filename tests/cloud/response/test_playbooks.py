"""The playbook file: the shipped one loads against the demo site; a file with a mistake
is refused naming its line and path; places and named severities override in order."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cloud.response import load_response
from cloud.response.channels.base import DeliveryError, Notice
from cloud.response.channels.config import ChannelConfigError
from cloud.response.playbooks import PlaybookError, QuietHours, load_playbooks
from microbrain.protocol import Severity
from microbrain.site import Site, load_site

ROOT = Path(__file__).resolve().parents[3]

HEAD = """schema: 1
channels:
  - {id: hook, type: webhook, url: "http://127.0.0.1:9/x"}
contacts:
  - {id: duty, name: 值班台, channels: [hook]}
  - {id: xiyuan-desk, name: 西苑值班, channels: [hook]}
"""


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(ROOT / "configs/demo/site.yaml")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "playbooks.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_playbooks_load_against_the_demo_site(site: Site) -> None:
    setup = load_response(ROOT / "configs/playbooks.yaml", site=site, environ={})
    response = setup.playbooks.for_alert("ebike_charging", Severity.CRITICAL, "xiyuan", "xiyuan-1")
    assert response is not None
    assert response.work_order is not None and response.work_order.department == "fire"
    assert response.announce is not None  # inherited from the playbook for every severity


def test_a_channel_whose_secret_is_not_in_the_environment_is_named(tmp_path: Path) -> None:
    text = HEAD.replace(
        'url: "http://127.0.0.1:9/x"}', 'url: "http://127.0.0.1:9/x", secret_env: MB_HOOK_KEY}'
    )
    with pytest.raises(ChannelConfigError, match="secret_env names MB_HOOK_KEY, which is not set"):
        load_response(_write(tmp_path, text), site=None, environ={})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "playbooks:\n  - {id: a, kind: ebike_charging, notify: [duty], colour: red}\n",
            "line 8: playbooks[0].colour: Extra inputs are not permitted",
        ),
        (
            "playbooks:\n  - {id: a, kind: ebike_charging, notify: [nobody]}\n",
            "line 8: playbooks[0].notify[0]: no contact 'nobody'",
        ),
        (
            (
                "playbooks:\n  - id: a\n    kind: ebike_charging\n"
                "    work_order: {department: bakery, deadline: 1h}\n"
            ),
            "line 10: playbooks[0].work_order.department: the site has no department 'bakery'",
        ),
        (
            (
                "playbooks:\n  - id: a\n    kind: ebike_charging\n    notify: [duty]\n"
                "    place: {community: atlantis}\n"
            ),
            "line 11: playbooks[0].place: the site has no place 'atlantis'",
        ),
        (
            (
                "playbooks:\n  - {id: a, kind: ebike_charging, notify: [duty]}\n"
                "  - {id: b, kind: ebike_charging, notify: [xiyuan-desk]}\n"
            ),
            "line 9: playbooks[1].severities: info ebike_charging here is already covered",
        ),
        (
            (
                "playbooks:\n  - {id: a, kind: ebike_charging, notify: [duty]}\n"
                "  - {id: a, kind: elevator_fault, notify: [duty]}\n"
            ),
            "line 9: playbooks[1].id: duplicate playbook id 'a'",
        ),
        (
            "playbooks:\n  - {id: a, kind: ebike_charging, severities: [urgent], notify: [duty]}\n",
            "'urgent' is not a severity",
        ),
        ("playbooks:\n  - {id: a, kind: ebike_charging}\n", "playbook 'a' does nothing"),
        (
            "quiet_hours: {start: '25:00', end: '07:00'}\n",
            "line 7: quiet_hours.start: '25:00' is not a time of day",
        ),
        (
            (
                "playbooks:\n  - id: a\n    kind: ebike_charging\n"
                "    announce: {text: 请勿充电, repeat_every: 5s}\n"
            ),
            "line 10: playbooks[0].announce.repeat_every: Input should be greater than or equal",
        ),
        (
            "playbooks:\n  - {id: a, kind: x, notify: [duty]}\nplaybooks: []\n",
            "line 9: playbooks: duplicate key 'playbooks' (first at line 7)",
        ),
    ],
    ids=[
        "unknown-key",
        "unknown-contact",
        "unknown-department",
        "unknown-place",
        "two-for-one-severity",
        "duplicate-id",
        "bad-severity",
        "does-nothing",
        "bad-time",
        "repeat-too-often",
        "duplicate-yaml-key",
    ],
)
def test_a_file_with_a_mistake_is_refused_with_its_line(
    tmp_path: Path, site: Site, body: str, expected: str
) -> None:
    with pytest.raises(PlaybookError) as err:
        load_playbooks(_write(tmp_path, HEAD + body), site)
    assert expected in str(err.value)
    assert str(tmp_path / "playbooks.yaml") in str(err.value)


def test_a_contact_naming_an_unknown_channel_is_refused(tmp_path: Path) -> None:
    text = HEAD.replace(
        "channels: [hook]}\n  - {id: xiyuan", "channels: [hook, sms]}\n  - {id: xiyuan"
    )
    with pytest.raises(
        PlaybookError, match=r"line 5: contacts\[0\]\.channels\[1\]: no channel 'sms'"
    ):
        load_playbooks(_write(tmp_path, text))


def test_places_and_named_severities_override_what_they_set(tmp_path: Path, site: Site) -> None:
    book = load_playbooks(
        _write(
            tmp_path,
            HEAD
            + """playbooks:
  - id: district
    kind: ebike_charging
    notify: [duty]
    work_order: {department: property, deadline: 2h}
    next_steps: [断电]
  - id: district-critical
    kind: ebike_charging
    severities: [critical]
    work_order: {department: fire, deadline: 30m}
  - id: xiyuan
    kind: ebike_charging
    place: {community: xiyuan}
    notify: [xiyuan-desk]
  - id: xiyuan-1
    kind: ebike_charging
    place: {community: xiyuan, compound: xiyuan-1}
    next_steps: [通知楼栋长]
""",
        ),
        site,
    )
    elsewhere = book.for_alert("ebike_charging", Severity.WARNING, "dongcheng", "dongcheng-garden")
    assert elsewhere is not None
    assert elsewhere.playbooks == ("district",)
    assert [c.id for c in elsewhere.notify] == ["duty"]
    in_xiyuan_1 = book.for_alert("ebike_charging", Severity.CRITICAL, "xiyuan", "xiyuan-1")
    assert in_xiyuan_1 is not None
    assert in_xiyuan_1.playbooks == ("district", "district-critical", "xiyuan", "xiyuan-1")
    assert [c.id for c in in_xiyuan_1.notify] == ["xiyuan-desk"]  # the community's
    assert in_xiyuan_1.work_order is not None
    assert in_xiyuan_1.work_order.department == "fire"  # the critical one's
    assert in_xiyuan_1.next_steps == ("通知楼栋长",)  # the compound's
    assert book.for_alert("elevator_fault", Severity.CRITICAL, "xiyuan", "xiyuan-1") is None


def test_the_local_sink_appends_one_json_line_per_notice(tmp_path: Path) -> None:
    sink = tmp_path / "var" / "notifications.jsonl"
    text = HEAD.replace(
        '{id: hook, type: webhook, url: "http://127.0.0.1:9/x"}',
        f"{{id: hook, type: log, path: '{sink}'}}",
    )
    setup = load_response(_write(tmp_path, text), site=None, environ={})
    notice = Notice(
        "【紧急】电动车飞线充电", "地点：3号楼", Severity.CRITICAL, (7,), "http://x/ack/t"
    )
    setup.channels["hook"].send(notice, now=datetime(2026, 6, 1, tzinfo=UTC))
    setup.channels["hook"].send(notice, now=datetime(2026, 6, 1, tzinfo=UTC))
    lines = sink.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert (
        json.loads(lines[0])["title"] == "【紧急】电动车飞线充电"
    )  # written as read, not \u escapes
    assert "电动车" in lines[0]
    blocked = tmp_path / "file"
    blocked.write_text("")
    text = HEAD.replace(
        '{id: hook, type: webhook, url: "http://127.0.0.1:9/x"}',
        f"{{id: hook, type: log, path: '{blocked / 'x.jsonl'}'}}",
    )
    setup = load_response(_write(tmp_path, text), site=None, environ={})
    with pytest.raises(DeliveryError, match="cannot append"):
        setup.channels["hook"].send(notice, now=datetime(2026, 6, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("start", "end", "local", "quiet"),
    [
        ("22:00", "07:00", "23:30", True),
        ("22:00", "07:00", "06:59", True),
        ("22:00", "07:00", "07:00", False),
        ("22:00", "07:00", "12:00", False),
        ("12:00", "14:00", "13:00", True),
        ("12:00", "14:00", "14:00", False),
    ],
)
def test_quiet_hours_may_cross_midnight(start: str, end: str, local: str, quiet: bool) -> None:
    hours = QuietHours.model_validate({"start": start, "end": end})
    tz = ZoneInfo("Asia/Shanghai")
    h, m = map(int, local.split(":"))
    moment = datetime(2026, 6, 1, h, m, tzinfo=tz).astimezone(UTC)
    assert hours.contains(moment, tz) is quiet
