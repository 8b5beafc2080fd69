"""Requester reports: PNG charts (matplotlib, Agg) and a one-page HTML summary.

:func:`collect` reads a project's numbers through the engine (its status and
:meth:`~polycrowd.engine.core.Engine.report_figures`); :func:`render_charts` draws them in a
worker thread (matplotlib is CPU work and not thread-safe through pyplot, so every chart is
its own ``Figure`` on its own Agg canvas, never pyplot's global state). Charts are sized for
a phone: 1080 pixels wide, large type, one message per chart. A chart with no data is left
out rather than drawn empty (e.g. "human answers saved" when no model was in the loop).
"""

from __future__ import annotations

import asyncio
import base64
import io
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polycrowd.engine.core import Engine, EngineError, ProjectStatus
from polycrowd.i18n import N_, Msg, Translator

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

WIDTH_PX = 1080
HEIGHT_PX = 880
DPI = 120
TITLE_CHARS = 34  # a 28 pt bold title line across 1080 px
BLUE, ORANGE, GREY = "#1f6fb2", "#e07b00", "#8a8a8a"

TITLES = {
    "progress": N_("Progress over time"),
    "languages": N_("Answers per language"),
    "accuracy_gold": N_("Worker accuracy on check questions"),
    "accuracy_results": N_("Worker agreement with the results"),
    "confusion_gold": N_("Answers against gold"),
    "confusion_results": N_("Answers against results"),
    "spend": N_("Spend against budget"),
    "saved": N_("Human answers saved by the model"),
}
AXES = {
    "answers": N_("Answers"),
    "needed": N_("Answers needed"),
    "workers": N_("Workers"),
    "answer": N_("Worker's answer"),
    "expected": N_("Expected"),
    "spend": N_("Spend"),
    "budget": N_("Budget"),
    "asked": N_("Human answers"),
    "saved": N_("Saved"),
}


class ReportUnavailable(EngineError):
    """matplotlib or jinja2 is not installed."""


@dataclass(frozen=True, slots=True)
class ReportData:
    status: ProjectStatus
    answer_times: tuple[float, ...]
    needed_answers: int
    languages: tuple[tuple[str, int], ...]
    accuracy_source: str  # gold | results
    accuracies: tuple[float, ...]
    confusion_source: str  # gold | results
    confusion: tuple[tuple[str, str, int], ...]
    labels: tuple[str, ...]
    spend_times: tuple[tuple[float, int], ...]
    budget: int
    assist: tuple[int, int] | None  # (items settled with the model, human answers saved)


@dataclass(frozen=True, slots=True)
class Chart:
    name: str  # file stem: progress, languages, accuracy, confusion, spend, saved
    title: str  # translated
    png: bytes

    @property
    def filename(self) -> str:
        return f"{self.name}.png"


@dataclass(frozen=True, slots=True)
class Report:
    data: ReportData
    charts: tuple[Chart, ...]
    html: str


async def collect(engine: Engine, project_id: int) -> ReportData:
    status = await engine.status(project_id)
    p = status.project
    f = await engine.report_figures(project_id)
    real_items = status.items - status.gold_items
    return ReportData(
        status=status,
        answer_times=f.answer_times,
        needed_answers=real_items * p.overlap,
        languages=f.languages,
        accuracy_source=f.accuracy_source,
        accuracies=f.accuracies,
        confusion_source=f.confusion_source,
        confusion=f.confusion if p.task_type.has_buttons else (),
        labels=p.labels,
        spend_times=f.spend_times,
        budget=real_items * p.overlap_max * p.reward,
        assist=f.assist,
    )


async def build_report(
    engine: Engine, project_id: int, translator: Translator, lang: str
) -> Report:
    """Collect, then draw the charts and the HTML page in a worker thread."""
    data = await collect(engine, project_id)
    return await asyncio.to_thread(_build, data, translator, lang)


def _build(data: ReportData, translator: Translator, lang: str) -> Report:
    charts = tuple(render_charts(data, translator, lang))
    return Report(data, charts, render_html(data, charts, translator, lang))


# Charts ---------------------------------------------------------------------------------------


def render_charts(data: ReportData, translator: Translator, lang: str) -> list[Chart]:
    """Every chart that has data, as PNG bytes. Blocking: call it in a thread."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError as exc:
        raise ReportUnavailable(N_("Charts are not available on this server.")) from exc
    # Arabic script would come out unshaped: RTL readers get the titles in the caption only.
    text = not translator.is_rtl(lang)

    def tr(key: str) -> str:
        return translator.render(Msg(AXES[key]), lang) if text else ""

    out: list[Chart] = []
    for name, draw in (
        ("progress", _progress),
        ("languages", _languages),
        ("accuracy", _accuracy),
        ("confusion", _confusion),
        ("spend", _spend),
        ("saved", _saved),
    ):
        title_key = _title_key(name, data)
        fig = _figure()
        if not draw(fig, data, tr):
            continue
        title = translator.render(Msg(TITLES[title_key]), lang)
        if text:
            wrapped = textwrap.fill(title, TITLE_CHARS)  # long translations stay inside
            fig.suptitle(wrapped, fontsize=28, fontweight="bold", x=0.03, ha="left")
        out.append(Chart(name, title, _png(fig)))
    return out


def _title_key(name: str, data: ReportData) -> str:
    if name == "accuracy":
        return f"accuracy_{data.accuracy_source}"
    if name == "confusion":
        return f"confusion_{data.confusion_source}"
    return name


def _figure() -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _style(ax: Axes) -> None:
    ax.tick_params(labelsize=20, length=6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="y", alpha=0.3)


def _time_axis(ax: Axes, times: Sequence[float]) -> list[Any]:
    import datetime as dt

    import matplotlib.dates as mdates

    stamps = [dt.datetime.fromtimestamp(t, dt.UTC) for t in times]
    locator = mdates.AutoDateLocator(minticks=2, maxticks=5)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    concise = mdates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(concise)
    ax.xaxis.get_offset_text().set_fontsize(18)
    if stamps and (stamps[-1] - stamps[0]).total_seconds() < 60:
        pad = dt.timedelta(minutes=30)
        ax.set_xlim(stamps[0] - pad, stamps[-1] + pad)  # type: ignore[arg-type]
    return stamps


def _progress(fig: Figure, data: ReportData, tr: Any) -> bool:
    if not data.answer_times:
        return False
    ax = fig.add_subplot()
    stamps = _time_axis(ax, data.answer_times)
    ax.step(stamps, range(1, len(stamps) + 1), where="post", color=BLUE, linewidth=4)
    if data.needed_answers:
        ax.axhline(data.needed_answers, color=GREY, linestyle="--", linewidth=3)
        ax.annotate(
            f"{tr('needed')} {data.needed_answers}".strip(),
            xy=(0.02, data.needed_answers),
            xycoords=("axes fraction", "data"),
            va="bottom",
            fontsize=20,
            color=GREY,
        )
    ax.set_ylim(0, max(data.needed_answers, len(stamps)) * 1.12)
    ax.set_ylabel(tr("answers"), fontsize=22)
    _style(ax)
    return True


def _languages(fig: Figure, data: ReportData, tr: Any) -> bool:
    if not data.languages:
        return False
    top = list(data.languages[:8])
    ax = fig.add_subplot()
    names = [code for code, _ in top][::-1]
    counts = [n for _, n in top][::-1]
    bars = ax.barh(names, counts, color=BLUE)
    ax.bar_label(bars, padding=8, fontsize=22)
    ax.set_xlabel(tr("answers"), fontsize=22)
    ax.set_xlim(0, max(counts) * 1.2)
    _style(ax)
    ax.grid(False)
    return True


def _accuracy(fig: Figure, data: ReportData, tr: Any) -> bool:
    if not data.accuracies:
        return False
    ax = fig.add_subplot()
    values = [100 * a for a in data.accuracies]
    ax.hist(values, bins=list(range(0, 101, 10)), color=BLUE, edgecolor="white", linewidth=2)
    ax.set_xlim(0, 100)
    ax.set_xticks([0, 25, 50, 75, 100])
    ax.xaxis.set_major_formatter("{x:.0f}%")
    ax.set_ylabel(tr("workers"), fontsize=22)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _style(ax)
    return True


def _confusion(fig: Figure, data: ReportData, tr: Any) -> bool:
    if not data.confusion:
        return False
    seen = {label for ref, ans, _ in data.confusion for label in (ref, ans)}
    labels = [*data.labels, *sorted(seen - set(data.labels))][:10]
    index = {label: k for k, label in enumerate(labels)}
    import numpy as np

    m = np.zeros((len(labels), len(labels)), dtype=int)
    for ref, ans, n in data.confusion:
        if ref in index and ans in index:
            m[index[ref], index[ans]] += n
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros(m.shape), where=rows > 0)
    ax = fig.add_subplot()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    size = 26 if len(labels) <= 4 else 18
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                str(m[i, j]),
                ha="center",
                va="center",
                fontsize=size,
                color="white" if share[i, j] > 0.55 else "black",
            )
    short = [x if len(x) <= 12 else x[:11] + "…" for x in labels]
    ax.set_xticks(range(len(labels)), short, fontsize=20, rotation=30 if len(labels) > 4 else 0)
    ax.set_yticks(range(len(labels)), short, fontsize=20)
    ax.set_xlabel(tr("answer"), fontsize=22)
    ax.set_ylabel(tr("expected"), fontsize=22)
    ax.tick_params(length=0)
    return True


def _spend(fig: Figure, data: ReportData, tr: Any) -> bool:
    if not data.spend_times and not data.budget:
        return False
    if not data.spend_times:
        return False
    ax = fig.add_subplot()
    stamps = _time_axis(ax, [t for t, _ in data.spend_times])
    total, spent = 0, []
    for _, amount in data.spend_times:
        total += amount
        spent.append(total / 100)
    ax.step(stamps, spent, where="post", color=ORANGE, linewidth=4, label=tr("spend") or None)
    top = max(spent)
    if data.budget:
        ax.axhline(data.budget / 100, color=GREY, linestyle="--", linewidth=3)
        ax.annotate(
            f"{tr('budget')} {data.budget / 100:.2f}".strip(),
            xy=(0.02, data.budget / 100),
            xycoords=("axes fraction", "data"),
            va="bottom",
            fontsize=20,
            color=GREY,
        )
        top = max(top, data.budget / 100)
    ax.set_ylim(0, top * 1.15 or 1)
    ax.set_ylabel(tr("spend"), fontsize=22)
    _style(ax)
    return True


def _saved(fig: Figure, data: ReportData, tr: Any) -> bool:
    if data.assist is None:
        return False
    _, saved = data.assist
    asked = data.status.answers
    ax = fig.add_subplot()
    bars = ax.bar([tr("asked") or "1", tr("saved") or "2"], [asked, saved], color=[BLUE, ORANGE])
    ax.bar_label(bars, padding=8, fontsize=24)
    ax.set_ylim(0, max(asked, saved, 1) * 1.2)
    _style(ax)
    return True


# HTML -----------------------------------------------------------------------------------------


def summary_lines(data: ReportData) -> list[Msg]:
    """The numbers of /status, as messages (also the HTML page's header)."""
    return status_lines(data.status)


def status_lines(s: ProjectStatus) -> list[Msg]:
    """A project's progress, answers, agreement, spend and alpha, as /status shows them."""
    from polycrowd.handlers.worker import money

    agreement = "-" if s.mean_agreement is None else f"{100 * s.mean_agreement:.0f}%"
    alpha = "-" if s.krippendorff_alpha is None else f"{s.krippendorff_alpha:.2f}"
    return [
        Msg(
            N_("Items done: %(done)s of %(total)s"),
            {"done": s.done_items, "total": s.items - s.gold_items},
        ),
        Msg(
            N_("Answers: %(answers)s (rejected %(rejected)s) from %(workers)s workers"),
            {"answers": s.answers, "rejected": s.rejected, "workers": s.workers},
        ),
        Msg(
            N_("Agreement: %(agreement)s, spend: %(spend)s"),
            {"agreement": agreement, "spend": money(s.spend)},
        ),
        Msg(N_("Krippendorff's alpha: %(alpha)s"), {"alpha": alpha}),
    ]


def jinja_env() -> Any:
    try:
        import jinja2
    except ImportError as exc:
        raise ReportUnavailable(N_("Charts are not available on this server.")) from exc
    return jinja2.Environment(
        loader=jinja2.PackageLoader("polycrowd", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(
    data: ReportData, charts: Sequence[Chart], translator: Translator, lang: str
) -> str:
    p = data.status.project
    template = jinja_env().get_template("report.html")
    return str(
        template.render(
            lang=lang,
            rtl=translator.is_rtl(lang),
            title=translator.render(
                Msg(
                    N_("Project %(id)s “%(name)s”: %(state)s"),
                    {"id": p.id, "name": p.name, "state": p.state},
                ),
                lang,
            ),
            lines=[translator.render(m, lang) for m in summary_lines(data)],
            charts=[
                {
                    "title": c.title,
                    "src": "data:image/png;base64," + base64.b64encode(c.png).decode(),
                }
                for c in charts
            ],
        )
    )
