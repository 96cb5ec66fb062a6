"""The S3 synthetic benchmark: seeded, labelled exactly, written and read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgewatch.cli import main
from edgewatch.data.synth import SynthConfig, label_regions, load_synth, make_synth
from edgewatch.errors import BadInput


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = make_synth(SynthConfig(seed=3)), make_synth(SynthConfig(seed=3)), make_synth(SynthConfig(seed=4))
    np.testing.assert_array_equal(a.test, b.test)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.train, c.train)


def test_segments_are_scaled_by_the_factor_and_labelled() -> None:
    cfg = SynthConfig(seed=0, noise=0.0, n_segments=6, segment=10, factor=2.0, test_length=3000)
    data = make_synth(cfg)
    clean = make_synth(SynthConfig(seed=0, noise=0.0, n_segments=0, test_length=3000))
    segs = data.segments()
    assert len(segs) == 6 and all(e - s + 1 == 10 for s, e in segs)
    assert data.labels.sum() == 60
    inside = data.labels.astype(bool)
    np.testing.assert_allclose(data.test[~inside], clean.test[~inside], atol=1e-6)
    assert np.abs(data.test[inside]).max() > 1.5  # scaled beyond the unit amplitude
    gaps = [segs[i + 1][0] - segs[i][1] for i in range(len(segs) - 1)]
    assert min(gaps) > 10


def test_training_data_is_nominal_and_bounded() -> None:
    data = make_synth(SynthConfig(seed=0, noise=0.1))
    assert data.train.shape == (10_000, 1)
    assert np.abs(data.train).max() <= 1.1 + 1e-6


def test_impossible_configuration_is_refused() -> None:
    with pytest.raises(BadInput, match="do not fit"):
        make_synth(SynthConfig(test_length=100, n_segments=10))


def test_label_regions_are_inclusive_runs() -> None:
    assert label_regions(np.array([0, 1, 1, 0, 1])) == [(1, 2), (4, 4)]
    assert label_regions(np.zeros(5)) == []


def test_cli_writes_a_benchmark_that_loads_back(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    result = CliRunner().invoke(main, ["data", "synth", "-o", str(out), "--seed", "5", "--train-length", "2000",
                                       "--test-length", "1500", "--segments", "4"])
    assert result.exit_code == 0, result.output
    assert "test_labels.npy" in result.output and "edgewatch train rnn-ae" in result.output
    data = load_synth(out)
    assert data.train.shape == (2000, 1) and data.test.shape == (1500, 1) and data.labels.sum() == 40
    assert data.config.seed == 5
    rows = (out / "test.csv").read_text().splitlines()
    assert rows[0] == "x0,label" and len(rows) == 1501
    assert sum(int(r.split(",")[1]) for r in rows[1:]) == 40


def test_loading_a_folder_without_data_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="edgewatch data synth"):
        load_synth(tmp_path)
