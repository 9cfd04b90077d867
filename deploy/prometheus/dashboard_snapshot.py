"""Draw a Grafana dashboard from a live Prometheus as a PNG, for the README picture.

No Grafana server can run on the build machines, so this script runs the dashboard's own
queries against Prometheus' HTTP API (``/api/v1/query_range``, ``/api/v1/query`` for instant
targets) and draws them with matplotlib in the dashboard's layout (``gridPos``), in Grafana's
dark colours: stat panels as big numbers coloured by their thresholds, time series as lines
(stacked or bars where the panel says so), bar gauges as horizontal bars, state timelines as
coloured bands. Run it against the compose stack once it has been up for a while:

    .venv/bin/python deploy/prometheus/dashboard_snapshot.py \\
        --prometheus http://localhost:9090 --range 1h --out docs/img/fleet-dashboard.png

    .venv/bin/python deploy/prometheus/dashboard_snapshot.py \\
        --dashboard deploy/grafana/dashboards/engine.json --var engine_id=engine-007 \\
        --out docs/img/engine-dashboard.png

Dashboard variables default to ``.*`` (Grafana's "All"); set them with ``--var name=value``.
Exit status: 0 on success, 2 when Prometheus cannot be reached or answers with an error for
every query.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "fleet.json"

#: Grafana's dark theme.
BACKGROUND = "#111217"
PANEL = "#181b1f"
BORDER = "#2c3235"
TEXT = "#ccccdc"
MUTED = "#8e8e9e"
COLORS: dict[str, str] = {
    "green": "#73bf69",
    "red": "#f2495c",
    "orange": "#ff9830",
    "yellow": "#fade2a",
    "blue": "#5794f2",
    "purple": "#b877d9",
    "text": TEXT,
}
PALETTE = ["#73bf69", "#fade2a", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#ffb357"]

#: Panel types this script can draw; others get a placeholder naming the type.
SUPPORTED_PANELS = frozenset({"row", "stat", "timeseries", "bargauge", "state-timeline"})

_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class SnapshotError(Exception):
    """Prometheus could not be reached or rejected a query."""


@dataclass(frozen=True)
class Series:
    """One result series: its labels and its samples (Unix seconds, value)."""

    labels: Mapping[str, str]
    times: Sequence[float]
    values: Sequence[float]


@dataclass
class QueryResult:
    """The series a panel's target returned, with the legend for each."""

    legend: str
    series: list[Series] = field(default_factory=list)
    error: str | None = None


# --- queries ---------------------------------------------------------------------------------


def rate_interval(step_s: float, scrape_interval_s: float) -> str:
    """Grafana's ``$__rate_interval``: max(step + scrape interval, 4 x scrape interval)."""
    return f"{int(max(step_s + scrape_interval_s, 4 * scrape_interval_s))}s"


def substitute(expr: str, variables: Mapping[str, str], range_s: float, rate: str) -> str:
    """Replace Grafana's variables in ``expr``; unknown dashboard variables become ``.*``."""
    builtins = {
        "__rate_interval": rate,
        "__interval": rate,
        "__range": f"{int(range_s)}s",
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in builtins:
            return builtins[name]
        return variables.get(name, ".*")

    return _VARIABLE.sub(replace, expr)


def legend_for(fmt: str, labels: Mapping[str, str]) -> str:
    """Render a Grafana legend format (``{{label}}``) for one series."""
    if not fmt or fmt == "__auto":
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
        return labels.get("__name__", "") + (f"{{{inner}}}" if inner else "") or "value"
    text = _LEGEND.sub(lambda m: labels.get(m.group(1), ""), fmt).strip()
    return text or legend_for("__auto", labels)


def _get(base_url: str, path: str, params: Mapping[str, str], timeout_s: float) -> Any:
    url = f"{base_url.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            body = json.load(exc)
        except ValueError:
            raise SnapshotError(f"{path}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise SnapshotError(f"cannot reach Prometheus at {base_url}: {exc}") from exc
    if body.get("status") != "success":
        raise SnapshotError(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
    return body["data"]


def query_range(
    base_url: str, expr: str, start: float, end: float, step_s: float, timeout_s: float = 30
) -> list[Series]:
    """Run a range query; one :class:`Series` per result, NaN samples dropped."""
    data = _get(
        base_url,
        "/api/v1/query_range",
        {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}"},
        timeout_s,
    )
    out = []
    for item in data["result"]:
        samples = [(float(t), float(v)) for t, v in item["values"] if not math.isnan(float(v))]
        out.append(Series(item["metric"], [t for t, _ in samples], [v for _, v in samples]))
    return out


def query_instant(base_url: str, expr: str, at: float, timeout_s: float = 30) -> list[Series]:
    """Run an instant query at ``at``; one single-sample :class:`Series` per result."""
    data = _get(base_url, "/api/v1/query", {"query": expr, "time": f"{at:.3f}"}, timeout_s)
    if data["resultType"] == "scalar":
        t, v = data["result"]
        return [Series({}, [float(t)], [float(v)])]
    return [
        Series(item["metric"], [float(item["value"][0])], [float(item["value"][1])])
        for item in data["result"]
    ]


# --- values and colours ----------------------------------------------------------------------


def format_value(value: float, unit: str, decimals: int | None = None) -> str:
    """A short human-readable value in a Grafana unit (short, none, s, reqps, percentunit),
    with the panel's ``decimals`` when it sets them."""
    if math.isnan(value):
        return "NaN"
    if decimals is not None and unit in ("none", "short"):
        return f"{value:.{decimals}f}"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        if abs(value) < 1:
            return f"{value * 1000:.3g} ms"
        if abs(value) < 120:
            return f"{value:.3g} s"
        return f"{value / 60:.3g} min"
    suffix = " /s" if unit == "reqps" else ""
    for scale, letter in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{letter}{suffix}"
    return f"{value:.3g}{suffix}"


def color(name: str | None, default: str = TEXT) -> str:
    """A Grafana colour name (or hex code) as a hex code."""
    if not name:
        return default
    return COLORS.get(name, name if name.startswith("#") else default)


def threshold_color(value: float, defaults: Mapping[str, Any]) -> str:
    """The colour of the highest threshold step at or below ``value``."""
    chosen = "green"
    for step in defaults.get("thresholds", {}).get("steps", []):
        if step.get("value") is None or value >= step["value"]:
            chosen = step["color"]
    return color(chosen)


def mapped(value: float, defaults: Mapping[str, Any]) -> tuple[str, str] | None:
    """(text, colour) of a value mapping that matches ``value``, if any."""
    for mapping in defaults.get("mappings", []):
        if mapping.get("type") != "value":
            continue
        for key, result in mapping["options"].items():
            if float(key) == value:
                return str(result.get("text", key)), color(result.get("color"))
    return None


def _override(panel: Mapping[str, Any], name: str, prop: str) -> Any:
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        if override["matcher"].get("options") != name:
            continue
        for p in override["properties"]:
            if p["id"] == prop:
                return p["value"]
    return None


# --- drawing ---------------------------------------------------------------------------------


def _epoch_s() -> float:
    epoch = datetime.fromisoformat(str(matplotlib.rcParams["date.epoch"]))
    return (epoch if epoch.tzinfo else epoch.replace(tzinfo=UTC)).timestamp()


def date_numbers(times: Sequence[float]) -> list[float]:
    """Unix seconds as matplotlib date numbers (days since matplotlib's date epoch)."""
    epoch = _epoch_s()
    return [(t - epoch) / 86400.0 for t in times]


def _time_axis(ax: Axes) -> None:
    """Clock times on the x axis, with seconds when the range is short."""
    lo, hi = ax.get_xlim()
    fmt = "%H:%M:%S" if (hi - lo) * 86400 < 900 else "%H:%M"
    epoch = _epoch_s()

    def clock(days: float, _pos: int | None = None) -> str:
        return time.strftime(fmt, time.gmtime(epoch + days * 86400.0))

    ax.xaxis.set_major_formatter(FuncFormatter(clock))


def _style(frame: Axes, title: str) -> None:
    """The panel's box and title, like Grafana's panel chrome."""
    frame.set_facecolor(PANEL)
    for spine in frame.spines.values():
        spine.set_color(BORDER)
    frame.set_xticks([])
    frame.set_yticks([])
    frame.text(
        0.01,
        0.98,
        title,
        color=TEXT,
        fontsize=9,
        fontweight="bold",
        ha="left",
        va="top",
        transform=frame.transAxes,
    )


def _message(ax: Axes, text: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(
        0.5,
        0.5,
        text,
        color=MUTED,
        ha="center",
        va="center",
        fontsize=9,
        transform=ax.transAxes,
        wrap=True,
    )


def fit_font_size(ax: Axes, text: str, size: float, min_size: float = 6.0) -> float:
    """``size``, or smaller so that ``text`` fits the width of ``ax`` (long model versions,
    instance addresses), as Grafana's stat panel shrinks its text."""
    fig = ax.figure
    width_pt = ax.get_position().width * fig.bbox.width / fig.dpi * 72
    # bold DejaVu Sans averages ~0.62 em per character; keep a small margin on each side
    fitted = 0.9 * width_pt / (0.62 * max(1, len(text)))
    return max(min_size, min(size, fitted))


def draw_stat(ax: Axes, panel: Mapping[str, Any], results: Sequence[QueryResult]) -> None:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit = defaults.get("unit", "short")
    text_mode = panel.get("options", {}).get("textMode", "auto")
    plain = text_mode == "name" or panel.get("options", {}).get("colorMode") == "none"
    items: list[tuple[str, str, str]] = []  # (label, value, colour)
    for result in results:
        for series in result.series:
            if not series.values:
                continue
            value = series.values[-1]
            label = legend_for(result.legend, series.labels)
            hit = mapped(value, defaults)
            if hit is None:
                hit = (format_value(value, unit, defaults.get("decimals")),
                       threshold_color(value, defaults))
            shown, hue = hit
            items.append((label, label if text_mode == "name" else shown, hue))
    ax.set_xticks([])
    ax.set_yticks([])
    if not items:
        _message(ax, "No data")
        return
    size = 22 if len(items) == 1 else max(9, 18 - 3 * len(items))
    for i, (_, shown, hue) in enumerate(items):
        y = 0.45 if len(items) == 1 else 0.8 - i * (0.7 / max(1, len(items) - 1))
        ax.text(
            0.5,
            y,
            shown,
            color=TEXT if plain else hue,
            fontsize=fit_font_size(ax, shown, size),
            fontweight="bold",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )


def draw_timeseries(ax: Axes, panel: Mapping[str, Any], results: Sequence[QueryResult]) -> None:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    custom = defaults.get("custom", {})
    unit = defaults.get("unit", "short")
    stacked = custom.get("stacking", {}).get("mode", "none") == "normal"
    bars = custom.get("drawStyle") == "bars"
    right: Axes | None = None
    lines = 0
    stack_base: dict[float, float] = {}
    for result in results:
        for series in result.series:
            if not series.times:
                continue
            name = legend_for(result.legend, series.labels)
            fixed = _override(panel, name, "color")
            hue = color(fixed.get("fixedColor")) if fixed else PALETTE[lines % len(PALETTE)]
            lines += 1
            target = ax
            if _override(panel, name, "custom.axisPlacement") == "right":
                if right is None:
                    right = ax.twinx()
                    right.set_facecolor("none")
                    for spine in right.spines.values():
                        spine.set_visible(False)
                    right.tick_params(colors=MUTED, labelsize=7, length=0)
                target = right
            times = date_numbers(series.times)
            dash = _override(panel, name, "custom.lineStyle")
            style = "--" if dash and dash.get("fill") == "dash" else "-"
            if stacked:
                base = [stack_base.get(t, 0.0) for t in series.times]
                top = [b + v for b, v in zip(base, series.values, strict=True)]
                target.fill_between(
                    times, base, top, color=hue, alpha=0.6, linewidth=0.8, label=name
                )
                stack_base.update(zip(series.times, top, strict=True))
            elif bars or _override(panel, name, "custom.drawStyle") == "bars":
                span = times[-1] - times[0] if len(times) > 1 else 0.001
                width = span / len(times) * 0.8
                target.bar(times, series.values, width=width, color=hue, alpha=0.8, label=name)
            else:
                target.plot(
                    times, series.values, color=hue, linewidth=1.2, linestyle=style, label=name
                )
    if lines == 0:
        _message(ax, "No data")
        return
    scale = custom.get("scaleDistribution", {})
    if scale.get("type") == "symlog":
        # Grafana's symlog: linear up to linearThreshold, logarithmic beyond
        ax.set_yscale("symlog", base=scale.get("log", 10),
                      linthresh=scale.get("linearThreshold", 1))
    elif scale.get("type") == "log":
        ax.set_yscale("log", base=scale.get("log", 2))
    if "min" in defaults and "max" in defaults:
        ax.set_ylim(defaults["min"], defaults["max"])
    elif "min" in defaults:
        ax.set_ylim(bottom=defaults["min"])
    _time_axis(ax)
    ax.grid(color=BORDER, linewidth=0.5)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v, unit)))
    handles, labels = ax.get_legend_handles_labels()
    if right is not None:
        more_h, more_l = right.get_legend_handles_labels()
        handles, labels = handles + more_h, labels + more_l
    if not labels:
        return
    legend = ax.legend(
        handles,
        labels,
        fontsize=6,
        loc="upper left",
        ncol=min(4, len(labels)),
        facecolor=PANEL,
        edgecolor=BORDER,
        labelcolor=TEXT,
        framealpha=0.7,
    )
    legend.set_zorder(10)


def draw_bargauge(ax: Axes, panel: Mapping[str, Any], results: Sequence[QueryResult]) -> None:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit = defaults.get("unit", "short")
    bars: list[tuple[str, float]] = []
    for result in results:
        for series in result.series:
            if series.values:
                bars.append((legend_for(result.legend, series.labels), series.values[-1]))
    if not bars:
        _message(ax, "No data")
        return
    bars.sort(key=lambda b: b[1])
    names = [b[0] for b in bars]
    values = [b[1] for b in bars]
    top = defaults.get("max", max(values) or 1.0)
    ax.barh(names, [top] * len(values), color=BORDER, height=0.7)
    ax.barh(names, values, color=[threshold_color(v, defaults) for v in values], height=0.7)
    decimals = defaults.get("decimals")
    for i, v in enumerate(values):
        ax.text(
            top, i, f" {format_value(v, unit, decimals)}", color=TEXT, va="center", ha="right",
            fontsize=7,
        )
    ax.set_xlim(defaults.get("min", 0), top)
    ax.set_xticks([])
    ax.tick_params(axis="y", labelsize=7, colors=TEXT)


def draw_state_timeline(ax: Axes, panel: Mapping[str, Any], results: Sequence[QueryResult]) -> None:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    rows = [(legend_for(r.legend, s.labels), s) for r in results for s in r.series if s.times]
    if not rows:
        _message(ax, "No data")
        return
    for i, (_, series) in enumerate(rows):
        times = date_numbers(series.times)
        step = (times[-1] - times[0]) / max(len(times) - 1, 1) if len(times) > 1 else 1 / 1440
        for t, v in zip(times, series.values, strict=True):
            hit = mapped(v, defaults)
            hue = hit[1] if hit else threshold_color(v, defaults)
            ax.barh(i, step, left=t, color=hue, height=0.8)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    _time_axis(ax)


#: Inner margins per panel type, (left, right) in grid columns and bottom in grid rows: room for
#: tick labels (time series), engine names (bar gauge, state timeline) or none (stat).
PANEL_MARGINS: dict[str, tuple[float, float, float]] = {
    "stat": (0.1, 0.1, 0.1),
    "timeseries": (0.9, 0.2, 0.6),
    "bargauge": (1.4, 0.1, 0.1),
    "state-timeline": (1.4, 0.2, 0.6),
}

DRAW = {
    "stat": draw_stat,
    "timeseries": draw_timeseries,
    "bargauge": draw_bargauge,
    "state-timeline": draw_state_timeline,
}


# --- the dashboard ---------------------------------------------------------------------------


def panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The dashboard's panels, rows' nested panels included, in layout order."""
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return sorted(out, key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))


def run_queries(
    panel: Mapping[str, Any],
    prometheus: str,
    variables: Mapping[str, str],
    start: float,
    end: float,
    step_s: float,
    scrape_interval_s: float,
) -> list[QueryResult]:
    """Every target of ``panel`` against Prometheus; a failed query keeps its error."""
    rate = rate_interval(step_s, scrape_interval_s)
    results = []
    for target in panel.get("targets", []):
        expr = substitute(target["expr"], variables, end - start, rate)
        result = QueryResult(target.get("legendFormat", "__auto"))
        try:
            if target.get("instant"):
                result.series = query_instant(prometheus, expr, end)
            else:
                result.series = query_range(prometheus, expr, start, end, step_s)
        except SnapshotError as exc:
            if str(exc).startswith("cannot reach"):
                raise
            result.error = str(exc)
        results.append(result)
    return results


def render(
    dashboard: Mapping[str, Any],
    results: Mapping[int, list[QueryResult]],
    end: float,
    range_s: float,
) -> Figure:
    """Draw the dashboard's panels at their grid positions from already-run queries."""
    layout = panels(dashboard)
    grid_h = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in layout) + 1.5
    unit_in = 0.72  # inches per grid column; Grafana rows are ~30 px, columns ~1/24 width
    fig = plt.figure(figsize=(24 * unit_in, grid_h * unit_in * 0.62), facecolor=BACKGROUND)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(end))
    fig.text(
        0.005,
        1 - 0.6 / grid_h,
        f"{dashboard['title']}   ·   last {int(range_s // 60)} min to {stamp}",
        color=TEXT,
        fontsize=13,
        fontweight="bold",
        va="center",
    )
    col, unit_h = 1 / 24, 1 / grid_h
    for panel in layout:
        g = panel["gridPos"]
        left, width = g["x"] * col + 0.002, g["w"] * col - 0.004
        bottom = 1 - (g["y"] + 1.5 + g["h"]) * unit_h + 0.1 * unit_h
        height = g["h"] * unit_h - 0.2 * unit_h
        if panel["type"] == "row":
            fig.text(
                left,
                bottom + height / 2,
                panel["title"],
                color=TEXT,
                fontsize=11,
                fontweight="bold",
                va="center",
            )
            continue
        frame = fig.add_axes((left, bottom, width, height))
        _style(frame, panel["title"])
        # The data goes in an inner area that leaves room for the title and the tick labels,
        # which matplotlib would otherwise draw over the neighbouring panel.
        m_left, m_right, m_bottom = PANEL_MARGINS.get(panel["type"], (0.15, 0.15, 0.15))
        if any(
            p["id"] == "custom.axisPlacement"
            for o in panel.get("fieldConfig", {}).get("overrides", [])
            for p in o["properties"]
        ):
            m_right = 0.9
        ax = fig.add_axes(
            (
                left + m_left * col,
                bottom + m_bottom * unit_h,
                width - (m_left + m_right) * col,
                height - (m_bottom + 0.75) * unit_h,
            )
        )
        ax.set_facecolor(PANEL)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.tick_params(colors=MUTED, labelsize=7, length=0)
        panel_results = results.get(panel["id"], [])
        errors = [r.error for r in panel_results if r.error]
        if panel["type"] not in DRAW:
            _message(ax, f"({panel['type']} panel not drawn)")
        elif errors and len(errors) == len(panel_results):
            _message(ax, "query error:\n" + errors[0][:120])
        else:
            DRAW[panel["type"]](ax, panel, panel_results)
    return fig


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--prometheus",
        default="http://localhost:9090",
        help="Prometheus base URL (default %(default)s)",
    )
    parser.add_argument(
        "--dashboard",
        type=Path,
        default=DEFAULT_DASHBOARD,
        help="Grafana dashboard JSON (default: the fleet dashboard)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("fleet-dashboard.png"),
        help="PNG to write (default %(default)s)",
    )
    parser.add_argument(
        "--range",
        dest="range_s",
        type=parse_duration,
        default="1h",
        metavar="DURATION",
        help="time range ending now or at --end: 30m, 1h, 6h (default 1h)",
    )
    parser.add_argument(
        "--end", type=float, default=None, help="end of the range, Unix seconds (default: now)"
    )
    parser.add_argument(
        "--step",
        type=float,
        default=None,
        help="query resolution in seconds (default: range / 240)",
    )
    parser.add_argument(
        "--scrape-interval",
        type=float,
        default=15.0,
        help="Prometheus scrape interval in seconds, for $__rate_interval",
    )
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="dashboard variable value (repeatable); others are .*",
    )
    parser.add_argument("--dpi", type=int, default=110)
    return parser.parse_args(argv)


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``30m``, ``1h`` or ``2d``."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 30m, 1h)")
    return float(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    range_s: float = args.range_s
    end = args.end if args.end is not None else time.time()
    start = end - range_s
    step_s = args.step or max(1.0, round(range_s / 240))
    variables = dict(v.split("=", 1) for v in args.var)
    dashboard = json.loads(args.dashboard.read_text())
    results: dict[int, list[QueryResult]] = {}
    try:
        for panel in panels(dashboard):
            if panel["type"] != "row":
                results[panel["id"]] = run_queries(
                    panel, args.prometheus, variables, start, end, step_s, args.scrape_interval
                )
    except SnapshotError as exc:
        print(f"dashboard_snapshot: {exc}", file=sys.stderr)
        return 2
    all_results = [r for rs in results.values() for r in rs]
    failed = [r.error for r in all_results if r.error]
    if all_results and len(failed) == len(all_results):
        print(f"dashboard_snapshot: every query failed, first: {failed[0]}", file=sys.stderr)
        return 2
    for error in failed:
        print(f"dashboard_snapshot: warning: {error}", file=sys.stderr)
    fig = render(dashboard, results, end, range_s)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=args.dpi, facecolor=BACKGROUND)
    empty = sum(1 for r in all_results if not r.error and not r.series)
    print(f"wrote {args.out} ({len(results)} panels, {empty} queries without data)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
