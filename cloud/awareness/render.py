"""The daily report for people: a self-contained HTML page and a PDF, both offline.

Charts are drawn by matplotlib (Agg, ``Figure`` objects, never pyplot's global state) in
the CJK font of Debian's ``fonts-noto-cjk`` (Noto Sans CJK SC, a lean copy:
:mod:`cloud.awareness.fonts`), so Chinese is drawn, not boxes; without that font
rendering stops with :class:`FontMissing` naming the package.
The HTML carries its charts as ``data:`` PNGs and its style inline: no URL is fetched.
The PDF is matplotlib's ``PdfPages``: a page of figures and tables as text, then the
charts. Its font is embedded as Type 42 (``pdf.fonttype``), subset, with a ToUnicode map,
so ``pdftotext`` reads the Chinese back (matplotlib's default Type 3 came out one glyph at
a time). Poppler notes "Mismatch between font type and embedded font file" (the font's
outlines are CFF, declared TrueType); it draws and extracts it all the same.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from cloud.awareness.fonts import cjk_family
from cloud.awareness.report import DailyReport
from cloud.durations import Durations
from cloud.kind_names import kind_name
from microbrain.config_files import read_yaml

TEMPLATES = Path(__file__).parent / "templates"
# the alert kinds' Chinese names live in the console's catalogue, a layer above this
# package: read as data (the file), not imported
KIND_CATALOGUE = Path(__file__).parents[1] / "console" / "messages" / "zh-CN.yaml"
SEVERITY_NAMES = {3: "紧急", 2: "警告", 1: "提示"}
SEVERITY_COLOURS = {3: "#d62728", 2: "#ff7f0e", 1: "#7f8fa6"}
WEEKDAYS = "一二三四五六日"
WEEK_LABELS = {
    "opened": "新增告警",
    "severity_3": "紧急",
    "severity_2": "警告",
    "severity_1": "提示",
    "sla_breaches": "超时升级",
    "appeals": "居民诉求",
}
A4 = (8.27, 11.69)
KindName = Callable[[str], str]
# rcParams are process-wide: one rendering at a time
_LOCK = threading.Lock()


@cache
def _catalogue_section(section: str) -> dict[str, str]:
    """A section of the console's zh-CN catalogue ({} without one)."""
    if not KIND_CATALOGUE.exists():
        return {}
    data = read_yaml(KIND_CATALOGUE).data
    names = data.get(section) if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in (names or {}).items()}


def kind_names() -> dict[str, str]:
    """Alert kind → Chinese name, from the console's zh-CN catalogue ({} without one)."""
    return _catalogue_section("kinds")


def default_kind_name(kind: str) -> str:
    return kind_name(kind, kind_names(), _catalogue_section("kind_suffix"))


# --- what both formats show ---------------------------------------------------------


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = round(seconds)
    if s < 60:
        return f"{s} 秒"
    if s < 3600:
        return f"{s // 60} 分 {s % 60:02d} 秒"
    return f"{s // 3600} 小时 {s % 3600 // 60:02d} 分"


def change(pct: float | None) -> str:
    return "—" if pct is None else f"{pct:+.1f}%"


def _scope(report: DailyReport) -> str:
    parts = [v for v in report.scope.values() if v]
    return "全区" if not parts else " / ".join(parts)


@dataclass(frozen=True, slots=True)
class Table:
    title: str
    head: tuple[str, ...]
    rows: list[tuple[str, ...]]


def _durations_row(what: str, d: Durations) -> tuple[str, ...]:
    return (what, str(d.count), duration(d.median_s), duration(d.p90_s))


def view(report: DailyReport, kind_name: KindName = default_kind_name) -> dict[str, Any]:
    """The report as the words and tables both formats print."""
    local = report.generated_at.astimezone(ZoneInfo(report.timezone))
    c, dev, ap, wk = report.counts, report.devices, report.appeals, report.week
    now, before = c.flat(), wk.previous.flat()
    share = "—" if dev.share is None else f"{dev.share:.1%}"
    headline = [
        ("新增告警", f"{c.opened} 条", change(wk.change_pct["opened"])),
        ("紧急", f"{c.by_severity[3]} 条", change(wk.change_pct["severity_3"])),
        ("超时升级", f"{c.sla_breaches} 次", change(wk.change_pct["sla_breaches"])),
        ("设备在线率", share, f"{dev.devices_online}/{dev.devices_total} 台"),
        ("居民诉求", f"{ap.opened} 件", change(wk.change_pct["appeals"])),
    ]
    tables = [
        Table(
            "响应时效（当日新增告警）",
            ("环节", "条数", "中位数", "P90"),
            [
                _durations_row("确认", report.acknowledge),
                _durations_row("处置完成", report.resolve),
            ],
        ),
        Table(
            "按类型",
            ("类型", "合计", "紧急", "警告", "提示"),
            [
                (kind_name(k.kind), str(k.count), *(str(k.by_severity[s]) for s in (3, 2, 1)))
                for k in report.by_kind
            ],
        ),
        Table(
            "按小区",
            ("小区", "社区", "告警"),
            [(p.name, p.community, str(p.count)) for p in report.by_place],
        ),
        Table(
            "高发点位（前 5）",
            ("类型", "地点", "次数", "最高等级"),
            [
                (kind_name(h.kind), h.place, str(h.count), SEVERITY_NAMES[h.severity])
                for h in report.hotspots
            ],
        ),
        Table(
            "超时升级（SLA）",
            ("方式", "次数"),
            [
                ("逐级升级", str(report.breaches_by_action.get("escalated", 0))),
                ("吹哨派单", str(report.breaches_by_action.get("whistled", 0))),
            ],
        ),
        Table(
            "设备在线（生成时）",
            ("对象", "在线", "总数"),
            [
                ("网关", str(dev.gateways_online), str(dev.gateways_total)),
                ("摄像头与传感器", str(dev.devices_online), str(dev.devices_total)),
            ],
        ),
        Table(
            "居民诉求",
            ("新增", "已答复", "超期", "已评价", "平均满意度"),
            [
                (
                    str(ap.opened),
                    str(ap.answered),
                    str(ap.overdue),
                    str(ap.rated),
                    "—" if ap.mean_rating is None else f"{ap.mean_rating:.2f} / 5",
                )
            ],
        ),
        Table(
            f"周同比（上周{WEEKDAYS[wk.previous_day.weekday()]} {wk.previous_day.isoformat()}）",
            ("指标", "本日", "上周同日", "变化"),
            [
                (
                    label,
                    str(now[key]),
                    str(before[key]),
                    change(wk.change_pct[key]),
                )
                for key, label in WEEK_LABELS.items()
            ],
        ),
    ]
    return {
        "title": f"社区微脑 日报 {report.day.isoformat()}（星期{WEEKDAYS[report.day.weekday()]}）",
        "scope": _scope(report),
        "generated": local.strftime("%Y-%m-%d %H:%M"),
        "timezone": report.timezone,
        "headline": headline,
        "tables": tables,
    }


# --- charts -------------------------------------------------------------------------


def charts(report: DailyReport, kind_name: KindName = default_kind_name) -> list[Figure]:
    """Alerts per hour by severity, per kind by severity, the hotspots, each its own
    figure (for the HTML). Call inside :class:`_styled` (the font)."""
    out = []
    for draw, height in _drawings(report, kind_name):
        fig = Figure(figsize=(7.5, height), layout="constrained")
        draw(fig.add_subplot())
        out.append(fig)
    return out


def _drawings(
    report: DailyReport, kind_name: KindName
) -> list[tuple[Callable[[Any], None], float]]:
    """Each chart as (draw on an Axes, its height in inches)."""
    kinds = list(reversed(report.by_kind[:10]))
    spots = list(reversed(report.hotspots))

    def per_hour(ax: Any) -> None:
        _stacked(ax, [f"{h:02d}" for h in range(len(report.by_hour))], report.by_hour)
        ax.set_title("每小时新增告警（按等级）")
        ax.set_xlabel(f"时（{report.timezone}）")
        ax.yaxis.get_major_locator().set_params(integer=True)

    def per_kind(ax: Any) -> None:
        labels = [kind_name(k.kind) for k in kinds]
        _stacked(ax, labels, [k.by_severity for k in kinds], horizontal=True)
        ax.set_title("按类型新增告警")
        ax.xaxis.get_major_locator().set_params(integer=True)

    def hotspots(ax: Any) -> None:
        labels = [f"{kind_name(h.kind)} · {h.place}" for h in spots]
        colours = [SEVERITY_COLOURS[h.severity] for h in spots]
        ax.barh(labels, [h.count for h in spots], color=colours)
        ax.set_title("高发点位（前 5）")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if not spots:
            ax.text(0.5, 0.5, "当日无高发点位", ha="center", va="center", transform=ax.transAxes)
            ax.set_yticks([])

    return [
        (per_hour, 3.0),
        (per_kind, max(2.0, 0.9 + 0.3 * len(kinds))),
        (hotspots, max(2.0, 0.9 + 0.35 * len(spots))),
    ]


def _stacked(
    ax: Any, labels: list[str], values: list[dict[int, int]], *, horizontal: bool = False
) -> None:
    base = [0] * len(labels)
    for severity in (1, 2, 3):
        heights = [v.get(severity, 0) for v in values]
        colour, name = SEVERITY_COLOURS[severity], SEVERITY_NAMES[severity]
        if horizontal:
            ax.barh(labels, heights, left=base, color=colour, label=name)
        else:
            ax.bar(labels, heights, bottom=base, color=colour, label=name)
        base = [b + h for b, h in zip(base, heights, strict=True)]
    if labels:
        ax.legend(loc="best", frameon=False)


@contextmanager
def _styled() -> Iterator[None]:
    """One rendering at a time (rcParams are process-wide) in the CJK font."""
    family = cjk_family()
    with (
        _LOCK,
        matplotlib.rc_context(
            {
                "font.family": [family],
                "font.size": 9,
                "axes.unicode_minus": False,
                "pdf.fonttype": 42,
                "axes.spines.top": False,
                "axes.spines.right": False,
            }
        ),
    ):
        yield


def _png_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --- HTML ---------------------------------------------------------------------------


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(report: DailyReport, kind_name: KindName = default_kind_name) -> str:
    """One self-contained page: inline style, charts as data: PNGs, no URL fetched."""
    with _styled():
        images = [_png_uri(fig) for fig in charts(report, kind_name)]
    return (
        _environment().get_template("daily.html").render(charts=images, **view(report, kind_name))
    )


# --- PDF ----------------------------------------------------------------------------


def _text_pages(v: dict[str, Any]) -> Iterator[Figure]:
    """The words and tables on A4 pages, top to bottom, a new page when one is full."""
    fig, y = _page(v), 0.86
    fig.text(0.07, 0.93, v["title"], fontsize=17, weight="bold")
    fig.text(0.07, 0.905, f"范围：{v['scope']}　生成：{v['generated']}（{v['timezone']}）")
    for i, (label, value, note) in enumerate(v["headline"]):
        x = 0.07 + i * 0.175
        fig.text(x, y, label, fontsize=9, color="#555555")
        fig.text(x, y - 0.03, value, fontsize=14, weight="bold")
        fig.text(x, y - 0.05, note, fontsize=8, color="#555555")
    y -= 0.10
    for table in v["tables"]:
        need = 0.035 + 0.022 * (len(table.rows) + 1)
        if y - need < 0.05:
            yield fig
            fig, y = _page(v), 0.93
        fig.text(0.07, y, table.title, fontsize=12, weight="bold")
        y -= 0.028
        width = 0.86 / len(table.head)
        for r, row in enumerate([table.head, *table.rows]):
            for col, cell in enumerate(row):
                fig.text(
                    0.07 + col * width,
                    y,
                    cell,
                    fontsize=9,
                    weight="bold" if r == 0 else "normal",
                    color="#555555" if r == 0 else "black",
                )
            y -= 0.022
        if not table.rows:
            fig.text(0.07, y, "（无）", fontsize=9, color="#888888")
            y -= 0.022
        y -= 0.015
    yield fig


def _page(v: dict[str, Any]) -> Figure:
    fig = Figure(figsize=A4)
    fig.text(0.07, 0.03, f"{v['title']} · {v['scope']}", fontsize=7, color="#888888")
    return fig


def render_pdf(report: DailyReport, kind_name: KindName = default_kind_name) -> bytes:
    """The report as a PDF: the figures and tables, then a page of charts."""
    v = view(report, kind_name)
    buf = io.BytesIO()
    meta = {"Title": v["title"], "Creator": "microbrain"}
    with _styled(), PdfPages(buf, metadata=meta) as pdf:
        for page in _text_pages(v):
            pdf.savefig(page)
        drawings = _drawings(report, kind_name)
        sheet = Figure(figsize=A4, layout="constrained")
        sheet.suptitle(f"{v['title']} · 图表", fontsize=14, weight="bold")
        grid = sheet.add_gridspec(len(drawings), 1, height_ratios=[h for _, h in drawings])
        for i, (draw, _) in enumerate(drawings):
            draw(sheet.add_subplot(grid[i]))
        pdf.savefig(sheet)
    return buf.getvalue()
