"""edgewatch fit on local-time exports across a daylight-saving change, in the default form (``fit FILE -o m.onnx``).

A historian that writes wall-clock times without an offset repeats an hour when the clocks go back (Europe
2026-10-25 02:00, the US 2026-11-01 01:00) and skips one when they go forward (Europe 2026-03-29 02:00). The
file's order is the true order: the repeated hour is neither sorted into the first nor dropped, the skipped hour
is no shutdown, and the report says what it saw. Each file is seeded; its ``row`` column counts the rows in file
order, so the order the model learns in is checked.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from click.testing import CliRunner

from edgewatch.cli import main
from edgewatch.fit.normal_data import read_normal_data


def _local_export(path: Path, start: datetime, rows: int, step: float, zone: str, seed: int = 0) -> Path:
    """A plant's export in local wall-clock time with no offset; ``row`` is the row's place in the file."""
    rng = np.random.default_rng(seed)
    lines = ["timestamp,row,pressure,flow"]
    for i in range(rows):
        local = (start + timedelta(seconds=i * step)).astimezone(ZoneInfo(zone)).replace(tzinfo=None)
        day = np.sin(2 * np.pi * i * step / 86400)
        lines.append(f"{local:%Y-%m-%d %H:%M:%S},{i},{5 + 0.3 * day + rng.normal(0, 0.02):.4f},"
                     f"{40 + 3 * day + rng.normal(0, 0.3):.3f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _fit(path: Path) -> str:
    res = CliRunner().invoke(main, ["fit", str(path), "-o", str(path.with_suffix(".onnx"))])
    assert res.exit_code == 0, res.output
    return res.output


def _one_stretch_in_file_order(path: Path, step: float) -> None:
    data = read_normal_data([path], columns=["row", "pressure"])
    assert len(data.segments) == 1
    assert data.segments[0][:, 0].tolist() == list(range(len(data.segments[0])))  # none dropped, none moved
    assert data.times is not None and set(np.diff(data.times[0]).tolist()) <= {step, step + 3600.0}


@pytest.mark.parametrize("step, start, zone, repeated", [
    (3600.0, datetime(2026, 10, 18, tzinfo=timezone.utc), "Europe/Berlin", "2026-10-25 02:00"),
    (60.0, datetime(2026, 10, 24, 12, tzinfo=timezone.utc), "Europe/Berlin", "2026-10-25 02:00"),
    (3600.0, datetime(2026, 10, 25, tzinfo=timezone.utc), "America/Chicago", "2026-11-01 01:00"),
], ids=["europe-hourly", "europe-1-minute", "us-hourly"])
def test_the_hour_repeated_at_the_autumn_change_is_said_and_kept_in_file_order(
        tmp_path: Path, step: float, start: datetime, zone: str, repeated: str) -> None:
    path = _local_export(tmp_path / "autumn.csv", start, 14 * 24 if step == 3600 else 30 * 60, step, zone)
    text = path.read_text()
    assert text.count(f"\n{repeated}:00,") == 2  # the export does repeat the hour
    report = _fit(path)
    assert (f"the hour from {repeated} comes twice (a clock change to winter time? the export is in local time): "
            "its rows are kept in file order, none dropped") in report
    assert "the clocks went back an hour 1 time(s)" in report
    assert "same time as the row before" not in report and "out of time order" not in report
    data = read_normal_data([path], columns=["row"])
    assert data.times is not None and np.diff(data.times[0]).tolist() == [step] * (len(data.times[0]) - 1)
    _one_stretch_in_file_order(path, step)


@pytest.mark.parametrize("step, start", [
    (3600.0, datetime(2026, 3, 22, tzinfo=timezone.utc)),
    (60.0, datetime(2026, 3, 28, 12, tzinfo=timezone.utc)),
], ids=["hourly", "1-minute"])
def test_the_hour_skipped_at_the_spring_change_is_said_and_is_no_gap(tmp_path: Path, step: float,
                                                                      start: datetime) -> None:
    path = _local_export(tmp_path / "spring.csv", start, 14 * 24 if step == 3600 else 30 * 60, step, "Europe/Berlin")
    assert "2026-03-29 02:" not in path.read_text()
    report = _fit(path)
    assert ("the hour from 2026-03-29 02:00 is missing (a clock change to summer time? the export is in local "
            "time): not a gap, the rows on each side are one stretch") in report
    assert "gap(s) in time" not in report and "shutdown" not in report
    _one_stretch_in_file_order(path, step)


def test_a_row_written_twice_at_noon_is_a_repeated_time_not_a_clock_change(tmp_path: Path) -> None:
    path = _local_export(tmp_path / "twice.csv", datetime(2026, 6, 1, tzinfo=timezone.utc), 14 * 24, 3600.0, "UTC")
    lines = path.read_text().splitlines()
    noon = next(i for i, line in enumerate(lines) if line.startswith("2026-06-03 12:00"))
    lines.insert(noon + 1, lines[noon].split(",")[0] + ",x,5.0,40.0")
    path.write_text("\n".join(lines) + "\n")
    report = _fit(path)
    assert ("1 row(s) have the same time as the row before (the first at 2026-06-03 12:00:00): kept in file order, "
            "none dropped") in report
    assert "clock" not in report
    data = read_normal_data([path], columns=["pressure", "flow"])
    assert sum(len(s) for s in data.segments) == 14 * 24 + 1
