"""The default detector adapted to each stream from its first rows: the candidate the agent cannot run yet.

Three adaptations a stream's first rows allow (docs/eval.md, sixth round):

* **The levels' range in time.** The ``levels`` part learns its range on a
  stream's first 256 rows, about 21 hours at NAB's 5-minute interval. An
  hourly stream needs 256 hours for that, and its anomalies come before:
  learning the range over the same 76,800 s of the stream's own time
  (between 48 rows, the novelty's shortest span, and 1,536 rows, its
  longest) gains on every resampled copy and on the real hourly and
  10-minute files. The interval is the median of the first 16 intervals
  between the stream's timestamps.
* **The shape length in time.** The novelty compares stretches of
  span / 8 rows (192 at the top, 16 hours at 5 minutes, but 4 days at
  30 minutes and 8 days hourly, where a few hours' anomaly is diluted).
  A stream coarser than 5 minutes gets the top shape length of 16 hours
  of its own time (the ladder's rule then gives the lower rungs theirs);
  a finer one keeps span / 8. The spans themselves stay in rows, as long
  as the cost allows: spans shortened in time lost on the real 30-minute
  and hourly files (nyc_taxi's week is longer than 5.3 days).
* **Counts.** A stream whose first 48 values are non-negative integers is
  taken for counts and fed to both parts through Anscombe's transform
  ``2 sqrt(x + 3/8)``, which makes Poisson noise about as wide at every
  rate, so a busy hour is not novel for its noise alone.

Why eval-side only: the agent's post-process sees scores, not the
messages' timestamps, so a model file cannot carry the first two yet (the
engine must hand each scored row's time to ``update_many``). All three
are decided from rows before the first output (the novelty speaks from
row 67, the levels from row 48), so every score still depends on its row
and the ones before it only.

Fails when: a stream's first 16 timestamps are not typical (a gap, a
burst of retransmissions), an integer-valued measurement (speeds in
whole mph) is taken for counts (measured: -0.03 to -0.07 on four such
NAB files), or a stream without timestamps is replayed faster than real
time (its arrival times then say nothing; rows are used when no interval
can be told).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgewatch.eval.detectors.novelty_levels import NoveltyLevelsConfig, write_model

REFERENCE_SECONDS = 300.0  # NAB's 5-minute interval, at which the 256 range rows were chosen
INTERVAL_ROWS = 16  # intervals the stream's own interval is the median of
COUNT_ROWS = 48  # values that must all be non-negative integers for a stream to be taken for counts
MIN_RANGE_ROWS = 48  # the novelty's shortest span: no part learns from fewer rows
MAX_RANGE_ROWS = 1536  # the novelty's longest span: no part keeps more


def interval_seconds(times: np.ndarray | None) -> float | None:
    """The median of the first positive intervals between timestamps (seconds), or None if none is known."""
    if times is None or len(times) < 2:
        return None
    d = np.diff(np.asarray(times[:INTERVAL_ROWS + 1], dtype=np.float64))
    d = d[np.isfinite(d) & (d > 0)]
    return float(np.median(d)) if d.size else None


def range_rows(interval: float | None, rows: int = 256) -> int:
    """Rows that cover ``rows`` reference intervals of the stream's time, within the novelty's spans."""
    if interval is None:
        return rows
    want = round(rows * REFERENCE_SECONDS / interval)
    return int(min(max(want, MIN_RANGE_ROWS), MAX_RANGE_ROWS))


def shape_rows(interval: float | None, rows: int) -> int:
    """The top shape length: ``rows`` reference intervals of the stream's time when it is coarser, else ``rows``."""
    if interval is None or interval <= REFERENCE_SECONDS:
        return rows
    return max(1, round(rows * REFERENCE_SECONDS / interval))


def looks_like_counts(values: np.ndarray) -> bool:
    """True when the first ``COUNT_ROWS`` values are all there and all non-negative integers."""
    head = np.asarray(values[:COUNT_ROWS], dtype=np.float64)
    return head.size == COUNT_ROWS and bool(np.all(np.isfinite(head)) and np.all(head >= 0)
                                            and np.all(head == np.floor(head)))


def anscombe(values: np.ndarray) -> np.ndarray:
    """Anscombe's variance-stabilising transform of counts; negative inputs keep their sign."""
    y = np.asarray(values, dtype=np.float64) + 0.375
    return 2.0 * np.sign(y) * np.sqrt(np.abs(y))


class AdaptedDetector:
    """``novelty-levels-adapted``: the default file with the levels' range and the shape length in the
    stream's time, and counts stabilised.

    One model file per (range rows, shape length), written once and run as
    the agent runs it (:class:`~edgewatch.eval.runner.ModelDetector`); only
    the choice of file and the transform of the values are made here, per
    series.
    """

    name = "novelty-levels-adapted"

    def __init__(self, config: NoveltyLevelsConfig | None = None, counts: bool = True, in_time: bool = True,
                 stride: int = 1) -> None:
        self.config = config or NoveltyLevelsConfig()
        self.stride = stride
        self.counts = counts
        self.in_time = in_time
        self._files: dict[tuple[int, int], object] = {}

    def settings(self, times: np.ndarray | None) -> tuple[int, int]:
        """(levels' range rows, the novelty's top shape length) for a stream with these first timestamps."""
        rows, m = int(self.config.levels["range_rows"]), int(self.config.novelty["m"])
        if not self.in_time:
            return rows, m
        interval = interval_seconds(times)
        return range_rows(interval, rows), shape_rows(interval, m)

    def model_for(self, rows: int, m: int):  # noqa: ANN201 - a runner.ModelDetector
        from edgewatch.eval.runner import ModelDetector

        if (rows, m) not in self._files:
            config = replace(self.config, levels={**self.config.levels, "range_rows": rows},
                             novelty={**self.config.novelty, "m": m})
            with tempfile.TemporaryDirectory(prefix="edgewatch-adapted-") as tmp:
                self._files[rows, m] = ModelDetector(write_model(Path(tmp) / "adapted.onnx", config, check=False),
                                                 stride=self.stride)
        return self._files[rows, m]

    def score_series(self, values: np.ndarray, key: str = "", times: np.ndarray | None = None) -> np.ndarray:
        x = anscombe(values) if self.counts and looks_like_counts(values) else values
        return self.model_for(*self.settings(times)).score_series(x, key)
