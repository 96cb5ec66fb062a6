"""Benchmarks of edgewatch against real-time rates: engines, agent throughput, memory, latency.

``edgewatch bench`` runs the pytest-benchmark suites in ``benchmarks/`` and
turns their JSON into a Markdown report and a chart (:mod:`edgewatch.bench.report`).
The measuring code lives here so the suites and the report share it.
Speed is never asserted in the tests (a shared machine moves by 2×): it is
measured here, in benchmarks, and judged in the report.
"""
