"""Reading what ``--record-run`` wrote, and the ground truth to lay beside it.

The run file is the format documented in :mod:`edgewatch.agent.ops.recorder`:
one run per start of the agent, appended, each from its header line. A run
cut short (agent killed mid-line) still reads: a broken line is counted and
skipped. Truth comes from the simulator's fault JSONL or from
NAB's label windows; both become :class:`Interval` lists in epoch seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgewatch.agent.sources.parsing import iso_to_epoch
from edgewatch.errors import BadInput


@dataclass
class Interval:
    """A span of time ``[start, end)`` in epoch seconds with what it is (fault type, "anomaly window").

    ``features``: for an alert episode, the features that contributed most
    at its start, with their share of the error (from the ``start`` event).
    """

    start: float
    end: float
    label: str
    stream: str | None = None
    features: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class StreamRun:
    """One stream of a run as arrays: messages, scored windows, alert episodes."""

    name: str
    t: np.ndarray
    seq: np.ndarray
    values: np.ndarray  # [messages, features]
    wt: np.ndarray
    wseq: np.ndarray
    scores: np.ndarray
    over: np.ndarray  # bool
    episodes: list[Interval]
    anomaly: np.ndarray | None = None  # anomaly_score per window (None: a run file written before it existed)

    @property
    def start(self) -> float:
        return float(min(self.t[0] if len(self.t) else np.inf, self.wt[0] if len(self.wt) else np.inf))

    @property
    def end(self) -> float:
        return float(max(self.t[-1] if len(self.t) else -np.inf, self.wt[-1] if len(self.wt) else -np.inf))


@dataclass
class Run:
    """A recorded run (or several runs of one file read as one timeline): header, streams, thresholds."""

    header: dict[str, Any]
    features: list[str]
    streams: dict[str, StreamRun]
    thresholds: list[tuple[float, float]]  # (from ts, threshold), first from -inf
    events: list[dict[str, Any]] = field(default_factory=list)
    skipped_lines: int = 0
    runs: int = 1  # how many runs (header lines) were read
    restarts: list[float] = field(default_factory=list)  # the time of the first record of each later run

    @property
    def threshold(self) -> float:
        return self.thresholds[-1][1]

    @property
    def ranges(self) -> list[tuple[float, float] | None]:
        """Each feature's training range from the header (None where the card had none, or an older file)."""
        given = self.header.get("ranges") or []
        out: list[tuple[float, float] | None] = []
        for j in range(len(self.features)):
            r = given[j] if j < len(given) else None
            out.append((float(r[0]), float(r[1])) if isinstance(r, list) and len(r) == 2 else None)
        return out


class _Acc:
    def __init__(self) -> None:
        self.t: list[float] = []
        self.q: list[int] = []
        self.v: list[list[float]] = []
        self.wt: list[float] = []
        self.wq: list[int] = []
        self.ws: list[float] = []
        self.wa: list[float] = []
        self.wo: list[int] = []
        self.open: dict[Any, tuple[float, list[tuple[str, float]]]] = {}
        self.episodes: list[Interval] = []


def _header(line: str, first: bool = False) -> dict[str, Any] | None:
    """The header a line holds, if any. After the first line only the recorder's own form counts (it starts
    with ``{"run":``), so the other lines are not parsed twice."""
    if not first and not line.startswith('{"run":'):
        return None
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return None
    return rec if isinstance(rec, dict) and "run" in rec else None


def count_runs(path: str | Path) -> int:
    """How many runs a run file holds (the agent appends one at every start)."""
    with open(path) as fh:
        return sum(1 for n, line in enumerate(fh) if _header(line, first=n == 0) is not None)


def read_run(path: str | Path, run: int | None = None) -> Run:
    """Parse a run file; BadInput when it is not one (with what it looks like instead).

    ``--record-run`` appends a run at every start of the agent. ``run``
    picks one (1 the first, -1 the last); None reads them all as one
    timeline (a restart is a gap), which needs the same features in each:
    otherwise BadInput says to pick one.
    """
    path = Path(path)
    try:
        fh = open(path)
    except OSError as exc:
        raise BadInput(f"cannot read the run file {path} ({exc.strerror})") from exc
    with fh:
        header = _header(fh.readline(), first=True)
        if header is None:
            raise BadInput(f"{path} is not an edgewatch run record (its first line has no \"run\" header); "
                           "make one with: edgewatch agent run ... --record-run FILE.jsonl")
        want = None
        if run is not None:
            total = count_runs(path)
            want = run if run > 0 else total + 1 + run
            if not 1 <= want <= total:
                raise BadInput(f"{path} holds {total} run(s): --run takes 1 to {total} (or -1 for the last), "
                               f"not {run}")
        return _parse(path, fh, header, want)


def _parse(path: Path, fh: Any, header: dict[str, Any], want: int | None) -> Run:
    features = list(header.get("features") or [])
    thresholds: list[tuple[float, float]] = [(-np.inf, float(header.get("threshold", np.nan)))]
    pending_threshold: float | None = None
    acc: dict[str, _Acc] = {}
    events: list[dict[str, Any]] = []
    skipped = 0
    number = 1  # the run the lines belong to
    restarts: list[float] = []
    restarted = False  # a new run began and its first record's time is not known yet
    picked: dict[str, Any] | None = header if want in (None, 1) else None
    for line in fh:
        later = _header(line)
        if later is not None:
            number += 1
            if want is not None:
                if number == want:
                    picked, features = later, list(later.get("features") or [])
                    thresholds = [(-np.inf, float(later.get("threshold", np.nan)))]
                elif number > want:
                    break
                continue
            if list(later.get("features") or []) != features:
                raise BadInput(f"{path}: run {number} reads features {later.get('features')}, run 1 reads "
                               f"{features}; plot one run at a time with --run N")
            _close_open(acc, "alert (open when the agent stopped)")
            pending_threshold = float(later.get("threshold", np.nan))
            restarted = True
            continue
        if want is not None and number != want:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1
            continue
        if not isinstance(rec, dict):
            skipped += 1
            continue
        if restarted and ("m" in rec or "w" in rec):
            restarts.append(float(rec["t"]))
            restarted = False
        if "m" in rec:
            a = acc.get(rec["m"]) or acc.setdefault(rec["m"], _Acc())
            a.t.append(rec["t"])
            a.q.append(rec["q"])
            a.v.append([np.nan if x is None else x for x in rec["v"]])
        elif "w" in rec:
            a = acc.get(rec["w"]) or acc.setdefault(rec["w"], _Acc())
            if pending_threshold is not None:
                thresholds.append((rec["t"], pending_threshold))
                pending_threshold = None
            a.wt.append(rec["t"])
            a.wq.append(rec["q"])
            a.ws.append(np.nan if rec["s"] is None else rec["s"])
            anomaly = rec.get("a")
            a.wa.append(np.nan if anomaly is None else anomaly)
            a.wo.append(rec["o"])
        elif "th" in rec:
            pending_threshold = float(rec["th"])
        elif "e" in rec:
            ev = rec["e"]
            events.append(ev)
            _episode(acc, ev)
        else:
            skipped += 1
    _close_open(acc, "alert (open at end of run)")
    streams = {}
    for name, a in acc.items():
        f = len(features) or (len(a.v[0]) if a.v else 0)
        streams[name] = StreamRun(
            name, np.asarray(a.t, float), np.asarray(a.q, np.int64), np.asarray(a.v, float).reshape(-1, f),
            np.asarray(a.wt, float), np.asarray(a.wq, np.int64), np.asarray(a.ws, float),
            np.asarray(a.wo, bool), sorted(a.episodes, key=lambda e: e.start),
            np.asarray(a.wa, float) if a.wa and not np.isnan(a.wa).all() else None)
    return Run(picked or header, features, streams, thresholds, events, skipped,
               runs=number if want is None else 1, restarts=restarts)


def _close_open(acc: dict[str, _Acc], label: str) -> None:
    """Episodes whose end was never recorded (an agent killed hard) end where their run did: unknown, NaN."""
    for name, a in acc.items():
        for start, features in a.open.values():
            a.episodes.append(Interval(start, np.nan, label, name, features))
        a.open.clear()


def _episode(acc: dict[str, _Acc], ev: dict[str, Any]) -> None:
    kind, stream = ev.get("event"), ev.get("stream")
    if kind not in ("start", "end") or not isinstance(stream, str):
        return
    a = acc.get(stream) or acc.setdefault(stream, _Acc())
    ep = ev.get("episode") or {}
    key = (ep.get("start_ts"), ep.get("start_seq"))
    if kind == "start":
        features = [(str(f.get("feature")), float(f.get("share") or 0.0)) for f in ev.get("top_features") or []
                    if isinstance(f, dict)]
        a.open[key] = (float(ep.get("start_ts", ev.get("ts"))), features)
    else:
        start, features = a.open.pop(key, (ep.get("start_ts"), []))
        end = ep.get("end_ts", ev.get("ts"))
        if start is not None and end is not None:
            a.episodes.append(Interval(float(start), float(end), "alert", stream, features))


def read_fault_truth(path: str | Path) -> list[Interval]:
    """The simulator's ``--truth`` JSONL (one fault per line) as intervals."""
    out = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise BadInput(f"cannot read the truth file {path} ({exc.strerror})") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            named = ", ".join(rec.get("features") or [])
            out.append(Interval(float(rec["start_ts"]), float(rec["end_ts"]),
                                f"{rec['fault']} ({named})" if named else str(rec["fault"]), rec.get("stream")))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise BadInput(f"{path}:{n} is not a simulator fault record ({exc}); expected the JSONL "
                           "written by: edgewatch simulate --truth FILE") from exc
    return out


def read_nab_windows(path: str | Path, key: str) -> list[Interval]:
    """NAB's ``combined_windows.json`` entry ``key`` (e.g. ``realTraffic/TravelTime_451.csv``) as intervals.

    NAB times have no zone; they are read as UTC, as the agent's CSV replay
    reads the same timestamps, so both line up on the plot.
    """
    try:
        windows = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"cannot read NAB windows from {path} ({exc})") from exc
    if key not in windows:
        near = [k for k in windows if Path(k).name == Path(key).name]
        hint = f"; did you mean {near[0]!r}?" if near else "; keys look like 'realTraffic/TravelTime_451.csv'"
        raise BadInput(f"{path} has no windows for {key!r}{hint}")
    return [Interval(iso_to_epoch(a), iso_to_epoch(b), "NAB anomaly window") for a, b in windows[key]]


def truth_for(stream: str, truth: list[Interval]) -> list[Interval]:
    """The truth records of ``stream``; all of them when they name one equipment the run named otherwise.

    The agent names a stream after its source URL when messages carry no
    stream id, while the simulator calls that equipment ``eq-0``.
    """
    mine = [t for t in truth if t.stream is None or t.stream == stream]
    if mine:
        return mine
    names = {t.stream for t in truth}
    return list(truth) if len(names) == 1 else []
