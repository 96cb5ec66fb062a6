"""int8 against fp32 on the trained S0 model: window decisions and alerts on a faulty stream."""

from __future__ import annotations

from dataclasses import asdict

from edgewatch.bench.s0 import decision_agreement

from .conftest import QUICK


def test_int8_fp32_agreement(benchmark, s0) -> None:
    result = benchmark.pedantic(decision_agreement, args=(s0.paths,),
                                kwargs={"rows": 10_000 if QUICK else 30_000}, rounds=1, iterations=1)
    benchmark.group = "int8 vs fp32"
    benchmark.extra_info.update({"suite": "agreement", **asdict(result)})
    assert result.windows > 0 and result.over_fp32 > 0, "no window crossed the threshold: nothing to compare"
