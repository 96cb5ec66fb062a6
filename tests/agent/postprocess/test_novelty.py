"""The ``novelty`` post-process kind: the graph's statistic, per stream, online, with a strict schema."""

from __future__ import annotations

import numpy as np
import pytest

from edgewatch.agent.postprocess import make_postprocessor
from edgewatch.agent.postprocess.novelty import Novelty
from edgewatch.contract.postprocess import NoveltyParams, spec_problems
from edgewatch.contract import PostProcess
from edgewatch.errors import BadModelFile
from edgewatch.eval.detectors.novelty_levels import NoveltyLevelsConfig, reference_scores


def series(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 5 + np.sin(np.arange(n) * 2 * np.pi / 40) + rng.normal(0, 0.05, n)
    x[500:530] = 5.0  # a flat stretch: a shape never seen
    return x


def novelty(**params: float) -> Novelty:
    p = make_postprocessor(PostProcess("novelty", {"m": 16, "span": 120, "learning": 50, "min_std": 1e-9,
                                                   "short": 1, **params}))
    assert isinstance(p, Novelty)
    return p


def test_equals_the_graph_statistic_then_the_likelihood() -> None:
    x = series(1, 900)
    cfg = NoveltyLevelsConfig()
    cfg.novelty = {**cfg.novelty, "m": 16, "span": 120, "learning": 50}
    cfg.levels = {**cfg.levels, "bins": 1e6, "range_rows": 1e6}  # levels silent: the novelty part alone
    want = reference_scores(x, cfg)  # novelty_scores() on 120-row windows, then Likelihood
    got = make_postprocessor(PostProcess("novelty", cfg.novelty)).update_many(
        np.zeros(len(x), int), x.astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert np.all(got[:119] == 0.0) and got[500:540].max() >= 0.5  # silent until span values, then alerts


def test_online_per_stream_and_reset() -> None:
    a, b = series(2, 700), series(3, 700)[::-1].copy()
    whole = novelty().update_many(np.zeros(700, int), a)
    p = novelty()
    part = p.update_many(np.zeros(400, int), a[:400])
    np.testing.assert_array_equal(part, whole[:400])
    slots = np.tile([4, 9], 700)
    mixed = novelty().update_many(slots, np.column_stack([a, b]).ravel())
    np.testing.assert_array_equal(mixed[slots == 4], whole)
    np.testing.assert_array_equal(mixed[slots == 9], novelty().update_many(np.zeros(700, int), b))
    p.reset(0)
    np.testing.assert_array_equal(p.update_many(np.zeros(700, int), a), whole)


def test_non_finite_values_are_skipped_not_remembered() -> None:
    a = series(4, 600)
    with_nan = np.insert(a, [200, 350], [np.nan, np.inf])
    out = novelty().update_many(np.zeros(len(with_nan), int), with_nan)
    assert out[200] == 0.0 and out[351] == 0.0
    np.testing.assert_array_equal(np.delete(out, [200, 351]), novelty().update_many(np.zeros(600, int), a))


def test_schema_is_strict() -> None:
    assert spec_problems(PostProcess("novelty", {"m": 48, "span": 384})) == []
    for bad in ({"m": 0}, {"m": 200, "span": 384}, {"span": 1e9}, {"spam": 3}, {"hold": -1}):
        assert spec_problems(PostProcess("novelty", bad)), bad
        with pytest.raises(BadModelFile):
            make_postprocessor(PostProcess("novelty", bad))
    assert NoveltyParams.from_dict({"hold": 7}).likelihood().hold == 7
