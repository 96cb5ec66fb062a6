"""Stream isolation: one stream's data never changes another stream's scores or alerts.

Runs the shipped S0 model (models/equipment-lstm-ae.onnx): the agent end to
end on stdin with 20 streams, and a property test of batch invariance on
the model itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgewatch.agent.engine import SCORE_BATCH
from edgewatch.agent.model import ScoringModel
from edgewatch.data.simulator import Simulator
from edgewatch.export.invariance import CHECK_BATCH, MAX_REL_DIFF, BatchDependentScores, check_batch_invariance

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "equipment-lstm-ae.onnx"
STREAMS = 20
ROWS = 90


def _lines(absurd: bool) -> str:
    """20 streams of nominal rows, interleaved so that their due windows share ONNX Runtime calls."""
    data = [np.round(Simulator.nominal(ROWS, seed=100 + s), 5) for s in range(STREAMS)]
    lines = []
    for k in range(ROWS):
        for s in range(STREAMS):
            values = data[s][k].tolist()
            if absurd and s == 0 and k == 45:
                values[0] = 100.0  # cpu = 100 on a [0, 1] signal
            lines.append(json.dumps({"stream": f"s{s}", "values": values}))
    return "\n".join(lines) + "\n"


def _starts(tmp_path: Path, absurd: bool) -> tuple[list[str], dict]:
    out = tmp_path / ("absurd" if absurd else "clean")
    out.mkdir()
    proc = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(SHIPPED),
                           "--source", "stdin", "--sink", "jsonl:alerts.jsonl", "--summary-json", "s.json"],
                          input=_lines(absurd), capture_output=True, text=True, timeout=120, cwd=out)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines() if line.strip()]
    return [e["stream"] for e in events if e["event"] == "start"], json.loads((out / "s.json").read_text())


def test_one_absurd_row_alerts_on_its_own_stream_only(tmp_path: Path) -> None:
    clean, summary = _starts(tmp_path, absurd=False)
    assert clean == []
    assert summary["messages"] == STREAMS * ROWS and summary["streams"] == STREAMS
    assert summary["windows"] > 4 * SCORE_BATCH  # several full cross-stream calls
    absurd, _ = _starts(tmp_path, absurd=True)
    assert absurd == ["s0"]


@pytest.fixture(scope="module")
def shipped() -> ScoringModel:
    return ScoringModel(SHIPPED)


@pytest.fixture(scope="module")
def normal_windows(shipped: ScoringModel) -> np.ndarray:
    rows = Simulator.nominal(400, seed=11).astype(np.float32)
    w = shipped.card.window
    return np.stack([rows[i:i + w] for i in range(0, len(rows) - w, 3)])


finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)  # every finite float32


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_windows_score_does_not_depend_on_its_batch(shipped: ScoringModel, normal_windows: np.ndarray,
                                                      data: st.DataObject) -> None:
    size = data.draw(st.integers(1, max(SCORE_BATCH, CHECK_BATCH)), label="batch size")
    idx = np.array(data.draw(st.lists(st.integers(0, len(normal_windows) - 1), min_size=size, max_size=size)))
    batch = normal_windows[idx].copy()
    n_bad = data.draw(st.integers(0, min(4, size - 1)), label="absurd windows")
    bad_rows = data.draw(st.lists(st.integers(0, size - 1), min_size=n_bad, max_size=n_bad, unique=True))
    for r in bad_rows:
        t = data.draw(st.integers(0, batch.shape[1] - 1))
        f = data.draw(st.integers(0, batch.shape[2] - 1))
        batch[r, t, f] = data.draw(finite32, label="absurd value")
    got = shipped.score_many(batch)
    for r in sorted(set(range(size)) - set(bad_rows)):
        alone = shipped.score_many(batch[r:r + 1])
        np.testing.assert_allclose(got.scores[r], alone.scores[0], rtol=MAX_REL_DIFF, atol=0)
        np.testing.assert_allclose(got.feature_error[r], alone.feature_error[0], rtol=MAX_REL_DIFF, atol=1e-12)


def test_shipped_models_pass_the_export_check(shipped: ScoringModel, normal_windows: np.ndarray) -> None:
    inv = check_batch_invariance(shipped, normal_windows, CHECK_BATCH, "shipped S0 model")
    assert inv.n_extreme > 0 and inv.max_batch == CHECK_BATCH >= SCORE_BATCH and inv.max_rel_diff <= MAX_REL_DIFF
    nab = ScoringModel(ROOT / "models" / "nab-best.onnx")
    rng = np.random.default_rng(0)
    series = np.cumsum(rng.normal(0, 1, 6000)).astype(np.float32) + 100
    w = nab.card.sample_shape[0]
    windows = np.stack([series[i:i + w] for i in range(0, len(series) - w, 40)]).reshape(-1, *nab.sample_shape)
    inv = check_batch_invariance(nab, windows, CHECK_BATCH, "nab-best")
    assert inv.max_rel_diff <= MAX_REL_DIFF


class _SharedScale:
    """A model whose scores are normalized by the batch's largest value, as dynamic int8 does."""

    def score_many(self, samples: np.ndarray):  # noqa: ANN201
        from edgewatch.agent.model import ScoreBatch

        x = np.asarray(samples, np.float64)
        scale = np.abs(x).max()
        with np.errstate(invalid="ignore"):  # the check's companions hold inf and NaN
            per = x.reshape(len(x), -1).mean(axis=1) / scale
        return ScoreBatch(per.astype(np.float32), per[:, None].astype(np.float32))


def test_the_check_refuses_a_batch_dependent_model(normal_windows: np.ndarray) -> None:
    with pytest.raises(BatchDependentScores, match="depends on the other windows of its call"):
        check_batch_invariance(_SharedScale(), normal_windows, CHECK_BATCH, "shared-scale model")
