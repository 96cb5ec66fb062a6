"""An air handler's BMS export at one row a minute (docs/fit.md, seventh walk-through): its fan runs 07-19 on
weekdays (``Run``/``Stop`` and ``Occupied``/``Unoccupied`` as text), the supply air is held at its setpoint by a
chilled-water valve while the fan runs and drifts to the outdoor air, with a half-hour lag, while it stops.

``edgewatch fit`` in its default form with torch blocked (the base install) finds the two operating points, tries
a pca per point and keeps the one model: the per-point model's held-out episodes open at the switches between
the points (the windows that straddle a start or a stop, and the supply air settling after a stop, lie outside
each point's steady core for longer than the opening, at most 5 min, waits). The report says so, and what else
sees a fault inside one point (a conv1d-ae, with torch); the one model is blind to it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from tests.fit.test_fit_drift import run


def _air_handler(rng: np.random.Generator, days: int, start: str, coil_fails_at: int | None = None) -> list[str]:
    """The export's lines (``20/07/2026 14:00`` times): one row a minute, the weather varying smoothly from day to
    day around a daily swing. ``coil_fails_at``: from this row the cooling coil gives 60 % of its duty (the
    walk-through's fault: the supply air 4-6 °C warm with the valve wide open)."""
    t0 = datetime.fromisoformat(start)
    n = days * 1440
    times = [t0 + timedelta(minutes=i) for i in range(n)]
    hour = np.array([t.hour + t.minute / 60 for t in times])
    occupied = (hour >= 7) & (hour < 19) & (np.array([t.weekday() for t in times]) < 5)
    daily = np.interp(np.arange(n) / 1440, np.arange(days + 1), rng.normal(0, 2, days + 1))
    outdoor = 24 + 6 * np.sin(2 * np.pi * (hour - 9) / 24) + daily
    supply, valve, s, integral = np.empty(n), np.empty(n), 20.0, 0.0
    for i in range(n):
        duty = 0.6 if coil_fails_at is not None and i >= coil_fails_at else 1.0
        if occupied[i]:  # a PI loop holds the supply air at 12 °C
            err = s - 12.0
            integral = float(np.clip(integral + 0.02 * err, 0, 100))
            v = float(np.clip(8 * err + 3 * integral, 0, 100))
            s += (outdoor[i] - 0.16 * duty * v - s) / 6 + rng.normal(0, 0.05)
        else:  # fan stopped: the coil's air drifts to the outdoor air
            v, integral = 0.0, 0.0
            s += (outdoor[i] - 2 - s) / 30 + rng.normal(0, 0.03)
        supply[i], valve[i] = s, v
    ret = np.where(occupied, 23 + 0.1 * (outdoor - 24), outdoor - 1) + rng.normal(0, 0.1, n)
    lines = ["Timestamp,AHU1 Supply Air Temp (°C),AHU1 Return Air Temp (°C),AHU1 CHW Valve (%),"
             "AHU1 Supply Fan Status,AHU1 Occupancy"]
    for i in range(n):
        lines.append(f"{times[i]:%d/%m/%Y %H:%M},{supply[i]:.1f},{ret[i]:.1f},{valve[i]:.0f},"
                     f"{'Run' if occupied[i] else 'Stop'},{'Occupied' if occupied[i] else 'Unoccupied'}")
    return lines


def test_the_report_says_the_per_point_models_episodes_came_at_the_switches_and_what_else_sees_inside_a_point(
        tmp_path: Path) -> None:
    (tmp_path / "ahu.csv").write_text("\n".join(_air_handler(np.random.default_rng(1), 10, "2026-07-01")) + "\n")
    report = run(tmp_path, "fit", "ahu.csv", "-o", "m.onnx").stdout
    said = re.search(r"one model: a pca per operating point \(2\) raised (\d+) episode\(s\) on the held-out last "
                     r"quarter, the one model 0; (\d+) of them opened at a switch between the points: the windows "
                     r"that straddle a switch, and what settles after it, are in no point's steady core and stayed "
                     r"over the threshold longer than the opening waits", report)
    assert said and 1 <= int(said[2]) <= int(said[1]), report
    wide = next(line for line in report.splitlines() if "about as large as its whole normal range" in line)
    examples = wide.split("whole normal range (", 1)[1].split("): the normal data", 1)[0]
    # the examples are measured features: a text state changes only by a switch ("AHU1 Supply Fan Status 1.24 of
    # its 0..1" read as nonsense)
    assert "AHU1 Supply Air Temp" in examples and "Fan Status" not in examples and "Occupancy" not in examples, wide
    # 10 days: pca raised no false episode in the held-out 2.5 days, so torch alone would not be enough
    assert ". With torch installed (the edgewatch[train] extra) and 12 days of normal data or more (here 10.0 days), " \
           "`fit` also tries a conv1d-ae, one model of every state that can see a change inside one, and keeps it " \
           "when it does better on the held-out part (a pca per point was tried and not kept" in wide, wide


def test_with_family_pca_named_the_report_does_not_offer_the_conv1d_ae(tmp_path: Path) -> None:
    """``--family pca``: the user chose the pca, and ``fit`` would not try the conv1d-ae, so the report does not
    say it would; the rest of the warning stays."""
    (tmp_path / "ahu.csv").write_text("\n".join(_air_handler(np.random.default_rng(1), 10, "2026-07-01")) + "\n")
    report = run(tmp_path, "fit", "ahu.csv", "-o", "m.onnx", "--family", "pca").stdout
    wide = next(line for line in report.splitlines() if "about as large as its whole normal range" in line)
    assert "conv1d-ae" not in wide and wide.endswith("the line under 'model' says why)"), wide
