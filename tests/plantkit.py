"""A pump's CSV export as a plant hands it over, generated with a seed: the data of the fit tests.

One row a second: flow, pressure and motor current move together with the
load; vibration and voltage are noise around a level; the motor
temperature warms up through the whole recording (a drifting feature);
``state`` is text; pressure is logged less often than the rest (blank
cells). ``operating_point`` scales the flow (another machine, another
mode), ``fault`` drops the flow and raises the current between two rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

FEATURES = ["flow", "pressure", "current", "vibration", "temperature", "voltage"]
START = datetime(2024, 5, 1, 8, 0, 0, tzinfo=timezone.utc)


def pump_rows(rows: int, seed: int, operating_point: float = 1.0, fault: tuple[int, int] | None = None,
              start_row: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(start_row, start_row + rows, dtype=np.float64)
    load = 0.6 * np.sin(t / 90.0) + rng.normal(0, 0.3, rows)
    flow = 120.0 * operating_point + 4.0 * load + rng.normal(0, 0.8, rows)
    pressure = 2.5 + 0.08 * load + rng.normal(0, 0.02, rows)
    current = 3.0 * operating_point + 0.1 * load + rng.normal(0, 0.03, rows)
    vibration = 0.2 + rng.normal(0, 0.01, rows)
    temperature = 40.0 + 12.0 * (1.0 - np.exp(-t / 4000.0)) + rng.normal(0, 0.02, rows)
    voltage = 230.0 + rng.normal(0, 1.5, rows)
    x = np.stack([flow, pressure, current, vibration, temperature, voltage], axis=1)
    if fault is not None:
        a, b = fault
        x[a:b, 0] *= 0.7
        x[a:b, 2] += 0.4
    return x


def write_pump_csv(path: Path, x: np.ndarray, *, european: bool = False, blanks: bool = False, text: bool = True,
                   start_row: int = 0, time_name: str | None = None, labels: np.ndarray | None = None) -> Path:
    """``european``: ';' between fields, decimal commas, day-first times under 'Time Stamp'."""
    sep = ";" if european else ","
    time_name = time_name or ("Time Stamp" if european else "timestamp")
    head = [time_name, *FEATURES[:x.shape[1]]] + (["state"] if text else []) + (["anomaly"] if labels is not None else [])
    lines = [sep.join(head)]
    for i, row in enumerate(x):
        when = START + timedelta(seconds=start_row + i)
        stamp = when.strftime("%d.%m.%Y %H:%M:%S") if european else when.strftime("%Y-%m-%d %H:%M:%S")
        cells = [f"{v:.5f}" for v in row]
        if blanks and i % 3 and len(cells) > 1:
            cells[1] = ""  # pressure logged every third second
        if european:
            cells = [c.replace(".", ",") for c in cells]
        extra = (["RUN"] if text else []) + ([f"{labels[i]:g}"] if labels is not None else [])
        lines.append(sep.join([stamp, *cells, *extra]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
