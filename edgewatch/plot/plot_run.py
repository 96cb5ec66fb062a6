"""A PNG of one stream of a recorded run: signals, anomaly_score bars, alerts and the truth.

The picture an operator checks a detector with: did the red bars and the
shaded alert episodes land on the faults (hatched), and what did the
signals do there. Each feature has its own lane with its training range
shaded (a voltage of 230 beside a vibration of 0.03 would otherwise hide
the vibration), the bars are anomaly_score with its 1.0 line, and each
alert episode is annotated with the features that contributed most at its
start. matplotlib with the Agg backend, so it runs headless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgewatch.errors import BadInput
from edgewatch.plot.run_file import Interval, Run, StreamRun, truth_for

OK_COLOR = "#2e9e44"
OVER_COLOR = "#d62728"
ALERT_COLOR = "#d62728"
TRUTH_COLOR = "#e69f00"
SIGNAL_COLORS = ("#1f77b4", "#ff7f0e", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
MAX_BARS = 4000


@dataclass
class PlotOptions:
    """What to draw. ``last`` keeps only the final seconds; ``log_score`` draws the score on a log axis."""

    stream: str | None = None
    last: float | None = None
    log_score: bool = False
    width: float = 12.0
    height: float = 6.5
    dpi: int = 100
    title: str | None = None


@dataclass
class Agreement:
    """How the alert episodes and the truth intervals met, counted by overlap."""

    truth: int
    caught: int
    episodes: int
    false_episodes: int


def agreement(episodes: list[Interval], truth: list[Interval], end: float) -> Agreement:
    """A truth interval is caught when an episode overlaps it; an episode overlapping none is false."""
    def ep_end(e: Interval) -> float:
        return end if np.isnan(e.end) else e.end
    caught = sum(any(e.start < t.end and ep_end(e) > t.start for e in episodes) for t in truth)
    false = sum(not any(e.start < t.end and ep_end(e) > t.start for t in truth) for e in episodes)
    return Agreement(len(truth), caught, len(episodes), false)


def pick_stream(run: Run, name: str | None) -> StreamRun:
    """The named stream, or the first with data; BadInput listing the names when it is absent."""
    if not run.streams:
        raise BadInput("the run file holds no messages or scored windows (did the agent receive data?)")
    if name is None:
        return next(iter(run.streams.values()))
    if name not in run.streams:
        names = ", ".join(list(run.streams)[:20])
        raise BadInput(f"no stream {name!r} in the run; it has: {names}")
    return run.streams[name]


def plot_run(run: Run, output: str | Path, truth: list[Interval] | None = None,
             options: PlotOptions | None = None) -> Agreement | None:
    """Draw one stream of ``run`` to ``output`` (PNG); returns the alert/truth agreement when truth is given."""
    import matplotlib.pyplot as plt

    fig, found = draw_run(run, truth, options)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return found


def draw_run(run: Run, truth: list[Interval] | None = None,
             options: PlotOptions | None = None) -> tuple[Any, Agreement | None]:
    """The figure of :func:`plot_run` (one lane per feature, then anomaly_score) and the agreement, unsaved."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates
    import matplotlib.pyplot as plt

    opts = options or PlotOptions()
    s = pick_stream(run, opts.stream)
    t0, t1 = s.start, s.end
    if opts.last is not None:
        t0 = max(t0, t1 - opts.last)
    keep = (s.t >= t0) & (s.t <= t1)
    wkeep = (s.wt >= t0) & (s.wt <= t1)
    t, values = s.t[keep], s.values[keep]
    wt, scores, over = s.wt[wkeep], s.scores[wkeep], s.over[wkeep]
    episodes = [e for e in s.episodes if (t1 if np.isnan(e.end) else e.end) >= t0 and e.start <= t1]
    truth_here = [i for i in truth_for(s.name, truth or []) if i.end >= t0 and i.start <= t1]

    # short runs read best in seconds from the start; long ones (NAB) as dates
    as_dates = (t1 - t0) > 2 * 3600 and t0 > 1e8
    if as_dates:
        def x(v: np.ndarray | float) -> np.ndarray | float:
            return matplotlib.dates.date2num(_to_dt(v))
    else:
        def x(v: np.ndarray | float) -> np.ndarray | float:
            return np.asarray(v, float) - t0

    features = run.features or [f"f{i}" for i in range(values.shape[1])]
    ranges = run.ranges if run.features else [None] * values.shape[1]
    n = max(1, values.shape[1])
    fig, axes = plt.subplots(n + 1, 1, sharex=True, figsize=(opts.width, opts.height), dpi=opts.dpi,
                             gridspec_kw={"height_ratios": [1.0] * n + [max(2.5, 0.6 * n)], "hspace": 0.08})
    lanes, ax_score = list(axes[:-1]), axes[-1]
    for j, ax in enumerate(lanes):
        if j < values.shape[1]:
            _lane(ax, x(t), values[:, j], features[j], ranges[j], SIGNAL_COLORS[j % len(SIGNAL_COLORS)])

    for ax in axes:
        for k, e in enumerate(episodes):
            end = t1 if np.isnan(e.end) else e.end
            ax.axvspan(x(max(e.start, t0)), x(min(end, t1)), color=ALERT_COLOR, alpha=0.13, lw=0,
                       label="alert episode" if k == 0 and ax is ax_score else None)
        for k, i in enumerate(truth_here):
            ax.axvspan(x(max(i.start, t0)), x(min(i.end, t1)), facecolor="none", edgecolor=TRUTH_COLOR,
                       hatch="///", lw=0.8, label="ground truth" if k == 0 and ax is ax_score else None)
        for k, r in enumerate(r for r in run.restarts if t0 <= r <= t1):
            ax.axvline(x(r), color="#555555", ls=":", lw=1.0,
                       label="agent restarted" if k == 0 and ax is ax_score else None)
    for i in truth_here:
        lanes[0].annotate(i.label, (x(max(i.start, t0)), 1.0), xycoords=("data", "axes fraction"),
                          xytext=(2, -3), textcoords="offset points", fontsize=7, color="#8a5a00", va="top")

    anomaly = None if s.anomaly is None else s.anomaly[wkeep]
    if anomaly is not None:
        _anomaly_bars(ax_score, np.asarray(x(wt), float), anomaly, over, opts.log_score, run.threshold)
    else:  # a run file from before anomaly_score: the raw score and its threshold
        _raw_bars(ax_score, np.asarray(x(wt), float), scores, over, opts.log_score, run, x, t0, t1)
    for k, e in enumerate(e for e in episodes if e.features and e.start >= t0):
        text = ", ".join(f"{name} {share:.0%}" for name, share in e.features)
        ax_score.annotate(text, (x(e.start), 1.0), xycoords=("data", "axes fraction"), xytext=(2, -2 - 9 * (k % 3)),
                          textcoords="offset points", fontsize=7, color="#8b1a1a", va="top")
    ax_score.bar([np.nan], [np.nan], color=OK_COLOR, label="under the threshold")
    ax_score.bar([np.nan], [np.nan], color=OVER_COLOR, label="over the threshold")
    ax_score.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.margins(x=0.005)
    if as_dates:
        ax_score.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%Y-%m-%d\n%H:%M"))
        ax_score.set_xlabel("time (local)")
    else:
        start = datetime.fromtimestamp(t0, tz=timezone.utc).isoformat(timespec="seconds") if t0 > 1e8 else f"{t0:g}"
        ax_score.set_xlabel(f"seconds since {start}")

    found = agreement(episodes, truth_here, t1) if truth is not None else None
    parts = [f"stream {s.name}", f"{len(t)} messages", f"{len(wt)} scored windows",
             f"{int(over.sum())} over", f"{len(episodes)} alert episode(s)"]
    if run.runs > 1:
        parts.append(f"{run.runs} runs")
    if found is not None:
        parts.append(f"truth caught {found.caught}/{found.truth}, false episodes {found.false_episodes}")
    model = run.header.get("model") or {}
    head = opts.title or f"edgewatch run · {model.get('family', 'model')}"
    lanes[0].set_title(head + "\n" + " · ".join(parts), fontsize=10)
    return fig, found


def _lane(ax: Any, xs: Any, values: np.ndarray, name: str, span: tuple[float, float] | None, color: str) -> None:
    """One feature in its own lane; its training range shaded, so a value outside it stands out."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.plot(xs, values, lw=0.9, color=color)
    finite = values[np.isfinite(values)]
    lo, hi = (span if span is not None else (np.inf, -np.inf))
    if finite.size:
        lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    if not np.isfinite([lo, hi]).all():
        lo, hi = 0.0, 1.0
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 0.5
    ax.set_ylim(lo - pad, hi + pad)
    if span is not None:
        ax.axhspan(span[0], span[1], color="#6b7280", alpha=0.12, lw=0)
        ax.set_yticks(sorted({span[0], span[1]}))
    else:
        ax.yaxis.set_major_locator(MaxNLocator(2))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.3g}"))
    ax.tick_params(axis="y", labelsize=7)
    ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8, color=color)


def _anomaly_bars(ax: Any, xs: np.ndarray, anomaly: np.ndarray, over: np.ndarray, log: bool,
                  threshold: float) -> None:
    """anomaly_score bars with the 1.0 line; ``log``: a symmetric log axis (linear within +-1)."""
    _bars(ax, xs, anomaly, over, 0.0)
    if log:
        ax.set_yscale("symlog", linthresh=1.0)
    ax.axhline(1.0, color="black", ls="--", lw=1.2, label=f"1 = the threshold (score {threshold:.4g})")
    ax.set_ylabel("anomaly_score" + (" (symlog)" if log else ""))


def _raw_bars(ax: Any, xs: np.ndarray, scores: np.ndarray, over: np.ndarray, log: bool, run: Run, x: Any,
              t0: float, t1: float) -> None:
    """The score in the model's units and its threshold over time (run files without anomaly_score)."""
    base = 0.0
    if log:
        ax.set_yscale("log")
        positive = scores[scores > 0]
        base = float(positive.min()) / 2 if len(positive) else 1e-6
    _bars(ax, xs, scores, over, base)
    th_x = [x(t0)]
    th_y = [run.thresholds[0][1]]
    for ts, value in run.thresholds[1:]:
        if ts <= t1:
            th_x += [x(max(ts, t0))] * 2
            th_y += [th_y[-1], value]
    th_x.append(x(t1))
    th_y.append(th_y[-1])
    ax.plot(th_x, th_y, color="black", ls="--", lw=1.2, label=f"threshold {run.threshold:.4g}")
    ax.set_ylabel("score" + (" (log)" if log else ""))


def _bars(ax: Any, xs: np.ndarray, heights: np.ndarray, over: np.ndarray, base: float) -> None:
    """Green under, red over; thin lines when there are too many for bars to be visible."""
    colors = np.where(over, OVER_COLOR, OK_COLOR)
    if len(xs) > MAX_BARS or len(xs) < 2:
        ax.vlines(xs, base, heights, colors=colors, lw=0.8)
    else:
        width = float(np.median(np.diff(xs))) * 0.8
        ax.bar(xs, heights - base, bottom=base, width=width, color=colors, lw=0)


def _to_dt(v: np.ndarray | float) -> np.ndarray:
    """Epoch seconds as local naive datetimes (NAB windows are read as local time too)."""
    arr = np.atleast_1d(np.asarray(v, float))
    out = np.array([datetime.fromtimestamp(a) for a in arr])
    return out if np.ndim(v) else out[0]
