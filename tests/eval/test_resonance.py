"""The ``resonance`` post-process (ARTime-like, causal): its parts, online per stream, schema, model file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edgewatch.agent.postprocess import make_postprocessor
from edgewatch.contract.postprocess import ResonanceParams, spec_problems
from edgewatch.agent.postprocess.resonance import Resonance, haar
from edgewatch.contract import PostProcess
from edgewatch.errors import BadModelFile


def series(seed: int, n: int = 2400) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 20 + 5 * np.sin(np.arange(n) * 2 * np.pi / 100) + rng.normal(0, 0.2, n)
    x[1800:1840] = 20 + 14 * np.sign(np.sin(np.arange(40)))  # a square burst beyond the learnt range
    return x


def art(**params: float) -> Resonance:
    p = make_postprocessor(PostProcess("resonance", {"learning": 400, **params}))
    assert isinstance(p, Resonance)
    return p


def test_haar_is_the_orthonormal_transform() -> None:
    x = np.array([4.0, 2.0, 5.0, 5.0, 1.0, 3.0, 0.0, 2.0])
    h = haar(x)
    assert h[0] == pytest.approx(x.sum() / math.sqrt(8))  # the approximation
    assert np.dot(h, h) == pytest.approx(np.dot(x, x))  # energy kept
    assert h[-4:] == pytest.approx([(4 - 2) / math.sqrt(2), 0.0, (1 - 3) / math.sqrt(2), (0 - 2) / math.sqrt(2)])
    assert np.all(haar(np.full(8, 3.0))[1:] == 0)


def test_silent_while_learning_then_reports_the_burst_once() -> None:
    x = series(1)
    out = art().update_many(np.zeros(len(x), int), x)
    p = ResonanceParams(learning=400)
    assert p.step == 3 and not out[:400].any()
    hits = np.flatnonzero(out > 0)
    assert np.all((out[hits] > 0) & (out[hits] <= 1))
    assert any(1800 <= i < 1860 for i in hits)  # the burst
    assert len(hits) < 25  # a few reports in 2,000 scored rows, not a stream of them


def test_online_per_stream_reset_and_non_finite() -> None:
    a, b = series(2), series(3)[::-1].copy()
    whole = art().update_many(np.zeros(len(a), int), a)
    p = art()
    np.testing.assert_array_equal(p.update_many(np.zeros(1000, int), a[:1000]), whole[:1000])
    slots = np.tile([7, 3], len(a))
    mixed = art().update_many(slots, np.column_stack([a, b]).ravel())
    np.testing.assert_array_equal(mixed[slots == 7], whole)
    np.testing.assert_array_equal(mixed[slots == 3], art().update_many(np.zeros(len(b), int), b))
    p.reset(0)
    np.testing.assert_array_equal(p.update_many(np.zeros(len(a), int), a), whole)
    with_nan = np.insert(a, [500, 1500], [np.nan, -np.inf])
    out = art().update_many(np.zeros(len(with_nan), int), with_nan)
    assert out[500] == 0.0 and out[1501] == 0.0
    np.testing.assert_array_equal(np.delete(out, [500, 1501]), whole)


def test_a_constant_stream_and_the_category_cap() -> None:
    flat = art().update_many(np.zeros(1500, int), np.full(1500, 3.0))
    assert not flat.any()
    rng = np.random.default_rng(4)
    p = art(cap=16)
    p.update_many(np.zeros(3000, int), rng.normal(0, 1, 3000))
    assert p._streams[0].art.k <= 16


def test_schema_is_strict() -> None:
    assert spec_problems(PostProcess("resonance", {})) == []
    for bad in ({"window": 6}, {"learning": 4}, {"levels": 1}, {"chomp": 1.5}, {"cap": 3}, {"vigilance": 0.9}):
        assert spec_problems(PostProcess("resonance", bad)), bad
        with pytest.raises(BadModelFile):
            make_postprocessor(PostProcess("resonance", bad))


def test_model_file_runs_like_the_post_process(tmp_path: Path) -> None:
    from edgewatch.eval.detectors import resonance
    from edgewatch.eval.runner import ModelDetector, check_online

    det = ModelDetector(resonance.write_model(tmp_path / "r.onnx", resonance.ResonanceConfig({"learning": 400})))
    x = series(5)
    want = art().update_many(np.zeros(len(x), int), x.astype(np.float32))
    np.testing.assert_array_equal(det.score_series(x), want)
    assert check_online(det, x, cut=1900)
