"""The agent's per-message cost split into its stages, from one cProfile run.

Stages are named by the module that holds them (parse: ``parsing.py``,
``columns.py`` and the json decoder; windows: ``windows.py``; model: ``model.py`` and the ONNX
Runtime call; post-process, episodes, drift watch, sinks, events; the rest
is the engine loop). Built-in and NumPy functions have no module of ours,
so their own time goes to the stage of whoever called them (in proportion
to the calls' time). cProfile slows Python code more than native code, so
the shares are scaled to the CPU time per message measured without the
profiler; they show where the time goes, not exact microseconds.
"""

from __future__ import annotations

import cProfile
import pstats
from pathlib import Path

STAGE_FILES: dict[str, tuple[str, ...]] = {
    "parse": ("agent/sources/parsing.py", "agent/sources/columns.py", "json/decoder.py", "json/__init__.py"),
    "windows": ("agent/windows.py",),
    "model": ("agent/model.py",),
    "post-process": ("agent/postprocess/",),
    "episodes": ("agent/episodes.py",),
    "drift watch": ("agent/watch/drift_watch.py", "drift/"),
    "sinks": ("agent/sinks/", "agent/events.py", "bench/agent_load.py"),
    "engine loop": ("agent/engine.py", "agent/streams.py", "agent/runtime.py", "agent/score_scale.py", "agent/ops/metrics.py"),
}
STAGES = tuple(STAGE_FILES)


def _own_stage(key: tuple[str, int, str]) -> str | None:
    file = key[0].replace("\\", "/")
    for stage, parts in STAGE_FILES.items():
        if any(file.endswith(p) or f"/{p}" in file for p in parts):
            return stage
    return None


def stage_shares(profile: cProfile.Profile) -> dict[str, float]:
    """Share of the profiled time spent in each stage (they sum to 1)."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    memo: dict[tuple, dict[str, float]] = {}

    def split(key: tuple, depth: int = 0) -> dict[str, float]:
        """How a function's own time divides among the stages (its own, or its callers')."""
        if key in memo:
            return memo[key]
        own = _own_stage(key)
        if own is not None or depth > 6 or key not in stats:
            result = {own or "engine loop": 1.0}
        else:
            callers = stats[key][4]
            total = sum(v[2] for v in callers.values()) or 0.0
            result = {}
            for caller, v in callers.items():
                weight = v[2] / total if total else 1.0 / len(callers)
                for stage, share in split(caller, depth + 1).items():
                    result[stage] = result.get(stage, 0.0) + weight * share
            if not result:
                result = {"engine loop": 1.0}
        memo[key] = result
        return result

    times = dict.fromkeys(STAGES, 0.0)
    for key, (_cc, _nc, tottime, _ct, _callers) in stats.items():
        for stage, share in split(key).items():
            times[stage] += tottime * share
    total = sum(times.values()) or 1.0
    return {stage: t / total for stage, t in times.items()}


def top_functions(profile: cProfile.Profile, n: int = 12) -> list[dict]:
    """The functions with the most own time, as report rows."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values()) or 1.0
    rows = []
    for (file, line, func), (_cc, calls, tottime, cumtime, _callers) in stats.items():
        where = f"{Path(file).name}:{line}({func})" if file != "~" else func
        rows.append({"function": where, "calls": calls, "own_share": tottime / total, "cum_share": cumtime / total})
    rows.sort(key=lambda r: -r["own_share"])
    return rows[:n]
