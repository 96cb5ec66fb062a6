"""Running the agent as a service: metrics, health endpoints, logs, systemd, the run record.

Nothing here scores: it reads the agent's counters (:mod:`metrics`), serves
``/metrics``, ``/livez``, ``/readyz`` (:mod:`server`), sets up logging, talks
to systemd, and records a run for ``edgewatch plot`` (:mod:`recorder`).
prometheus_client and http.server are imported only when ``--metrics`` is
given. May import the agent's engine types and sinks' readiness; nothing
imports this package but the assembly, the engine (metrics) and the CLI.
"""
