"""A picture of one unit over a run to failure, for operators (``evaluate lead-time --plot``).

Stacked panels share the time axis (hours since the run started): the reading and the
model's prediction it was scored against, the anomaly score with the warning and alarm
levels, and the unit's status as a coloured strip; the first alarm and the end of life are
marked across all panels. Everything drawn comes from the evaluation's traces: the same
numbers the lead-time table is computed from.

Imported only when a picture is asked for: it needs matplotlib, which is in the ``train``
extra (the CLI turns its absence into one line naming the extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from service.config import ScoringSettings
from service.evaluation.datasets import RunToFailure
from service.evaluation.stream import Trace
from service.scoring import STATUS_ORDER

HOUR_MS = 3_600_000
#: Status colours as on the Grafana dashboards (warmup grey, normal green, warning orange,
#: alarm red), in ``STATUS_ORDER``.
STATUS_COLOURS = ("#8e8e8e", "#56a64b", "#ff9830", "#e02f44")


def channel_labels(channels: Sequence[str], traces: Sequence[Trace]) -> list[str]:
    """A label per column of the unit's traces, in order: the unit's channel names when the
    columns are its channels (one stream of all of them, or one stream per channel), else
    numbered views (a model that scores views of one signal)."""
    widths = [0 if t.reading is None else t.reading.shape[1] for t in traces]
    if sum(widths) == len(channels):
        return list(channels)
    return [f"{channels[0]} view {k + 1}" for k in range(sum(widths))]


def draw_unit(
    path: Path,
    data: RunToFailure,
    unit: int,
    traces: Sequence[Trace],
    settings: ScoringSettings,
    first_alarm_h: float | None,
    subtitle: str = "",
) -> None:
    """Draw unit ``unit`` of ``data`` from the traces of its streams and write a PNG to
    ``path`` (its folder must exist). ``first_alarm_h``: the first counted alarm, hours
    since the run started (None: never alarmed). Called once, after the evaluation; raises
    ``ValueError`` when the traces hold no readings (traces from a replay, not a stream)."""
    u = data.units[unit]
    if not traces or any(t.reading is None or t.predicted is None for t in traces):
        raise ValueError("the traces hold no readings: draw from streamed traces")
    start = min(int(v.ts_ms[0]) for v in data.units)
    hours = (u.ts_ms - start) / HOUR_MS
    end_h = (u.end_ms - start) / HOUR_MS
    status = np.max(np.stack([t.status for t in traces]), axis=0)

    fig = Figure(figsize=(11, 7.5), layout="constrained")
    reading_ax, score_ax, status_ax = fig.subplots(
        3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 3, 0.6]}
    )
    labels = iter(channel_labels(u.channels, traces))
    for t in traces:
        assert t.reading is not None and t.predicted is not None
        for c in range(t.reading.shape[1]):
            name = next(labels)
            line = reading_ax.plot(hours, t.reading[:, c], lw=0.9, label=f"{name} reading")[0]
            reading_ax.plot(hours, t.predicted[:, c], lw=1.4, ls="--", color=line.get_color(),
                            alpha=0.8, label=f"{name} prediction it was scored against")
    reading_ax.set_ylabel("reading")
    reading_ax.legend(loc="upper left", fontsize=8)

    for k, t in enumerate(traces):
        score_ax.plot(hours, t.score, lw=1.0, color="#1f60c4" if len(traces) == 1 else None,
                      label="anomaly score" if len(traces) == 1 else f"score, stream {k + 1}")
    score_ax.axhline(settings.warning_score, color=STATUS_COLOURS[2], ls="--", lw=1.2,
                     label=f"warning level {settings.warning_score:g}")
    score_ax.axhline(settings.alarm_score, color=STATUS_COLOURS[3], ls="--", lw=1.2,
                     label=f"alarm level {settings.alarm_score:g}")
    top = max(float(np.nanmax([np.nanmax(t.score) for t in traces])), settings.alarm_score)
    if top > 20 * settings.alarm_score:
        # the score has no ceiling: a log-like scale keeps the levels readable beside peaks
        score_ax.set_yscale("symlog", linthresh=settings.alarm_score, linscale=2.0)
    score_ax.set_ylim(0.0, top * (3.0 if top > 20 * settings.alarm_score else 1.1))
    score_ax.set_ylabel("anomaly score" + (f" (log above {settings.alarm_score:g})"
                                           if score_ax.get_yscale() == "symlog" else ""))
    score_ax.legend(loc="upper left", fontsize=8)

    # the status strip: one coloured span per run of equal status
    edges = np.concatenate([hours, [hours[-1] + (hours[-1] - hours[-2] if hours.size > 1
                                                  else 1.0)]])
    change = np.flatnonzero(np.diff(status)) + 1
    for a, b in zip(np.concatenate([[0], change]), np.concatenate([change, [status.size]]),
                    strict=True):
        status_ax.axvspan(edges[a], edges[b], color=STATUS_COLOURS[int(status[a])], lw=0)
    status_ax.set_yticks([])
    status_ax.set_ylabel("status", rotation=0, ha="right", va="center")
    status_ax.legend(
        handles=[Patch(color=c, label=s.value) for s, c in zip(STATUS_ORDER, STATUS_COLOURS,
                                                                strict=True)],
        loc="center left", fontsize=8, bbox_to_anchor=(1.0, 0.5), frameon=False, ncol=2,
    )
    status_ax.set_xlabel("hours since the start of the run")

    for ax in (reading_ax, score_ax, status_ax):
        ax.axvline(end_h, color="black", lw=1.5)
        if first_alarm_h is not None:
            ax.axvline(first_alarm_h, color=STATUS_COLOURS[3], lw=1.5)
    backing = {"fc": "white", "ec": "none", "alpha": 0.8}
    reading_ax.annotate("end of life (failure)" if u.fails else "end of the test",
                        (end_h, 0.0), xycoords=("data", "axes fraction"), xytext=(-4, 4),
                        textcoords="offset points", ha="right", va="bottom", fontsize=9,
                        bbox=backing)
    if first_alarm_h is not None:
        reading_ax.annotate(
            f"first alarm {first_alarm_h:.1f} h\n({end_h - first_alarm_h:.1f} h before the end)",
            (first_alarm_h, 1.0), xycoords=("data", "axes fraction"), xytext=(-4, -4),
            textcoords="offset points", ha="right", va="top", fontsize=9,
            color=STATUS_COLOURS[3], bbox=backing,
        )
    status_ax.set_xlim(float(hours[0]), max(end_h, float(edges[-1])) + 0.01 * end_h)
    verdict = "never alarmed" if first_alarm_h is None else "alarm marked"
    fig.suptitle(f"{data.name} {u.name} ({'fails' if u.fails else 'healthy'}; {verdict})"
                 + (f"\n{subtitle}" if subtitle else ""), fontsize=11)
    fig.savefig(path, dpi=110)
