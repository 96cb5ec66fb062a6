"""A PNG of one stream of a recorded run: signals, score bars, threshold, alerts and the truth.

The picture an operator checks a detector with: did the red bars and the
shaded alert episodes land on the faults (hatched), and what did the
signals do there. matplotlib with the Agg backend, so it runs headless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

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

    fig, (ax_sig, ax_score) = plt.subplots(2, 1, sharex=True, figsize=(opts.width, opts.height), dpi=opts.dpi,
                                           gridspec_kw={"height_ratios": [3, 2], "hspace": 0.08})
    features = run.features or [f"f{i}" for i in range(values.shape[1])]
    for j in range(values.shape[1]):
        ax_sig.plot(x(t), values[:, j], lw=0.9, color=SIGNAL_COLORS[j % len(SIGNAL_COLORS)], label=features[j])

    for ax in (ax_sig, ax_score):
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
    ymax = ax_sig.get_ylim()[1]
    for i in truth_here:
        ax_sig.annotate(i.label, (x(max(i.start, t0)), ymax), xytext=(2, -10), textcoords="offset points",
                        fontsize=8, color="#8a5a00", va="top")

    # score bars: green under, red over; thin lines when there are too many for bars to be visible
    colors = np.where(over, OVER_COLOR, OK_COLOR)
    xs = np.asarray(x(wt), float)
    base = 0.0
    if opts.log_score:
        ax_score.set_yscale("log")
        positive = scores[scores > 0]
        base = float(positive.min()) / 2 if len(positive) else 1e-6
    if len(wt) > MAX_BARS or len(wt) < 2:
        ax_score.vlines(xs, base, scores, colors=colors, lw=0.8)
    else:
        width = float(np.median(np.diff(xs))) * 0.8
        ax_score.bar(xs, scores - base, bottom=base, width=width, color=colors, lw=0)
    th_x = [x(t0)]
    th_y = [run.thresholds[0][1]]
    for ts, value in run.thresholds[1:]:
        if ts <= t1:
            th_x += [x(max(ts, t0))] * 2
            th_y += [th_y[-1], value]
    th_x.append(x(t1))
    th_y.append(th_y[-1])
    ax_score.plot(th_x, th_y, color="black", ls="--", lw=1.2, label=f"threshold {run.threshold:.4g}")
    ax_score.bar([np.nan], [np.nan], color=OK_COLOR, label="score under")
    ax_score.bar([np.nan], [np.nan], color=OVER_COLOR, label="score over")

    ax_sig.set_ylabel("signals")
    ax_score.set_ylabel("score" + (" (log)" if opts.log_score else ""))
    ax_sig.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    ax_score.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    for ax in (ax_sig, ax_score):
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
    ax_sig.set_title(head + "\n" + " · ".join(parts), fontsize=10)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return found


def _to_dt(v: np.ndarray | float) -> np.ndarray:
    """Epoch seconds as local naive datetimes (NAB windows are read as local time too)."""
    arr = np.atleast_1d(np.asarray(v, float))
    out = np.array([datetime.fromtimestamp(a) for a in arr])
    return out if np.ndim(v) else out[0]
