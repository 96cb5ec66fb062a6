"""Sentinel int8 against fp32 on the trained S0 model: decisions on nominal and faulty windows, and alerts."""

from __future__ import annotations

from dataclasses import asdict

from edgewatch.bench.s0 import decision_agreement

from .conftest import QUICK


def test_int8_fp32_agreement(benchmark, s0) -> None:
    result = benchmark.pedantic(decision_agreement, args=(s0.paths,),
                                kwargs={"rows": 10_000 if QUICK else 20_000}, rounds=1, iterations=1)
    benchmark.group = "int8 vs fp32"
    benchmark.extra_info.update({"suite": "agreement", **asdict(result)})
    assert result.nominal_windows > 0 and result.faulty_windows > 0
    assert result.over_fp32 > 0, "no window crossed the threshold: nothing to compare"
