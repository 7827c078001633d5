"""Answer an :class:`~cloud.assistant.parse.Interpretation` from the analysis queries,
scoped by the user: the number or the list, the interpretation line
("按：西苑小区 · 违停 · 本周一至今"), a link to the duty console's queue filtered the same
way, and what was not understood. :func:`ask` is question → answer in one call."""

from __future__ import annotations

import time as clock
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from prometheus_client import Counter, Histogram
from sqlalchemy.orm import Session

from cloud.analysis import queries as q
from cloud.assistant.config import AssistantConfig, load_config
from cloud.assistant.parse import Interpretation, Refusal, parse
from cloud.assistant.timewords import SHANGHAI
from cloud.assistant.vocabulary import Vocabulary, load_vocabulary
from cloud.db import models as m

QUESTIONS = Counter(
    "mb_assistant_questions_total",
    "questions asked, by outcome (answered, partial: some words not understood, refused)",
    ["outcome"],
)
ANSWER_SECONDS = Histogram(
    "mb_assistant_answer_seconds",
    "time from question to answer",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2.5),
)
TOP_N = 5
# readings older than this are not "the state" (a silent sensor is sensor_offline's
# business); the latest reading is found by scanning this window (ix_readings_ts)
SENSOR_WINDOW = timedelta(hours=48)
QUEUE = "/"  # the duty console's queue (cloud/console/filters.py reads its query string)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the question box shows. ``value``: the number (count, whether: the count;
    None for a list or a refusal); ``items``: the ranked places or the sensors."""

    question: str
    text: str
    interpretation: str | None
    link: str | None
    not_understood: str | None
    refused: bool = False
    value: int | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    intent: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _examples(vocabulary: Vocabulary) -> str:
    compound = next(
        (es[0].name for es in vocabulary.places.values() if es and es[0].level == "compound"),
        "西苑小区",
    )
    return f"本周{compound}有几起违停？ / 哪个小区电梯故障最多？ / 昨天夜里有没有飞线充电？"


def _not_understood(words: tuple[str, ...], vocabulary: Vocabulary) -> str | None:
    if not words:
        return None
    return f"没有听懂：{'、'.join(words)}，可以这样问：{_examples(vocabulary)}"


def _filter(i: Interpretation) -> q.AnalysisFilter:
    return q.AnalysisFilter(
        start=i.period.start,
        end=i.period.end,
        places=tuple(e.place for e in i.places),
        kinds=tuple(i.topic.kinds) if i.topic else (),
        hours=i.period.hours,
    )


def interpretation_line(i: Interpretation, vocabulary: Vocabulary) -> str:
    place = "、".join(e.name for e in i.places) or vocabulary.scope_name
    topic = i.topic.name if i.topic else "全部告警"
    parts = [place, topic, i.period.label]
    if i.intent == "which":
        parts.append({"community": "按社区排", "compound": "按小区排"}.get(i.rank_level, "按楼排"))
    if i.intent == "sensor":
        parts = [place, f"{i.topic.name if i.topic else ''}最新读数"]
    return "按：" + " · ".join(parts)


def _local_input(t: datetime) -> str:
    # the queue's since/until are <input type="datetime-local"> values in local time
    return t.astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M")


def queue_link(i: Interpretation, kinds: list[str] | None = None) -> str:
    """The console queue with the same filters (one place only: the queue takes one)."""
    params: list[tuple[str, str]] = [("status", "all")]
    params += [
        ("kind", k) for k in (kinds if kinds is not None else (i.topic.kinds if i.topic else []))
    ]
    if len(i.places) == 1:
        p = i.places[0].place
        params += [(k, v) for k, v in (("community", p.community), ("compound", p.compound),
                                       ("building", p.building)) if v]  # fmt: skip
    if i.intent != "sensor":
        params += [("since", _local_input(i.period.start)), ("until", _local_input(i.period.end))]
    return f"{QUEUE}?{urlencode(params)}"


def answer(
    session: Session, user: m.User, interpretation: Interpretation | Refusal, vocabulary: Vocabulary
) -> Answer:
    """Answer what :func:`~cloud.assistant.parse.parse` read, from the analysis queries
    scoped by ``user``."""
    i = interpretation
    if isinstance(i, Refusal):
        return Answer(
            question=i.question,
            text=i.reason,
            interpretation=None,
            link=None,
            not_understood=_not_understood(i.not_understood, vocabulary)
            or f"可以这样问：{_examples(vocabulary)}",
            refused=True,
        )
    line = interpretation_line(i, vocabulary)
    missing = _not_understood(i.not_understood, vocabulary)
    if i.intent == "sensor" and i.topic is not None and i.topic.sensor is not None:
        return _sensor(session, user, i, line, missing)
    flt = _filter(i)
    if i.intent == "which":
        rows = q.top(session, user, flt, i.rank_level, TOP_N)
        items = [{"name": r.name, "count": r.count, "community": r.community,
                  "compound": r.compound, "building": r.building} for r in rows]  # fmt: skip
        if not rows:
            text = "这段时间没有记录。"
        else:
            best = [r for r in rows if r.count == rows[0].count]
            text = f"{'、'.join(r.name for r in best)}最多（{rows[0].count}起）"
            if len(rows) > len(best):
                text += "；其次：" + "、".join(f"{r.name} {r.count}起" for r in rows[len(best) :])
        return Answer(i.question, text, line, queue_link(i), missing, False,
                      rows[0].count if rows else 0, items, i.intent)  # fmt: skip
    n = q.count(session, user, flt)
    text = (f"有，{n}起。" if n else "没有。") if i.intent == "whether" else f"{n}起"
    return Answer(i.question, text, line, queue_link(i), missing, False, n, [], i.intent)


def _sensor(
    session: Session, user: m.User, i: Interpretation, line: str, missing: str | None
) -> Answer:
    assert i.topic is not None and i.topic.sensor is not None
    sensor = i.topic.sensor
    now = i.period.end
    states = q.sensor_states(
        session,
        user,
        sensor.kind,
        [e.place for e in i.places],
        since=now - SENSOR_WINDOW,
        alert_kinds=list(sensor.warnings),
    )
    items: list[dict[str, Any]] = []
    lines: list[str] = []
    names = {(e.place.community, e.place.compound, e.place.building): e.name for e in i.places}
    for st in states:
        value = st.values.get(sensor.field)
        where = names.get((st.community, st.compound, st.building)) or " ".join(
            filter(None, (st.compound, st.building))
        )
        when = st.ts.astimezone(SHANGHAI).strftime("%m-%d %H:%M")
        warn = "、".join(sensor.warnings.get(k, k) for k in st.open_alerts)
        lines.append(
            f"{where} {st.sensor}：{value} {sensor.unit}（{when}）"
            + (f"，预警：{warn}" if warn else "，无预警")
        )
        items.append({"place": where, "sensor": st.sensor, "value": value, "unit": sensor.unit,
                      "at": st.ts.isoformat(), "warnings": st.open_alerts})  # fmt: skip
    text = "；".join(lines) if lines else "最近48小时没有读数。"
    return Answer(i.question, text, line, queue_link(i, list(sensor.warnings)), missing,
                  False, None, items, i.intent)  # fmt: skip


_CONFIG: AssistantConfig | None = None


def default_config() -> AssistantConfig:
    """The shipped configs/assistant.yaml, read once per process."""
    global _CONFIG  # noqa: PLW0603 - a cache of an immutable file
    if _CONFIG is None:
        _CONFIG = load_config()
    return _CONFIG


def ask(
    session: Session,
    user: m.User,
    question: str,
    now: datetime,
    config: AssistantConfig | None = None,
) -> Answer:
    """Question → answer: the user's vocabulary, :func:`parse`, :func:`answer`."""
    started = clock.perf_counter()
    vocabulary = load_vocabulary(session, user, config or default_config())
    result = answer(session, user, parse(question, vocabulary, now), vocabulary)
    outcome = "refused" if result.refused else ("partial" if result.not_understood else "answered")
    QUESTIONS.labels(outcome).inc()
    ANSWER_SECONDS.observe(clock.perf_counter() - started)
    return result
