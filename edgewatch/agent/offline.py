"""A recorded series through a model runtime, as the agent would score it live, in one call.

``edgewatch fit`` (its held-out part), ``eval skab`` and ``eval csv`` all
need what the agent *would have sent* for a series they already hold in
memory: the same strided windows through the ONNX graph, the card's
post-process, the threshold and the episode tracker, without sources,
sinks or threads. Keeping it beside the runtime means they cannot drift
apart from ``edgewatch agent run``; ``tests/eval/test_skab.py`` replays a file
through the real agent and compares.

NumPy and ONNX Runtime only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgewatch.agent.episodes import Episode
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.runtime import ModelRuntime

SCORE_BATCH = 512


@dataclass
class SeriesRun:
    """What the agent would have made of one stream."""

    episodes: list[Episode]  # start_seq .. last_over_seq are rows; end_seq is where the agent closed it
    scores: np.ndarray  # [rows] float64, NaN where no window was scored
    threshold: float

    def flags(self, rows: int) -> np.ndarray:
        """0/1 per row: inside an episode, from its first window over the threshold to its last one (the
        ``last_over_seq`` of the agent's ``end`` event), not to the quiet windows that closed it."""
        out = np.zeros(rows, dtype=np.int8)
        for ep in self.episodes:
            out[ep.start_seq:ep.last_over_seq + 1] = 1
        return out


def graph_outputs(model: ScoringModel, values: np.ndarray, window: int, stride: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The rows the agent scores (every ``stride``-th from the first full window) and the graph's ``score`` and
    ``aux`` there, for ``values [rows, F]``; apart from the post-process so that ``eval``'s settings grid can run
    several post-processes on one graph pass. Scored in calls of ``SCORE_BATCH`` windows: a graph may expand each
    window (the novelty graph by about 30x), so memory stays bounded."""
    x = np.ascontiguousarray(values, dtype=np.float32)
    n = len(x)
    if n < window:
        return np.zeros(0, dtype=np.int64), np.zeros(0), None
    ends = np.arange(window - 1, n, stride)
    windows = sliding_window_view(x, window, axis=0).transpose(0, 2, 1)[ends - (window - 1)]
    batches = [model.score_many(windows[a:a + SCORE_BATCH]) for a in range(0, len(windows), SCORE_BATCH)]
    raw = np.concatenate([b.scores for b in batches])
    aux = None if batches[0].aux is None else np.concatenate([b.aux for b in batches])
    return ends, raw, aux


def run_series(runtime: ModelRuntime, values: np.ndarray, times: np.ndarray | None = None) -> SeriesRun:
    """Score ``values [rows, F]`` (raw units, the card's feature order) with a fresh copy of ``runtime``.

    ``times`` (epoch seconds per row) become the episodes' times; without
    them the row numbers do. An episode still open at the last row is
    closed there, as the agent closes open episodes when a stream ends.
    """
    rt = runtime.fresh()
    n = len(values)
    scores = np.full(n, np.nan)
    if n < rt.window:
        return SeriesRun([], scores, float(rt.threshold))
    ts = np.arange(n, dtype=np.float64) if times is None else np.asarray(times, dtype=np.float64)
    ends, raw, aux = graph_outputs(rt.model, values, rt.window, rt.stride)
    s = np.asarray(rt.post.update_many(np.zeros(len(raw), dtype=np.int64), raw, aux,
                                       None if times is None else ts[ends]), dtype=np.float64)
    s = np.where(np.isnan(s), np.inf, s)  # as the agent: a score it cannot read is over any threshold
    scores[ends] = s
    episodes: list[Episode] = []
    tracker, threshold = rt.tracker, float(rt.threshold)
    for seq, score in zip(ends.tolist(), s.tolist()):
        tr = tracker.update(0, score > threshold, score, float(ts[seq]), seq)
        if tr is not None and tr.kind == "end":
            episodes.append(tr.episode)
    last = tracker.close(0, float(ts[n - 1]), n - 1)
    if last is not None:
        last.episode.end_seq = n  # closed after the last row
        episodes.append(last.episode)
    return SeriesRun(episodes, scores, threshold)
