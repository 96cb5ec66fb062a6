"""A totaliser or a wrapping counter kept as its rate (issue 22; edgewatch/fit/totalisers.py): ``edgewatch fit``
differences it, the card says how, and the agent's row assembler turns the raw values into the same rate.

The packaging line of the seventh walk-through (docs/fit.md), seeded and small: belt speed, motor current and a
16-bit pack counter that wraps; its fault is a feeder that misses packs (the packing rate 40 % down) while belt
and current stay normal. Before, the counter was left out as a totaliser and that fault was invisible.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from edgewatch.agent.model import ScoringModel
from edgewatch.contract.card import ModelCard
from edgewatch.errors import BadModelFile
from edgewatch.fit import totalisers
from edgewatch.fit.pipeline import fit_model
from tests.agent.test_without_torch import BLOCKER
from tests.fit.test_fit import _replay
from tests.modelkit import make_card

T0 = datetime(2026, 3, 2, tzinfo=timezone.utc)
STEP = 5.0  # seconds between rows
FAULT_ROW = 1440  # the feeder starts missing packs two hours into the fault day


def packaging_line(seed: int, n: int, fault_from: int | None = None, start: int = 60_000) -> dict[str, np.ndarray]:
    """One row every 5 s: the belt's speed wanders with the line's pace, the motor current follows it, about 10
    packs a second at full pace are counted by a 16-bit counter (it wraps at 65536 every 1.8 h)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    speed = 1.0 + 0.08 * np.sin(2 * np.pi * t * STEP / 2400) + rng.normal(0, 0.01, n)
    current = 6.0 + 3.0 * speed + rng.normal(0, 0.08, n)
    pace = 10.0 * speed
    if fault_from is not None:
        pace = np.where(t >= fault_from, 0.6 * pace, pace)
    count = (start + np.cumsum(rng.poisson(pace * STEP))) % 65536
    return {"belt_speed_mps": speed, "motor_current_A": current, "pack_count": count.astype(np.float64)}


def write(path: Path, cols: dict[str, np.ndarray], start: datetime = T0, step: float = STEP,
          formats: dict[str, str] | None = None) -> Path:
    names = list(cols)
    spec = {k: (formats or {}).get(k, ".6g") for k in names}
    lines = ["timestamp," + ",".join(names)]
    for i in range(len(cols[names[0]])):
        t = (start + timedelta(seconds=i * step)).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(t + "," + ",".join(format(cols[k][i], spec[k]) for k in names))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``edgewatch fit normal.csv -o m.onnx`` as the README runs it (no flags, torch blocked): the report, the model,
    a normal day and a fault day."""
    tmp = tmp_path_factory.mktemp("packaging")
    normal = write(tmp / "normal.csv", packaging_line(1, 4800))
    proc = subprocess.run([sys.executable, "-c", BLOCKER, "fit", str(normal), "-o", str(tmp / "m.onnx")],
                          capture_output=True, text=True, timeout=300, cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    (tmp / "report.txt").write_text(proc.stdout)
    write(tmp / "day.csv", packaging_line(2, 2880), T0 + timedelta(days=2))
    write(tmp / "fault.csv", packaging_line(3, 2880, fault_from=FAULT_ROW), T0 + timedelta(days=3))
    return {"dir": tmp, "model": tmp / "m.onnx", "report": tmp / "report.txt", "day": tmp / "day.csv",
            "fault": tmp / "fault.csv"}


def test_the_pack_counter_is_kept_as_its_rate_its_wrap_read_exactly(line: dict[str, Path]) -> None:
    report = line["report"].read_text()
    assert ("level     pack_count               kept as its rate: a totaliser (its level counts since the last "
            "reset, which no fault moves), scored by its rise a second; it wraps at 65536 (4 time(s)): the rise "
            "across a wrap is taken modulo it, exactly") in report, report
    card = ScoringModel(line["model"]).card
    assert card.features == ["belt_speed_mps", "motor_current_A", "pack_count"]
    assert card.totalisers == {"pack_count": {"per": "s", "wrap": 65536}}
    check = subprocess.run([sys.executable, "-c", BLOCKER, "agent", "check", str(line["model"])],
                           capture_output=True, text=True, timeout=120)
    assert ("  totaliser     pack_count: scored by its rise per second since the stream's previous row (a fall is "
            "a wrap at 65536, taken modulo it)") in check.stdout, check.stdout + check.stderr
    # the range learnt is the packs a second (about 10 at full pace), not the counter's 0..65535
    learnt = next(line for line in report.splitlines() if line.startswith("  pack_count  ") and " .. " in line)
    lo, hi = (float(v) for v in learnt.split()[1:4:2])
    assert 4.0 < lo < 10.0 < hi < 16.0, learnt


def test_replay_catches_the_feeder_missing_packs_and_a_normal_day_raises_nothing(line: dict[str, Path]) -> None:
    """Belt and current stay normal: only the counter's rate shows the fault. Before, no episode at all."""
    run, events = _replay(line["model"], line["day"], line["dir"])
    assert "messages 2880 " in run.stdout + run.stderr and "missing_feature 1" in run.stdout + run.stderr, run.stderr
    assert [e for e in events if e["event"] == "start"] == [], events
    run, events = _replay(line["model"], line["fault"], line["dir"])
    starts = [e for e in events if e["event"] == "start"]
    assert len(starts) == 1, events
    onset = (T0 + timedelta(days=3)).timestamp() + FAULT_ROW * STEP
    assert onset <= starts[0]["ts"] <= onset + 120, (starts[0]["ts"] - onset)
    assert starts[0]["top_features"][0]["feature"] == "pack_count", starts[0]


def test_a_stream_dropped_as_idle_starts_its_rate_again_as_fit_starts_a_segment(line: dict[str, Path]) -> None:
    """After ``--stream-ttl`` drops a stream, its next count is no rate over the whole silence (a packing rate
    near zero the line never had): the stream comes back as new, its first row without a rate, as after a gap
    in fit's data."""
    import json
    import time

    from edgewatch.agent.engine import Agent, AgentOptions
    from edgewatch.agent.sinks import MemorySink
    from edgewatch.agent.sources import Item, Kind

    agent = Agent(ScoringModel(line["model"]), [MemorySink()], AgentOptions(drift_every=0, stream_ttl=30.0))

    def rows(first: int, counts: list[int]) -> list[Item]:
        return [Item(Kind.RAW, "gw", json.dumps({"stream": "line1", "ts": float(first + STEP * i),
                                                 "belt_speed_mps": 1.0, "motor_current_A": 9.0,
                                                 "pack_count": c}), time.time()) for i, c in enumerate(counts)]

    agent.process(rows(0, [100, 150, 200, 250]))
    assert agent.summary.bad == {"missing_feature": 1}  # the first count: no rate yet
    assert agent.evict_idle(now=time.monotonic() + 31) == 1
    agent.process(rows(7200, [9000, 9050, 9100]))
    assert agent.summary.bad == {"missing_feature": 2}, agent.summary.bad  # not (9000 - 250) / 7200 s


def test_the_rate_across_a_wrap_is_exact_and_a_reset_holds_the_rate_before() -> None:
    t = np.array([0.0, 5.0, 10.0, 15.0, 20.0, 20.0, 25.0])
    wrapped = np.array([65500.0, 65530.0, 24.0, 74.0, 124.0, 129.0, 179.0])
    assert np.allclose(totalisers.rate(wrapped, t, 65536.0)[1:], [6.0, 6.0, 10.0, 10.0, 10.0, 10.0])
    assert np.isnan(totalisers.rate(wrapped, t, 65536.0)[0])
    reset = np.array([100.0, 110.0, 3.0, 13.0, 23.0])
    assert np.allclose(totalisers.rate(reset, None, None)[1:], [10.0, 10.0, 10.0, 10.0])
    assert totalisers.wrap_of([wrapped]) == 65536.0
    shift = np.array([0.0, 40.0, 80.0, 120.0, 160.0, 2.0, 42.0, 82.0])  # a reset from 160 to 0: no modulus fits
    assert totalisers.wrap_of([shift]) is None


def test_the_cards_totalisers_are_checked_and_written_only_when_used() -> None:
    plain = make_card(features=["a", "b"])
    assert not any(k.endswith("totalisers") for k in plain.to_props())  # other files stay byte-identical
    good = plain.with_overrides(totalisers={"b": {"per": "s", "wrap": 65536}})
    assert ModelCard.from_props(good.to_props()).totalisers == {"b": {"per": "s", "wrap": 65536}}
    for bad in ({"c": {"per": "s"}}, {"b": {"per": "minute"}}, {"b": {"per": "s", "wrap": -1}},
                {"b": {"per": "row", "modulo": 10}}, {"b": "rate"}):
        with pytest.raises(BadModelFile, match="totalisers"):
            plain.with_overrides(totalisers=bad)


def test_a_row_counter_stays_left_out_and_a_wrapping_one_is_left_out_by_its_constant_rate(tmp_path: Path) -> None:
    """A row number (the same step every row) is no measurement, as before; a 16-bit sequence number that wraps
    is a totaliser whose rate is one a row: constant, left out, and not in the card."""
    cols = packaging_line(4, 2000)
    cols["row"] = np.arange(2000, dtype=np.float64)
    cols["seq"] = (np.arange(2000) + 64_000.0) % 65536
    write(tmp_path / "n.csv", cols)
    report = "\n".join(fit_model([tmp_path / "n.csv"], tmp_path / "m.onnx").lines())
    assert "left out  row                      a counter (the same step every row, like a row number)" in report
    assert "left out  seq                      a totaliser (its level counts since the last reset" in report, report
    assert ("it wraps at 65536 (1 time(s)): the rise across a wrap is taken modulo it, exactly; its rate is constant "
            "(0.2 a second): it counts messages or time (a sequence number, a seconds counter), not what the process "
            "makes, so nothing in it moves with the plant") in report, report
    assert "coarse reading" not in report, report  # before: a constant reading's advice (export more decimals)
    card = ScoringModel(tmp_path / "m.onnx").card
    assert card.features == ["belt_speed_mps", "motor_current_A", "pack_count"]
    assert card.totalisers == {"pack_count": {"per": "s", "wrap": 65536}}


MINUTE = 60.0
LOAD_ROW = 1200  # the compressor's leak starts 20 h into the fault day
KWH = {"Energy_kWh": ".1f"}  # as the meter shows it: 1234567.8


def feeder(seed: int, n: int, leak_from: int | None = None) -> dict[str, np.ndarray]:
    """A compressor house's feeder, one row a minute: the air demand wanders over the day, the compressor's kW
    follows it, and a kWh meter at 1,234,567.8 totals it to 0.1 kWh (float32's step there is 0.125). The fault:
    the compressor draws 30 kW more for the same air (a leak behind the flow meter), seen only in the kW."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    demand = 10.0 + 3.0 * np.sin(2 * np.pi * t / 1440) + rng.normal(0, 0.3, n)
    kw = 40.0 + 8.0 * demand + rng.normal(0, 2.0, n)
    if leak_from is not None:
        kw = np.where(t >= leak_from, kw + 30.0, kw)
    energy = np.round(1_234_567.8 + np.cumsum(kw * MINUTE / 3600.0), 1)
    return {"air_flow_m3min": demand, "Energy_kWh": energy}


@pytest.fixture(scope="module")
def meter(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``edgewatch fit normal.csv -o m.onnx`` with no flags, torch blocked: the report, the model and two days."""
    tmp = tmp_path_factory.mktemp("meter")
    normal = write(tmp / "normal.csv", feeder(21, 4320), step=MINUTE, formats=KWH)
    proc = subprocess.run([sys.executable, "-c", BLOCKER, "fit", str(normal), "-o", str(tmp / "m.onnx")],
                          capture_output=True, text=True, timeout=300, cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    (tmp / "report.txt").write_text(proc.stdout)
    write(tmp / "day.csv", feeder(22, 1440), T0 + timedelta(days=4), MINUTE, KWH)
    write(tmp / "leak.csv", feeder(23, 1440, leak_from=LOAD_ROW), T0 + timedelta(days=5), MINUTE, KWH)
    return {"dir": tmp, "model": tmp / "m.onnx", "report": tmp / "report.txt", "day": tmp / "day.csv",
            "leak": tmp / "leak.csv"}


def test_a_kwh_meter_in_the_millions_is_kept_as_its_rate_not_left_out_as_too_fine(meter: dict[str, Path]) -> None:
    """Before: 'left out  Energy_kWh  too fine for the agent's 32-bit numbers' (the screening's float32 check ran
    before the totaliser one), and the model saw the air flow alone."""
    report = meter["report"].read_text()
    assert "too fine" not in report, report
    assert "Energy_kWh               kept as its rate: a totaliser" in report, report
    card = ScoringModel(meter["model"]).card
    assert card.features == ["air_flow_m3min", "Energy_kWh"]
    assert card.totalisers == {"Energy_kWh": {"per": "s"}}


def test_replay_catches_the_meters_rise_and_a_normal_day_raises_nothing(meter: dict[str, Path]) -> None:
    run, events = _replay(meter["model"], meter["day"], meter["dir"])
    assert "messages 1440 " in run.stdout + run.stderr and "missing_feature 1" in run.stdout + run.stderr, run.stderr
    assert [e for e in events if e["event"] == "start"] == [], events
    run, events = _replay(meter["model"], meter["leak"], meter["dir"])
    starts = [e for e in events if e["event"] == "start"]
    assert len(starts) == 1, events
    onset = (T0 + timedelta(days=5)).timestamp() + LOAD_ROW * MINUTE
    assert onset <= starts[0]["ts"] <= onset + 30 * MINUTE, (starts[0]["ts"] - onset)
    # the air flow alone is normal: the kW it no longer explains is what opened it (a pca of two features shares
    # the residual between them: 0.80 air flow, 0.20 kWh here). Without the meter's rate the model had the air flow
    # alone, and the leak was invisible
    assert {f["feature"] for f in starts[0]["top_features"]} == {"air_flow_m3min", "Energy_kWh"}, starts[0]
