"""Benchmarks of edgewatch against real-time rates: engines, agent throughput, memory, latency.

``edgewatch bench`` runs the pytest-benchmark suites in ``benchmarks/`` and
turns their JSON into a Markdown report and a chart (:mod:`edgewatch.bench.report`).
The measuring code lives here so the suites, the report and the CI floor
test (``tests/system/test_bench_floors.py``) share it.
"""
