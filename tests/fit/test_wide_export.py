"""A historian export of many tags: ``edgewatch fit`` groups the features that share a verdict into one line of its
report, names the first few and says where the full list is; an ordinary file's report is unchanged (its lines are
asserted on in the other files here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgewatch.agent.model import ScoringModel
from edgewatch.fit.report import GROUP_SHOWN, WIDE_REPORT
from edgewatch.numpy_models.pca import CORE_SHARE, CORE_STEPS, _core
from tests.fit.test_fit_drift import run as edgewatch  # edgewatch ARGS as on an edge box (torch blocked)

TAGS = 40
ROWS = 2000


def write_wide(path: Path, tags: int = TAGS, rows: int = ROWS, seed: int = 3) -> tuple[Path, list[str]]:
    """``tags`` temperatures driven by a few shared process states (as a plant's are), a time column, a spare
    channel and a text column: the shape of a historian export, narrow enough to fit in seconds."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    states = np.sin(t[:, None] / rng.uniform(50, 300, 3)) + rng.normal(0, 0.01, (rows, 3))
    x = states @ rng.normal(0, 1, (3, tags)) + rng.uniform(20, 300, tags) + rng.normal(0, 0.05, (rows, tags))
    names = [f"UNIT1.TI_{j:03d}.PV" for j in range(tags)]
    lines = ["Timestamp," + ",".join(names) + ",SPARE,Mode"]
    for i in range(rows):
        stamp = f"2026-03-02 {i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
        lines.append(stamp + "," + ",".join(f"{v:.4f}" for v in x[i]) + ",0,AUTO")
    path.write_text("\n".join(lines) + "\n")
    return path, names


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``edgewatch fit wide.csv -o wide.onnx`` in its default form, torch blocked: the report's lines."""
    tmp = tmp_path_factory.mktemp("wide")
    path, names = write_wide(tmp / "wide.csv")
    proc = edgewatch(tmp, "fit", str(path), "-o", str(tmp / "wide.onnx"))
    return {"lines": proc.stdout.splitlines(), "names": names, "model": tmp / "wide.onnx"}


def test_features_sharing_a_verdict_take_one_line_with_their_count_and_first_names(wide: dict) -> None:
    lines, names = wide["lines"], wide["names"]
    section = lines[lines.index("features") + 1:next(i for i, x in enumerate(lines) if x.startswith("model "))]
    steady = [x for x in section if " features, each steady in the normal data: " in x]
    assert len(steady) == 1, section
    count = int(steady[0].split()[1])
    assert count > WIDE_REPORT
    shown = [n for n in names if n in steady[0]]
    assert shown == [n for n in names if n in shown][:GROUP_SHOWN] and len(shown) == GROUP_SHOWN
    assert f"({count - GROUP_SHOWN} more; all listed by `edgewatch agent check wide.onnx`)" in steady[0]
    assert not any(x.split()[1] in names for x in section if x.split()[0] == "level")  # no one line per tag
    assert any(x.split()[:3] == ["left", "out", "SPARE"] for x in section)  # a single verdict keeps its own line
    assert len(lines) < 40, "\n".join(lines)


def test_the_ranges_and_blind_spots_name_the_first_few_and_the_model_holds_every_tag(wide: dict) -> None:
    lines = wide["lines"]
    start = lines.index(next(x for x in lines if x.startswith("range ")))
    assert lines[start + GROUP_SHOWN + 1] == f"  ... and {TAGS - GROUP_SHOWN} more; all listed by `edgewatch agent " \
                                              "check wide.onnx`"
    smallest = next(x for x in lines if "a sustained change of one feature alone smaller than" in x)
    assert smallest.count(" std)") == GROUP_SHOWN
    assert ScoringModel(wide["model"]).card.features == wide["names"]  # grouped in the report, all in the model


def test_the_wide_model_runs_through_the_agent_check(wide: dict) -> None:
    proc = edgewatch(wide["model"].parent, "agent", "check", str(wide["model"]))
    assert "ok, the agent accepts it" in proc.stdout
    assert all(n in proc.stdout for n in wide["names"])  # where the report's "all listed" points


def test_the_core_keeps_the_windows_nearest_their_centre_by_mahalanobis_distance() -> None:
    """The core's distance (a matrix product since a 3-operand einsum took 19 s of a 500-tag fit) keeps the same
    windows as the distance written out: the fitted files stay byte-identical."""
    rng = np.random.default_rng(5)
    windows = rng.normal(0, 1, (3000, 6)) @ rng.normal(0, 1, (6, 6)) + rng.standard_t(3, (3000, 6))
    z = windows / windows.std(axis=0)
    keep = np.ones(len(z), dtype=bool)
    for _ in range(CORE_STEPS):  # the concentration steps, each distance summed term by term
        own = z[keep]
        dev = z - own.mean(axis=0)
        inverse = np.linalg.pinv(np.cov(own, rowvar=False), rcond=1e-9, hermitian=True)
        dist = np.einsum("bf,fg,bg->b", dev, inverse, dev)
        new = dist <= np.quantile(dist, CORE_SHARE)
        if (new == keep).all():
            break
        keep = new
    assert keep.sum() < len(z)
    np.testing.assert_array_equal(_core(windows), windows[keep])
