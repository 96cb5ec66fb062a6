"""edgewatch fit on machine behaviour a plant shows in normal operation (the third walk-through, docs/fit.md).

Each test generates a small seeded plant file of one behaviour and checks
what fit chose for it, through ``fit_model`` as ``edgewatch fit`` runs it
in the default form.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from edgewatch.agent.offline import run_series
from edgewatch.agent.runtime import DriftSettings, Overrides, load_runtime
from edgewatch.fit.pipeline import Family, FitOptions, fit_model
from edgewatch.fit.screening import Use

T0 = datetime(2026, 3, 2, tzinfo=timezone.utc)


def _write(path: Path, cols: dict[str, np.ndarray], step: float = 1.0, fmt: str = "{:.6g}") -> Path:
    names = list(cols)
    n = len(cols[names[0]])
    lines = ["timestamp," + ",".join(names)]
    for i in range(n):
        t = (T0 + timedelta(seconds=i * step)).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(t + "," + ",".join(fmt.format(cols[k][i]) for k in names))
    path.write_text("\n".join(lines) + "\n")
    return path


def _slow(rng: np.random.Generator, n: int, sd: float, a: float) -> np.ndarray:
    """A level wandering to and fro (first-order low-pass of white noise), of standard deviation ``sd``."""
    e = rng.normal(0, 1, n)
    y = np.empty(n)
    acc = 0.0
    for i, v in enumerate(e):
        acc += a * (v - acc)
        y[i] = acc
    return y / y.std() * sd


def _compressor(rng: np.random.Generator, n: int, blocked: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A compressor at one row a minute whose load wanders: flow and current follow it, together; the current
    also follows the day's ambient temperature."""
    load = 0.8 + _slow(rng, n, 0.05, 0.02)
    ambient = 15 + 8 * np.sin(2 * np.pi * (np.arange(n) / 1440 - 0.35))
    flow = 12 * load + rng.normal(0, 0.15, n)
    current = 55 * load + 0.3 * ambient + rng.normal(0, 0.4, n)
    if blocked is not None:
        flow, current = flow - 2.5 * blocked, current + 6.0 * blocked
    return {"ambient": ambient + rng.normal(0, 0.2, n), "flow": flow, "current": current,
            "pressure": 7.5 + rng.normal(0, 0.03, n),
            "vibration": 1.1 + rng.normal(0, 0.05, n)}


def test_a_level_wandering_over_a_range_it_covers_again_and_again_stays_a_level(tmp_path: Path) -> None:
    """Before: the ambient temperature (two days of its daily cycle) moved 'more than five times its noise' from the
    first to the last third and was scored by its rate, and with it any level that follows the day (a
    compressor's current): their correlation with the others was lost. A blocked inlet (flow down, current up)
    is one episode."""
    rng = np.random.default_rng(8)
    normal = _write(tmp_path / "normal.csv", _compressor(rng, 2880), step=60.0)
    report = fit_model([normal], tmp_path / "c.onnx", FitOptions(family=Family.PCA))
    uses = {c.name: c.use for c in report.choices}
    assert set(uses.values()) == {Use.LEVEL} and len(uses) == 5, uses
    m = 600
    blocked = np.clip((np.arange(m) - 300) / 30, 0, 1)
    today = _compressor(np.random.default_rng(8), m, blocked)
    runtime = load_runtime(tmp_path / "c.onnx", Overrides(), drift_settings=DriftSettings(every=0))
    x = np.stack([today[f] for f in report.recipe.features], axis=1)
    episodes = run_series(runtime, x, T0.timestamp() + 60.0 * np.arange(m)).episodes
    assert len(episodes) == 1 and 300 <= episodes[0].start_seq <= 340, episodes


def test_a_steady_drift_is_still_scored_by_its_rate(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 3000
    cols = {"flow": 40 + rng.normal(0, 0.3, n), "temperature": 20 + 15 * np.arange(n) / n + rng.normal(0, 0.1, n),
            "current": 18 + rng.normal(0, 0.1, n)}
    report = fit_model([_write(tmp_path / "n.csv", cols)], tmp_path / "m.onnx", FitOptions(family=Family.PCA))
    assert {c.name: c.use for c in report.choices}["temperature"] is Use.RATE


def _three_speeds(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """A pump run at 1000, 1500 and 2000 rpm in blocks of 30 rows (one row every 10 s)."""
    speed = np.repeat(rng.choice([1000.0, 1500.0, 2000.0], n // 30 + 1), 30)[:n]
    r = speed / 1500
    return {"speed": speed + rng.normal(0, 3, n), "flow": 40 * r + rng.normal(0, 0.4, n),
            "pressure": 4 * r ** 2 + rng.normal(0, 0.04, n), "current": 6 + 12 * r ** 3 + rng.normal(0, 0.15, n)}


def test_three_operating_points_are_each_named_in_the_warning(tmp_path: Path) -> None:
    """Before: 2-means split them into one speed and the other two, whose pooled spread put them 4 standard
    deviations apart, under the limit: no warning, and the report never said which speeds the model knows."""
    normal = _write(tmp_path / "n.csv", _three_speeds(np.random.default_rng(5), 3000), step=10.0)
    report = fit_model([normal], tmp_path / "m.onnx", FitOptions(family=Family.PCA))
    assert report.modes is not None and len(report.modes.modes) == 3
    speeds = sorted(round(md.centre["speed"], -2) for md in report.modes.modes)
    assert speeds == [1000, 1500, 2000], speeds
    assert "three distinct operating points" in report.warnings[0]


def test_one_steady_state_has_no_operating_points(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    normal = _write(tmp_path / "n.csv", _compressor(rng, 3000), step=1.0)
    assert fit_model([normal], tmp_path / "m.onnx", FitOptions(family=Family.PCA)).modes is None


def test_the_report_says_a_frozen_sensor_is_seen_only_through_the_others(tmp_path: Path) -> None:
    """A current sensor frozen at its last value while a pump ran on at a steady point raised nothing
    (walk-through: two kinds of plant), and the report did not list it among what the model cannot see. With a
    load that wanders, the same freeze breaks the current's link with the flow and is caught, as the line says."""
    rng = np.random.default_rng(4)
    normal = _write(tmp_path / "n.csv", _compressor(rng, 3000), step=1.0)
    report = fit_model([normal], tmp_path / "m.onnx", FitOptions(family=Family.PCA))
    assert any(line.startswith("a sensor frozen at a normal value") and "when they move" in line
               for line in report.blind_spots())
    today = _compressor(np.random.default_rng(6), 1200)
    today["current"][600:] = today["current"][600]
    runtime = load_runtime(tmp_path / "m.onnx", Overrides(), drift_settings=DriftSettings(every=0))
    x = np.stack([today[f] for f in report.recipe.features], axis=1)
    episodes = run_series(runtime, x, T0.timestamp() + np.arange(1200.0)).episodes
    assert len(episodes) == 1 and episodes[0].start_seq >= 600, episodes


def test_a_coarse_reading_that_sat_on_one_step_is_named_with_what_to_do(tmp_path: Path) -> None:
    """A motor temperature logged as a whole °C read 57 for four hours: left out as constant, and the report did
    not say that an overheating motor is then not watched, nor what to do."""
    rng = np.random.default_rng(9)
    cols = _compressor(rng, 2000)
    cols["motor_temp"] = np.round(57 + rng.normal(0, 0.1, 2000))
    cols["spare"] = np.full(2000, 0.123)  # a spare channel's fixed reading is not a coarse step
    report = fit_model([_write(tmp_path / "n.csv", cols)], tmp_path / "m.onnx", FitOptions(family=Family.PCA))
    why = {c.name: c.reason for c in report.choices}
    assert why["motor_temp"].startswith("constant (57)") and "export it with more decimals" in why["motor_temp"]
    assert why["spare"].startswith("constant (0.123)") and "decimals" not in why["spare"]


def test_stops_in_the_normal_data_are_an_operating_point_to_keep(tmp_path: Path) -> None:
    """A pump that stops (every sensor near zero) is warned about as two operating points; the warning used to
    say 'if one of them is a stop, remove those rows', and a model fitted without its stops alerts at each."""
    rng = np.random.default_rng(11)
    n = 4000
    on = (np.arange(n) // 500) % 3 != 2  # 1000 s running, 500 s stopped
    cols = _compressor(rng, n)
    for k in ("flow", "current", "pressure", "vibration"):
        cols[k] = np.where(on, cols[k], rng.normal(0, 0.01, n))
    report = fit_model([_write(tmp_path / "n.csv", cols)], tmp_path / "m.onnx", FitOptions(family=Family.PCA))
    assert report.modes is not None and len(report.modes.modes) == 2
    assert "keep stops and start-ups" in report.warnings[0] and "or a stop" not in report.warnings[0]
