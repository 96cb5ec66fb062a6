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
    cfg.novelty = {**cfg.novelty, "m": 16, "span": 120, "learning": 50, "hold": 200, "refractory": 30,
                   "min_span": 0}  # one span
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
    for bad in ({"m": 0}, {"m": 200, "span": 384}, {"span": 1e9}, {"spam": 3}, {"hold": -1}, {"min_span": 2},
                {"min_span": 500, "span": 384}, {"ratio": 1}):
        assert spec_problems(PostProcess("novelty", bad)), bad
        with pytest.raises(BadModelFile):
            make_postprocessor(PostProcess("novelty", bad))
    assert NoveltyParams.from_dict({"hold": 7}).likelihood().hold == 7


def test_the_ladder_steps_the_span_and_scales_the_likelihood_rows() -> None:
    p = NoveltyParams.from_dict({"m": 192, "span": 1536, "min_span": 48, "ratio": 2, "learning": 400, "hold": 800,
                                 "refractory": 120})
    assert p.ladder() == [(6, 48), (12, 96), (24, 192), (48, 384), (96, 768), (192, 1536)]
    assert NoveltyParams.from_dict({"m": 192, "span": 1536, "min_span": 96, "ratio": 4}).ladder() == [
        (12, 96), (48, 384), (192, 1536)]
    assert NoveltyParams().ladder() == [(48, 384)]  # min_span 0: the span alone, as older files had it
    quarter = p.likelihood(384 / 1536)
    assert (quarter.learning, quarter.hold, quarter.refractory) == (100, 200, 30)
    small = p.likelihood(48 / 1536)
    assert (small.learning, small.hold, small.refractory) == (20, 25, 4)  # at least 20 learning rows


def test_stepped_span_equals_the_rung_by_rung_reference_and_speaks_early() -> None:
    """Every rung from whole windows (the graph's statistic) vs the row-by-row updated distances."""
    rng = np.random.default_rng(5)
    n = 1500
    x = 50 + 5 * np.sin(np.arange(n) * 2 * np.pi / 60) + rng.normal(0, 0.3, n)
    x[150:170] = 50.0  # flat: new to the short spans, inside NAB's probation of a short file
    x[1300:1330] += 8
    cfg = NoveltyLevelsConfig()
    cfg.novelty = {**cfg.novelty, "m": 64, "span": 512, "min_span": 32, "ratio": 2, "learning": 130, "hold": 260,
                   "refractory": 40}
    cfg.levels = {**cfg.levels, "bins": 1e6, "range_rows": 1e6}  # levels silent: the novelty part alone
    want = reference_scores(x, cfg)
    got = make_postprocessor(PostProcess("novelty", cfg.novelty)).update_many(np.zeros(n, int),
                                                                                x.astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)
    first = 32 - 1 + 20  # the 32-row rung with its 20 learning rows
    assert not got[:first].any() and got[first:200].max() >= 0.5  # the flat stretch, long before row 511
    assert got[1300:1340].max() >= 0.5


def test_row_by_row_distances_do_not_drift_at_large_levels() -> None:
    """Updated sums of squares at a level of 1e6: rounding is reset every m rows, so they stay exact enough."""
    rng = np.random.default_rng(6)
    n = 3000
    x = 1e6 + np.sin(np.arange(n) * 2 * np.pi / 40) + rng.normal(0, 0.01, n)
    nov = novelty(m=16, span=120)
    st = nov._new_state()
    step, rung = nov.steps[0], st.rungs[0]
    for i, v in enumerate(x):
        nov._one(st, float(v))
        if i >= 400 and i % 37 == 0:
            exact = nov._from_scratch(st.buf[st.n - step.span:st.n], step.m)
            np.testing.assert_allclose(rung.d2, exact, rtol=1e-6, atol=1e-6)


def test_handover_is_checked_and_an_older_reader_refuses_it() -> None:
    import dataclasses

    from edgewatch.contract.postprocess import KindParams

    with pytest.raises(BadModelFile, match="handover must be one of 0 \\(fresh\\), 1 \\(hold\\)"):
        make_postprocessor(PostProcess("novelty", {"m": 4, "span": 32, "handover": 2}))
    older = dataclasses.make_dataclass("NoveltyParams", [(f.name, float, f.default)
                                                         for f in dataclasses.fields(NoveltyParams)
                                                         if f.name != "handover"], bases=(KindParams,))
    with pytest.raises(BadModelFile, match="unknown parameters \\['handover'\\]"):
        older.from_dict({"m": 4, "span": 32, "handover": 1}, "novelty")
    assert make_postprocessor(PostProcess("novelty", {"m": 4, "span": 32})).carry_hold is False  # absent: fresh
    assert make_postprocessor(PostProcess("novelty", {"m": 4, "span": 32, "handover": 1})).carry_hold is True


def test_overlap_is_checked_passes_each_rung_its_m_and_an_older_reader_refuses_it() -> None:
    import dataclasses

    from edgewatch.contract.postprocess import KindParams

    with pytest.raises(BadModelFile, match="overlap must be one of 0 \\(independent\\), 1 \\(corrected\\)"):
        make_postprocessor(PostProcess("novelty", {"m": 4, "span": 32, "overlap": 2}))
    older = dataclasses.make_dataclass("NoveltyParams", [(f.name, float, f.default)
                                                         for f in dataclasses.fields(NoveltyParams)
                                                         if f.name != "overlap"], bases=(KindParams,))
    with pytest.raises(BadModelFile, match="unknown parameters \\['overlap'\\]"):
        older.from_dict({"m": 4, "span": 32, "overlap": 1}, "novelty")
    plain = make_postprocessor(PostProcess("novelty", {"m": 8, "span": 64, "min_span": 16}))
    assert [s.lik.overlap for s in plain.steps] == [1, 1, 1]  # absent: read as independent
    wide = make_postprocessor(PostProcess("novelty", {"m": 8, "span": 64, "min_span": 16, "overlap": 1}))
    assert [s.lik.overlap for s in wide.steps] == [s.m for s in wide.steps] == [2, 4, 8]
