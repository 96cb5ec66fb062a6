"""``edgewatch eval csv``: a model file against the user's own labels, through the agent's runtime.

The file is read as ``edgewatch fit`` reads one (:mod:`edgewatch.wire.csv_table`),
the model's features are taken by name, and the rows run through a fresh
:class:`~edgewatch.agent.runtime.ModelRuntime` exactly as ``edgewatch agent
run`` would score them (``agent/offline.py``). A row with a blank feature
is skipped and counted, as the agent skips a message it cannot read; a row
whose label is blank is scored but not counted in the figures.

Reported: point-wise F1, FAR and MAR (SKAB's definitions), and per
labelled segment whether an episode caught it and with what delay, the
false episodes per day of normal operation and the episodes per fault
(:mod:`edgewatch.eval.episode_score`). ``skip`` rows at the start (those
the model was fitted on) are run but not scored.

A model fitted on a text state column (``Pump State`` = ``Run``/``Stop``,
the card's ``states``) reads that column's words by its codes through the
agent's own reader (:class:`~edgewatch.agent.sources.parsing.StateCells`,
as the replay source reads them): a word the normal data never held is
``unknown_state``, its row skipped and counted by feature and word, never
given a guessed code; a column of numbers is read as the codes themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgewatch.agent.sources.parsing import BadReason, StateCells
from edgewatch.errors import BadInput
from edgewatch.eval.episode_score import EpisodeCounts, row_seconds, score_episodes, segments
from edgewatch.eval.skab_score import Binary
from edgewatch.wire.csv_cells import DISTINCT_TEXTS
from edgewatch.wire.csv_states import describe
from edgewatch.wire.csv_table import CsvTable, read_csv_table, sniff_layout


@dataclass
class SegmentResult:
    start: int  # rows of the scored series
    end: int
    start_ts: float | None
    caught: bool
    delay_s: float | None  # to the first overlapping episode's start (negative: it was already open)
    episodes: int


@dataclass
class CsvEval:
    model: str
    data: str
    rows: int
    skipped_rows: int  # a feature was blank
    unlabelled_rows: int
    scored_from: int
    binary: Binary
    episodes: EpisodeCounts
    segments: list[SegmentResult]
    threshold: float
    has_times: bool
    # feature -> {word: rows}: a state word the model's normal data never held (the agent's unknown_state)
    unknown_states: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def unknown_state_rows(self) -> int:
        return sum(n for words in self.unknown_states.values() for n in words.values())

    def lines(self) -> list[str]:
        b, e = self.binary, self.episodes
        unit = "s" if self.has_times else "rows"
        out = [f"{self.data} through {self.model} (the agent's runtime; threshold {self.threshold:.4g})",
               f"rows      {self.rows:,} scored from row {self.scored_from:,}"
               + (f"; {self.skipped_rows:,} skipped (a feature was blank)" if self.skipped_rows else "")
               + (f"; {self.unknown_state_rows:,} skipped unknown_state (a state the model's normal data never "
                  f"held: {_words(self.unknown_states)})" if self.unknown_states else "")
               + (f"; {self.unlabelled_rows:,} without a label, not counted" if self.unlabelled_rows else ""),
               f"point-wise  F1 {b.f1:.3f}   FAR {b.far:.2f} %   MAR {b.mar:.2f} %   (TP {b.tp:,} FP {b.fp:,} "
               f"FN {b.fn:,} TN {b.tn:,})",
               f"episodes    {e.caught} of {e.faults} labelled segments caught ({e.opened_inside} opened inside); "
               f"{e.episodes_per_fault:.2f} episodes per caught segment",
               f"false       {e.false_episodes} episode(s) overlapping no label in {_span(e.normal_seconds, unit)} of "
               f"normal rows" + (f": {e.false_per_day:.3g} a day" if self.has_times and e.normal_seconds else ""),
               f"segment   {'start row':>10s} {'rows':>7s} {'caught':>7s} {'delay ' + unit:>9s} {'episodes':>8s}"
               + ("  start (UTC)" if self.has_times else "")]
        for s in self.segments:
            delay = "" if s.delay_s is None else f"{s.delay_s:.0f}"
            when = f"  {_iso(s.start_ts)}" if s.start_ts is not None else ""
            out.append(f"          {s.start:>10,} {s.end - s.start:>7,} {'yes' if s.caught else 'MISSED':>7s} "
                       f"{delay:>9s} {s.episodes:>8d}{when}")
        return out


def _words(unknown: dict[str, dict[str, int]]) -> str:
    return "; ".join(f"{name} " + ", ".join(f"{word!r} {n:,}" for word, n in words.items())
                     for name, words in unknown.items())


def _iso(ts: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _span(amount: float, unit: str) -> str:
    if unit == "rows":
        return f"{amount:,.0f} rows"
    return f"{amount / 3600:.2f} h" if amount >= 3600 else f"{amount / 60:.1f} min"


def evaluate_csv(model: str | os.PathLike[str], data: str | os.PathLike[str], label_column: str = "anomaly",
                 time_column: str | None = None, skip: int = 0) -> CsvEval:
    """Run ``model`` over ``data`` and compare its episodes with ``label_column`` (1 = anomalous)."""
    from edgewatch.agent.offline import run_series
    from edgewatch.agent.runtime import DriftSettings, Overrides, load_runtime

    runtime = load_runtime(model, Overrides(), drift_settings=DriftSettings(every=0))
    layout = sniff_layout(data, time_column)
    if label_column not in layout.header:
        raise BadInput(f"{data} has no label column '{label_column}' (--label-column); its columns: {layout.header}")
    table = read_csv_table(data, layout)
    features = runtime.features
    columns, unknown = _feature_columns(table, features, runtime.card.states, str(data))
    missing = [f for f, c in zip(features, columns) if c is None]
    if missing:
        states = runtime.card.states or {}
        raise BadInput(f"{model} reads {missing}, which {data} does not have as numeric columns (it has "
                       f"{list(table.numeric)}; text: {sorted(table.text_columns) or 'none'})"
                       + "".join(f"; {f} is a state feature read from text ({describe(states[f])}), but the file's "
                                 f"column holds more than {DISTINCT_TEXTS} distinct texts"
                                 for f in missing if f in states and f in table.text_columns))
    if label_column in table.labels:
        labels = table.labels[label_column]
    elif label_column in table.numeric:
        labels = table.numeric[label_column]
    else:
        raise BadInput(f"label column '{label_column}' of {data} is not 0/1 numbers")
    x = np.stack(columns, axis=1)
    known = ~np.logical_or.reduce([u for u, _ in unknown.values()]) if unknown else np.ones(len(x), dtype=bool)
    readable = known & np.isfinite(x).all(axis=1)
    x, labels = x[readable], labels[readable]
    times = table.times[readable] if table.times is not None else None
    if times is not None and not np.isfinite(times).all():
        times = None  # an unreadable time: the episodes are placed by row
    if skip >= len(x):
        raise BadInput(f"--skip {skip}: the file has only {len(x)} readable rows")
    run = run_series(runtime, x, times)
    labelled = np.isfinite(labels)
    y = np.where(labelled, labels > 0.5, False).astype(np.int8)
    keep = labelled.copy()
    keep[:skip] = False
    pred = run.flags(len(x))
    binary = Binary.of(pred[keep], y[keep])
    spans = [(e.start_seq, e.last_over_seq) for e in run.episodes]
    counts = score_episodes(spans, y, times, skip)
    step = row_seconds(times, len(x))
    t = times if times is not None else np.arange(len(x)) * step
    results = []
    for s, e in segments(y):
        if e <= skip:
            continue
        s = max(s, skip)
        hits = [(a, b) for a, b in spans if a < e and b >= s]
        delay = float(t[min(a for a, _ in hits)] - t[s]) if hits else None
        results.append(SegmentResult(s, e, float(t[s]) if times is not None else None, bool(hits), delay, len(hits)))
    return CsvEval(str(Path(model).name), str(data), len(x), int((known & ~readable).sum()),
                   int((~labelled).sum()), skip, binary, counts, results, run.threshold, times is not None,
                   {f: words for f, (_, words) in unknown.items()})


def _feature_columns(table: CsvTable, features: list[str], states: dict[str, dict[str, float]] | None, source: str
                     ) -> tuple[list[np.ndarray | None], dict[str, tuple[np.ndarray, dict[str, int]]]]:
    """Each feature's values (None: the file has no such column) and, per state feature with words the model's
    normal data never held, the rows holding them and how many of each word.

    A state feature's words are read by the agent's reader of the model's
    codes (:class:`StateCells`, the replay source's), not by a rule of eval's
    own, so a file scores here as the agent would score it replayed.
    """
    cells = StateCells.of(features, states, source)
    out: list[np.ndarray | None] = []
    unknown: dict[str, tuple[np.ndarray, dict[str, int]]] = {}
    for j, name in enumerate(features):
        found = table.state_cells.get(name) if cells is not None and cells[j] is not None else None
        if found is None:
            out.append(table.numeric.get(name))
            continue
        texts, ids = found
        read = [cells.value(j, t) for t in texts]  # type: ignore[union-attr]
        by_id = np.array([v if type(v) is float else np.nan for v in read] + [np.nan])
        out.append(by_id[ids])  # -1 (a blank): the last entry, NaN
        bad = [k for k, v in enumerate(read) if v is BadReason.UNKNOWN_STATE]
        if bad:
            rows = np.isin(ids, bad)
            unknown[name] = (rows, {texts[k]: int((ids == k).sum()) for k in bad})
    return out, unknown
