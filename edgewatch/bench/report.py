"""pytest-benchmark JSON → the benchmark report: results JSON, Markdown and a PNG chart.

The suites in ``benchmarks/`` store their figures in each benchmark's
``extra_info`` (with a ``suite`` key); timing benchmarks of the engines
carry their own statistics. :func:`summarize` gathers both into one plain
dict, :func:`check_targets` judges it against the issue's targets (and
says by how much a missed one is missed), :func:`to_markdown` writes the
page and :func:`chart` the figure. Nothing here measures anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgewatch.files import replacing, write_bytes

ENGINES = ("torch-eager", "ort-fp32", "ort-int8")


@dataclass
class Target:
    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run
    note: str = ""


def summarize(raw: dict[str, Any], machine: dict[str, Any] | None = None) -> dict[str, Any]:
    """One plain dict of every figure in a pytest-benchmark JSON of the suites."""
    engines: list[dict[str, Any]] = []
    out: dict[str, Any] = {"machine": machine or {}, "datetime": raw.get("datetime"),
                           "commit": (raw.get("commit_info") or {}).get("id"), "engines": engines,
                           "ratios": [], "throughput": [], "profile": None, "capacity": None, "rss": None,
                           "latency": None, "agreement": None, "agent_vs_loop": None, "whole_process": None,
                           "s0_forms": [], "isolation_check": None}
    for bench in raw.get("benchmarks", []):
        info = bench.get("extra_info") or {}
        suite = info.get("suite")
        if suite == "engines":
            stats = bench["stats"]
            batch = int(info["batch"])
            engines.append({"model": info["model"], "family": info["family"], "engine": info["engine"],
                            "batch": batch, "median_s": stats["median"], "rounds": stats["rounds"],
                            "per_window_us": 1e6 * stats["median"] / batch,
                            "windows_per_s": batch / stats["median"], "int8": info.get("int8"),
                            "int8_nodes": info.get("int8_nodes")})
        elif suite == "engine_ratios":
            out["ratios"].append({k: v for k, v in info.items() if k != "suite"})
        elif suite == "agent_throughput":
            out["throughput"].append({k: v for k, v in info.items() if k != "suite"})
        elif suite == "agent_profile":
            out["profile"] = {k: v for k, v in info.items() if k != "suite"}
        elif suite == "agent_capacity":
            out["capacity"] = {k: v for k, v in info.items() if k != "suite"}
        elif suite == "agent_rss":
            out["rss"] = {k: v for k, v in info.items() if k != "suite"}
        elif suite == "agent_memory":
            out["memory"] = {k: v for k, v in info.items() if k != "suite"}
        elif suite == "alert_latency":
            out["latency"] = {k: v for k, v in info.items() if k != "suite"}
        elif suite == "agreement":
            out["agreement"] = {k: v for k, v in info.items() if k != "suite"}
        elif suite in ("agent_vs_loop", "whole_process", "isolation_check"):
            out[suite] = {k: v for k, v in info.items() if k != "suite"}
        elif suite == "s0_forms":
            out["s0_forms"].append({k: v for k, v in info.items() if k != "suite"})
        elif suite == "mqtt_source":
            out.setdefault("mqtt_source", []).append({k: v for k, v in info.items() if k != "suite"})
    engines.sort(key=lambda r: (r["model"], r["batch"], ENGINES.index(r["engine"])))
    out["s0_forms"].sort(key=lambda r: r["batch"])
    out["targets"] = [asdict(t) for t in check_targets(out)]
    return out


def _throughput(results: dict[str, Any], model: str, streams: int) -> dict[str, Any] | None:
    return next((t for t in results["throughput"] if t["model"] == model and t["streams"] == streams), None)


def loop_split(avl: dict[str, Any] | None) -> dict[str, dict[str, float]] | None:
    """Per run of the agent-vs-loop rounds: CPU µs per message, network µs per window and per message, the rest.

    ``ceiling`` (the agent's runs): the 64-window loop's CPU per message over
    the run's network cost per message, the ratio an agent whose own code
    cost nothing would reach.
    """
    if not avl:
        return None
    per_msg = float(avl["agent_windows_per_message"])
    loop64 = float(avl["cpu_us_per_message"]["loop_64"])
    out = {}
    for run, cpu in avl["cpu_us_per_message"].items():
        net = float(avl["model_us_per_window"][run])
        out[run] = {"cpu_us_per_message": cpu, "network_us_per_window": net, "network_us_per_message": net * per_msg,
                    "rest_us_per_message": cpu - net * per_msg, "ceiling": loop64 / (net * per_msg)}
    return out


def _ratio_target(name: str, goal: float, value: float | None, measured: str, note: str = "") -> Target:
    if value is None:
        return Target(name, f"≥ {goal:g}×", "not run", None)
    return Target(name, f"≥ {goal:g}×", measured, value >= goal,
                  note or ("" if value >= goal else f"short by {goal / value:.2f}×"))


def check_targets(results: dict[str, Any]) -> list[Target]:
    """The issue's targets, each met or missed, with the factor of a miss."""
    out: list[Target] = []
    ratios = results["ratios"]
    name = "ORT vs PyTorch eager at batch 1, every family (the form each family ships)"
    if ratios and all("shipped_vs_torch" in r for r in ratios):
        worst = min(ratios, key=lambda r: r["shipped_vs_torch"])
        v = worst["shipped_vs_torch"]
        each = ", ".join(f"{r['model']} ({r['shipped']}) {r['shipped_vs_torch']:.1f}×" for r in ratios)
        missed = [r["model"] for r in ratios if r["shipped_vs_torch"] < 3]
        out.append(Target(name, "≥ 3×", each, not missed,
                          "" if not missed else f"missed by {', '.join(missed)} (worst {worst['model']}: "
                          f"{3 / v:.2f}× short)"))
    else:
        out.append(Target(name, "≥ 3×", "not run", None))
    avl = results.get("agent_vs_loop")
    split = loop_split(avl)
    b = avl["agent_batch"] if avl else "?"
    forms = next((f for f in results.get("s0_forms") or []
                  if f["batch"] == f.get("agent_batch", avl and avl["agent_batch"])), None)
    name = "S0 network alone, ORT sentinel int8 vs PyTorch eager, at the agent's windows per call"
    if forms:
        us = forms["us_per_window"]
        v = us["torch-eager"] / us["sentinel-int8"]
        out.append(_ratio_target(f"{name} ({forms['batch']})", 2.5, v, f"{v:.2f}× ({us['sentinel-int8']:.0f} vs "
                                 f"{us['torch-eager']:.0f} µs/window, interleaved rounds in one process)"))
    else:
        out.append(Target(name, "≥ 2.5×", "not run", None))
    if split:
        for run, goal, what in (("loop_agent_batch", 1.5, f"at the agent's batch ({b})"),
                                ("loop_64", 1.2, "at batch 64")):
            v = split[run]["cpu_us_per_message"] / split["agent"]["cpu_us_per_message"]
            out.append(_ratio_target(f"whole agent vs plain PyTorch loop {what}, messages per CPU-second, 100 streams",
                                     goal, v, f"{v:.2f}× ({1e6 / split['agent']['cpu_us_per_message']:,.0f} vs "
                                     f"{1e6 / split[run]['cpu_us_per_message']:,.0f}, alternating rounds)"))
        v = split["agent_fp32"]["cpu_us_per_message"] / split["agent"]["cpu_us_per_message"]
        out.append(_ratio_target(
            f"isolated int8 agent vs the fp32 agent before issue 28 ({avl['fp32_batch']} windows a call), 100 streams",
            1.3, v, f"{v:.2f}× ({1e6 / split['agent']['cpu_us_per_message']:,.0f} vs "
            f"{1e6 / split['agent_fp32']['cpu_us_per_message']:,.0f} messages per CPU-second)"))
        rest = split["agent"]["rest_us_per_message"]
        out.append(Target("the agent's own cost (all but the network), 100 streams", "≤ 4 µs/message",
                          f"{rest:.1f} µs/message (network {split['agent']['network_us_per_message']:.1f})",
                          rest <= 4, "" if rest <= 4 else "issue 28 item 4, after the agent loop's restructuring "
                          f"(issue 25): over by {rest / 4:.2f}×"))
    else:
        out.append(Target("whole agent vs plain PyTorch loop", "≥ 1.5× / ≥ 1.2×", "not run", None))
        out.append(Target("isolated int8 agent vs the fp32 agent before issue 28", "≥ 1.3×", "not run", None))
    rss = results.get("rss")
    name = "agent peak RSS vs the PyTorch loop's"
    if rss and avl:
        v = rss["max_rss_mib"] / avl["loop_max_rss_mib"]
        out.append(Target(name, "≤ 1/3", f"{v:.2f} ({rss['max_rss_mib']:.0f} vs {avl['loop_max_rss_mib']:.0f} MiB)",
                          v <= 1 / 3, "" if v <= 1 / 3 else f"over by {v * 3:.2f}×"))
    else:
        out.append(Target(name, "≤ 1/3", "not run", None))
    wp = results.get("whole_process")
    name = ("whole processes, 200,000 JSON messages over 100 streams on stdin: agent vs PyTorch script "
            "(batches of 64), imports included")
    if wp:
        out.append(_ratio_target(name, 1.25, wp["ratio"], f"{wp['ratio']:.2f}× ({wp['agent_cpu_s']:.1f} vs "
                                 f"{wp['loop_cpu_s']:.1f} CPU s, medians of {len(wp['agent'])} alternating rounds)"))
    else:
        out.append(Target(name, "≥ 1.25×", "not run", None))
    mem = results.get("memory")
    name = "agent peak RSS, shipped S0 model, 200,000-row replay (VmHWM)"
    if mem and mem["rows"] >= 200_000:
        v = mem["peak_rss_mib"]
        out.append(Target(name, "≤ 72 MiB", f"{v:.1f} MiB ({mem['peak_rss_mib_short']:.1f} MiB at "
                          f"{mem['rows_short']:,} rows; first score {mem['first_score_s']:.2f} s after start)",
                          v <= 72, ("" if v <= 72 else f"over by {v - 72:.1f} MiB; ") + _memory_split(mem)))
    else:
        out.append(Target(name, "≤ 72 MiB", "not run (quick run: 50,000 rows)" if mem else "not run", None))
    ag = results.get("agreement")
    name = "sentinel int8 vs fp32 decisions (trained S0), nominal and faulty simulator windows"
    if ag:
        worst = min(ag["nominal_agreement"], ag["faulty_agreement"])
        out.append(Target(name, "≥ 99.5 % each", f"{ag['nominal_agreement']:.2%} of {ag['nominal_windows']:,} "
                          f"nominal, {ag['faulty_agreement']:.2%} of {ag['faulty_windows']:,} faulty; alerts "
                          f"{ag['alerts_int8']} vs {ag['alerts_fp32']}", worst >= 0.995,
                          "" if worst >= 0.995 else f"short by {0.995 - worst:.2%}"))
    else:
        out.append(Target(name, "≥ 99.5 % each", "not run", None))
    t = _throughput(results, "s0", 100)
    if t:
        wall, cpu = t["messages_per_s"], 1e6 / t["cpu_us_per_message"]
        met = cpu >= 50_000
        out.append(Target("agent messages/s, 100 streams, window 10, stride 3 (S0, shipped form)", "≥ 50,000/s",
                          f"{cpu:,.0f}/s per CPU-second ({wall:,.0f}/s wall)", met,
                          "" if met else f"missed by {50_000 / cpu:.2f}× (see where the time goes)"))
    else:
        out.append(Target("agent messages/s, 100 streams", "≥ 50,000/s", "not run", None))
    mq = next((m for m in results.get("mqtt_source", []) if m["form"] == "json" and m["model"] == "trivial"), None)
    name = "MQTT source intake, loopback mosquitto, QoS 1, JSON (trivial model: the intake's own cost)"
    if mq:
        cpu, wall = mq["messages_per_cpu_s"], mq["messages_per_s"]
        out.append(Target(name, "≥ 10,000/s", f"{cpu:,.0f}/s per CPU-second ({wall:,.0f}/s wall)", cpu >= 10_000,
                          "" if cpu >= 10_000 else f"missed by {10_000 / cpu:.2f}×"))
    else:
        out.append(Target(name, "≥ 10,000/s", "not run", None))
    if rss:
        v = rss["max_rss_mib"]
        split = f"; of a like peak: {_memory_split(mem)}" if mem else ""
        out.append(Target("agent resident memory (edgewatch agent run, S0, replay)", "≤ 80 MiB", f"{v:.0f} MiB",
                          v <= 80, ("" if v <= 80 else f"over by {v - 80:.0f} MiB ({v / 80:.2f}×)") + split))
    else:
        out.append(Target("agent resident memory", "≤ 80 MiB", "not run", None))
    lat = results.get("latency")
    if lat:
        v = lat["p99_ms"]
        out.append(Target("message-to-alert p99 at 1,000 msg/s, loopback websocket", "≤ 2 ms",
                          f"{v:.1f} ms (p50 {lat['p50_ms']:.1f} ms)", v <= 2,
                          "" if v <= 2 else f"missed by {v / 2:.1f}×"))
    else:
        out.append(Target("message-to-alert p99", "≤ 2 ms", "not run", None))
    return out


def _fmt_us(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def to_markdown(results: dict[str, Any], chart_name: str | None = "bench.png") -> str:
    """The report page: machine, targets, engines, agent figures, where the time goes."""
    m = results.get("machine") or {}
    lines = ["# edgewatch benchmarks", ""]
    load = {k: ", ".join(f"{x:.1f}" for x in m.get(k, [])) or "?" for k in ("load_average_start", "load_average")}
    lines.append(f"Run {results.get('datetime') or '?'} on **{m.get('cpu', '?')}**, {m.get('cores', '?')} cores, "
                 f"int8 kernel path **{m.get('int8_path', '?')}** (from the CPU flags), load average "
                 f"{load['load_average_start']} at the start and {load['load_average']} at the end (1, 5, 15 min), "
                 f"Python {m.get('python', '?')}, ONNX Runtime {m.get('onnxruntime', '?')}, "
                 f"torch {m.get('torch', '?')}, NumPy {m.get('numpy', '?')}"
                 + (f", commit `{str(results['commit'])[:10]}`" if results.get("commit") else "") + ".")
    lines += ["", "Every engine runs on one thread (PyTorch `set_num_threads(1)`, ONNX Runtime one intra-op "
              "thread, no spinning), on the calling thread. Times are CPU time (`time.process_time` / "
              "`time.thread_time`), not wall time: the machine is shared, and waiting for a turn on the CPU "
              "is not the engine's cost. Absolute times still move between runs, so the claims are ratios "
              "measured in the same run.", ""]
    lines += ["## Targets", "", "| target | goal | measured | | note |", "|---|---|---|---|---|"]
    for t in results["targets"]:
        mark = {True: "met", False: "**missed**", None: "not run"}[t["met"]]
        lines.append(f"| {t['name']} | {t['goal']} | {t['measured']} | {mark} | {t['note']} |")
    if chart_name:
        lines += ["", f"![per-window latency by engine]({chart_name})"]
    if results["ratios"]:
        lines += ["", "## Engines: speed-up at batch 1 (interleaved rounds, median CPU time)", "",
                  "| model | int8 mode (quantized nodes) | PyTorch | ORT fp32 | ORT int8 | int8 vs PyTorch "
                  "| int8 vs fp32 | fp32 vs PyTorch |", "|---|---|---|---|---|---|---|---|"]
        for r in results["ratios"]:
            s = r["seconds_per_window"]
            lines.append(f"| {r['model']} | {r['int8']} ({r['int8_nodes']}) | {_fmt_us(1e6 * s['torch-eager'])} "
                         f"| {_fmt_us(1e6 * s['ort-fp32'])} | {_fmt_us(1e6 * s['ort-int8'])} "
                         f"| {r['int8_vs_torch']:.2f}× | {r['int8_vs_fp32']:.2f}× | {r['fp32_vs_torch']:.2f}× |")
    if results["engines"]:
        lines += ["", "## Engines: per-window CPU time and throughput (pytest-benchmark medians)", "",
                  "| model | batch | PyTorch eager | ORT fp32 | ORT int8 | int8 windows per CPU-second |", "|---|---|---|---|---|---|"]
        by: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
        for r in results["engines"]:
            by.setdefault((r["model"], r["batch"]), {})[r["engine"]] = r
        for (model, batch), row in by.items():
            cells = [_fmt_us(row[e]["per_window_us"]) if e in row else "–" for e in ENGINES]
            wps = f"{row['ort-int8']['windows_per_s']:,.0f}" if "ort-int8" in row else "–"
            lines.append(f"| {model} | {batch} | " + " | ".join(cells) + f" | {wps} |")
        lines += ["", "Per window = time of one call / batch. Models: full-size architectures with random "
                  "weights (speed does not depend on what they learnt), exported with `export_model`; int8 "
                  "is each family's int8 form (sentinel int8 for the LSTM-AE, dynamic for the RNN-AE, which "
                  "reaches only the first decoder step's MatMul outside the Loop, static QDQ for the CNNs); "
                  "the targets judge the form each family ships."]
    lines += _agent_sections(results)
    return "\n".join(lines) + "\n"


def _agent_sections(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if results["throughput"]:
        lines += ["", "## Agent throughput (raw JSON through `Agent.process`, window 10, stride 3)", "",
                  "| model | streams | messages/s (wall) | CPU µs/message | messages per CPU-second |",
                  "|---|---|---|---|---|"]
        for t in sorted(results["throughput"], key=lambda t: (t["model"], t["streams"])):
            lines.append(f"| {t['model']} | {t['streams']} | {t['messages_per_s']:,.0f} | "
                         f"{t['cpu_us_per_message']:.1f} | {1e6 / t['cpu_us_per_message']:,.0f} |")
        lines += ["", "`trivial` is a one-operation model of the same shape: it shows what the agent's own "
                  "Python (parse, windows, episodes, drift watch) costs without a neural network. "
                  "Wall figures include waiting for the shared CPU; CPU figures do not."]
    lines += _s0_sections(results)
    if results.get("mqtt_source"):
        lines += ["", "## MQTT source intake (queued QoS 1 messages taken by a starting agent, loopback mosquitto)",
                  "", "| payload | model | messages/s (wall) | messages per CPU-second | windows per ORT call |",
                  "|---|---|---|---|---|"]
        for m in sorted(results["mqtt_source"], key=lambda m: (m["form"], m["model"])):
            lines.append(f"| {m['form']} | {m['model']} | {m['messages_per_s']:,.0f} | "
                         f"{m['messages_per_cpu_s']:,.0f} | {m['windows_per_call']:.1f} |")
    prof = results.get("profile")
    if prof and prof.get("stages"):
        agent = _throughput(results, "s0", 100)
        per = agent["cpu_us_per_message"] if agent else None
        lines += ["", "### Per-message cost by stage (cProfile shares, 100 streams)", "",
                  "| stage | share | µs per message |", "|---|---|---|"]
        for stage, share in prof["stages"].items():
            lines.append(f"| {stage} | {share:.1%} | {share * per:.1f} |" if per else f"| {stage} | {share:.1%} | – |")
        lines += ["", "Shares from one profiled run, scaled to the unprofiled CPU time per message of the "
                  "100-stream throughput run; built-in and NumPy calls count for the stage that called them. "
                  "The benchmark's sink only counts events (no I/O)."]
    if prof:
        lines += ["", f"### Where the time goes (cProfile, 100 streams, {prof['messages']:,} messages)", "",
                  "| function | calls | own time | incl. callees |", "|---|---|---|---|"]
        for r in prof["top"][:10]:
            lines.append(f"| `{r['function']}` | {r['calls']:,} | {r['own_share']:.1%} | {r['cum_share']:.1%} |")
    cap = results.get("capacity")
    if cap:
        p = cap["paced"]
        lines += ["", "## Streams per core", "",
                  f"CPU cost {cap['cpu_us_per_message']:.1f} µs per message (100 streams, S0 stream-isolated) → "
                  f"**{cap['streams']:,} streams at 20 Hz** hold one core at 50 % (0.5 / (20 × cost)). "
                  f"Paced check: {p['streams']:,} streams fed at 20 Hz for {p['seconds']:.1f} s used "
                  f"{p['cpu_share']:.0%} CPU ({p['late_ticks']} of {p['ticks']} ticks finished after the next "
                  "was due: on a loaded machine the wall clock includes waiting for the CPU)."]
    rss = results.get("rss")
    if rss:
        lines += ["", "## Agent memory", "",
                  f"`edgewatch agent run` (S0 stream-isolated, CSV replay of {rss['messages']:,} rows, JSONL sink): "
                  f"peak resident memory **{rss['max_rss_mib']:.0f} MiB** (VmHWM {rss['hwm_mib']:.0f} MiB, "
                  f"{rss['samples']} samples from /proc); libtorch mapped: {rss['torch_mapped']}."]
    mem = results.get("memory")
    if mem:
        where = ", ".join(f"{k} {v:.1f}" for k, v in list(mem["by_mapping_mib"].items())[:6])
        lines += ["", "## Agent memory with the shipped model", "",
                  f"`edgewatch agent run` with models/equipment-lstm-ae.onnx on a {mem['rows']:,}-row replay at full "
                  f"speed: peak **{mem['peak_rss_mib']:.1f} MiB** ({mem['peak_rss_mib_short']:.1f} MiB at "
                  f"{mem['rows_short']:,} rows); at its largest sample {mem['anonymous_mib']:.1f} MiB anonymous "
                  "(the agent's own: Python objects, malloc, ONNX Runtime's buffers) and "
                  f"{mem['file_backed_mib']:.1f} MiB file-backed (clean pages of shared libraries, mapped by the "
                  f"kernel around the pages the agent touches; shared, and dropped under pressure); "
                  f"by mapping (MiB): {where}. First score {mem['first_score_s']:.2f} s after start.",
                  "", _page_cache_note(mem)]
    lat = results.get("latency")
    if lat:
        lines += ["", "## Message-to-alert latency", "",
                  f"Simulator (`--with-time --send-time`, {lat['rate_hz']:,.0f} msg/s) and agent "
                  "(`--sink stdout --k 1 --n 1`, "
                  f"threshold at the median nominal score so alerts are frequent) as two processes on loopback "
                  f"websocket, {lat['seconds']:.0f} s, {lat['events']} alert events: p50 **{lat['p50_ms']:.1f} ms**, "
                  f"p90 {lat['p90_ms']:.1f} ms, p99 **{lat['p99_ms']:.1f} ms**, max {lat['max_ms']:.1f} ms "
                  f"(send time in the message to arrival of the alert line; agent RSS "
                  f"{lat['agent_max_rss_mib']:.0f} MiB)."]
    ag = results.get("agreement")
    if ag:
        lines += ["", "## Sentinel int8 vs fp32 decisions (trained S0 LSTM-AE)", "",
                  f"Simulator windows (window 10, stride 3): {ag['nominal_windows']:,} nominal, same decision on "
                  f"**{ag['nominal_agreement']:.2%}**; {ag['faulty_windows']:,} overlapping an injected fault, "
                  f"same decision on **{ag['faulty_agreement']:.2%}** (over the threshold: fp32 {ag['over_fp32']}, "
                  f"int8 {ag['over_int8']}). Alerts (episode starts) on a faulty stream: fp32 {ag['alerts_fp32']}, "
                  f"int8 {ag['alerts_int8']}, matched within one window: {ag['alert_agreement']:.1%}."]
    iso = results.get("isolation_check")
    if iso:
        cost = ", ".join(f"{k} {v:.1f} ms" for k, v in iso["cpu_ms"].items())
        lines += ["", "## The agent's load-time isolation check", "",
                  f"Every model load runs {iso['calls']} ONNX Runtime calls on {iso['windows']} windows (probes alone, "
                  f"beside extreme companions, at other batch sizes) on this CPU's {iso['int8_path']} kernels: "
                  f"median CPU time {cost}; largest difference "
                  + ", ".join(f"{k} {v:.2g}" for k, v in iso["max_rel_diff"].items()) + " (allowed 1e-5)."]
    return lines


def _s0_sections(results: dict[str, Any]) -> list[str]:
    """The S0 network's forms, the agent against the PyTorch loop, and whole processes."""
    lines: list[str] = []
    forms = results.get("s0_forms") or []
    if forms:
        names = list(forms[0]["us_per_window"])
        lines += ["", "## The S0 network alone, each form (trained weights, one thread, interleaved rounds)", "",
                  "| batch | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for r in forms:
            lines.append(f"| {r['batch']} | " + " | ".join(_fmt_us(r["us_per_window"][n]) for n in names) + " |")
        lines += ["", "CPU time per window. sentinel-int8 ships; dynamic-int8 is the same fused kernel without "
                  "sentinels (one window's values set every other window's scale: the agent refuses it)."]
    avl = results.get("agent_vs_loop")
    split = loop_split(avl)
    if avl and split:
        label = {"loop_agent_batch": f"PyTorch loop, {avl['agent_batch']} windows a call",
                 "loop_64": "PyTorch loop, 64 windows a call",
                 "agent": f"agent, sentinel int8 (ships), {avl['agent_batch']} a call",
                 "agent_fp32": f"agent, fp32 as before issue 28, {avl['fp32_batch']} a call"}
        lines += ["", "## The agent and the plain PyTorch loop (same messages, alternating rounds)", "",
                  f"100 streams, {avl['messages']:,} raw JSON messages, window 10, stride 3, medians of "
                  f"{avl['rounds']} rounds. The loop: one torch thread, `json.loads` per message, a `deque` "
                  "window per stream, windows scored under `torch.inference_mode()`, no episodes or sinks, its "
                  f"own process (peak RSS {avl['loop_max_rss_mib']:.0f} MiB).", "",
                  "| run | CPU µs/message | messages per CPU-second | network µs/window | network µs/message "
                  "| the rest, µs/message | ceiling |", "|---|---|---|---|---|---|---|"]
        for run, r in split.items():
            ceiling = f"{r['ceiling']:.2f}×" if run.startswith("agent") else "–"
            lines.append(f"| {label.get(run, run)} | {r['cpu_us_per_message']:.1f} | "
                         f"{1e6 / r['cpu_us_per_message']:,.0f} | {r['network_us_per_window']:.0f} | "
                         f"{r['network_us_per_message']:.1f} | {r['rest_us_per_message']:.1f} | {ceiling} |")
        lines += ["", "The two agents take turns batch by batch in one process; the loop runs in its own process "
                  "between them. The network is timed inside each engine's calls (ORT `run`; the torch module's "
                  "forward), in the context of each program (caches shared with its Python), so it reads a "
                  "little slower than in the interleaved table of the network alone above. *The rest*: parsing, "
                  "windows, post-processing, episodes, drift watch (the loop: parsing, "
                  "deques, tensor building). *Ceiling*: the 64-window loop's CPU per message over the agent's "
                  "network per message, what an agent whose own code cost nothing would reach."]
    wp = results.get("whole_process")
    if wp:
        def row(name: str, runs: list[dict[str, float]]) -> str:
            cpu = sorted(r["cpu_seconds"] for r in runs)
            wall = sorted(r["wall_seconds"] for r in runs)
            rss = max(r["peak_rss_mib"] for r in runs)
            return (f"| {name} | {cpu[len(cpu) // 2]:.2f} ({', '.join(f'{c:.2f}' for c in cpu)}) | "
                    f"{wall[len(wall) // 2]:.1f} | {wp['messages'] / cpu[len(cpu) // 2]:,.0f} | {rss:.0f} MiB |")

        lines += ["", "## Whole processes on stdin", "",
                  f"{wp['messages']:,} JSON messages over {wp['streams']} streams piped into each program; CPU time "
                  "of the whole process (imports, model load and exit included), alternating rounds; peak RSS "
                  f"with a warm page cache. Ratio **{wp['ratio']:.2f}×**.", "",
                  "| program | CPU s, median (rounds) | wall s | messages per CPU-second | peak RSS |",
                  "|---|---|---|---|---|", row("edgewatch agent run --source stdin (sentinel int8)", wp["agent"]),
                  row(f"PyTorch script, batches of {wp['loop_batch']}", wp["loop"])]
    return lines


def chart(results: dict[str, Any], path: Path) -> Path:
    """Per-window latency of every model and engine at batch 1 and 64 (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = results["engines"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, batch in zip(axes, (1, 64)):
        models = sorted({r["model"] for r in rows if r["batch"] == batch})
        x = np.arange(len(models))
        for i, engine in enumerate(ENGINES):
            vals = [next((r["per_window_us"] for r in rows if r["model"] == m and r["batch"] == batch
                          and r["engine"] == engine), np.nan) for m in models]
            ax.bar(x + (i - 1) * 0.27, vals, 0.27, label=engine)
        ax.set_xticks(x, models, rotation=20)
        ax.set_yscale("log")
        ax.set_ylabel("CPU µs per window (median)")
        ax.set_title(f"batch {batch}")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    cpu = (results.get("machine") or {}).get("cpu", "")
    fig.suptitle(f"edgewatch engines, one thread ({cpu})")
    fig.tight_layout()
    with replacing(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)


def write_report(raw_json: Path, out_dir: Path, machine: dict[str, Any] | None = None) -> dict[str, Path]:
    """Read pytest-benchmark's JSON and write ``results.json``, ``report.md`` and ``bench.png``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = summarize(json.loads(Path(raw_json).read_text()), machine)
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "report.md", "chart": out_dir / "bench.png"}
    write_bytes(paths["json"], json.dumps(results, indent=2).encode())
    has_chart = bool(results["engines"])
    if has_chart:
        chart(results, paths["chart"])
    else:
        del paths["chart"]
    write_bytes(paths["markdown"], to_markdown(results, "bench.png" if has_chart else None).encode())
    return paths


def _memory_split(mem: dict[str, Any]) -> str:
    """The RSS target's note: the code's part and the kernel's mapping of library pages."""
    text = (f"anonymous (the agent's) {mem['anonymous_mib']:.1f} MiB, file-backed (library pages the kernel "
            f"mapped) {mem['file_backed_mib']:.1f} MiB")
    if mem.get("large_folio_mib") is not None:
        text += f", {mem['large_folio_mib']:.1f} MiB of it in large page-cache folios"
    return text


def _page_cache_note(mem: dict[str, Any]) -> str:
    """What the page cache's state, not the agent, decided of the file-backed part."""
    if "libraries_mib" not in mem:  # results from before these fields
        return ("How much of a library a fault maps depends on the page cache (folio sizes, pages other "
                "processes keep cached): edgewatch/bench/memory.py has the measurements.")
    text = (f"Before the run the benchmark dropped the cached pages of the environment's libraries "
            f"({mem['libraries_mib']:.0f} MiB of files); {mem['libraries_cached_mib']:.1f} MiB stayed cached "
            "(pages that other processes map cannot be dropped).")
    if mem.get("large_folio_mib") is not None:
        text += (f" {mem['large_folio_mib']:.1f} MiB of the agent's file-backed pages lay in large page-cache "
                 "folios, which a fault maps whole (Linux 6.18).")
    return text + (" The file-backed part is therefore the page cache's state as much as the agent's: "
                   "docs/benchmarks.md measures it with the libraries read in from disk.")
