"""The memory benchmark's page-cache readings and how the report splits the agent's peak."""

from __future__ import annotations

import os
from pathlib import Path

from edgewatch.bench.memory import large_folio_kib, library_cache_kib, smaps_by_mapping
from edgewatch.bench.report import check_targets, summarize, to_markdown


def test_library_cache_kib_sees_a_file_cached_and_then_dropped(tmp_path: Path) -> None:
    lib = tmp_path / "libfake.so"
    lib.write_bytes(os.urandom(1 << 20))
    os.sync()  # dirty pages cannot be dropped; written back they can
    cached, total = library_cache_kib([lib])
    assert total == 1024 and cached == 1024  # just written: all in the page cache
    fd = os.open(lib, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    assert library_cache_kib([lib]) == (0, 1024)
    assert library_cache_kib([tmp_path / "absent.so"]) == (0, 0)


def test_large_folio_kib_is_part_of_the_file_backed_memory() -> None:
    """None without root; otherwise no more than this process's resident file-backed pages."""
    large = large_folio_kib(os.getpid())
    if os.geteuid() == 0:
        assert large is not None
    if large is not None:
        file_backed = sum(v for k, v in smaps_by_mapping(os.getpid()).items() if not k.startswith("["))
        assert 0 <= large <= file_backed + 4096  # the two readings are moments apart


def test_rss_targets_say_what_is_the_agents_and_what_the_kernels() -> None:
    mem = {"rows": 200_000, "peak_rss_mib": 85.7, "rows_short": 20_000, "peak_rss_mib_short": 84.4,
           "first_score_s": 0.25, "file_backed_mib": 51.5, "anonymous_mib": 32.9, "large_folio_mib": 31.9,
           "libraries_cached_mib": 41.4, "libraries_mib": 636.0, "by_mapping_mib": {"[heap]": 16.1}}
    rss = {"max_rss_mib": 83.0, "hwm_mib": 84.0, "samples": 10, "messages": 20_000, "torch_mapped": False}
    results = summarize({"benchmarks": [{"extra_info": {"suite": "agent_memory", **mem}},
                                        {"extra_info": {"suite": "agent_rss", **rss}}]})
    targets = {t.name: t for t in check_targets(results)}
    note = targets["agent peak RSS, shipped S0 model, 200,000-row replay (VmHWM)"].note
    assert "over by 13.7 MiB" in note and "anonymous (the agent's) 32.9 MiB" in note
    assert "file-backed (library pages the kernel mapped) 51.5 MiB, 31.9 MiB of it in large page-cache folios" in note
    assert "anonymous (the agent's) 32.9 MiB" in targets["agent resident memory (edgewatch agent run, S0, replay)"].note
    report = to_markdown(results, chart_name=None)
    assert "32.9 MiB anonymous (the agent's own" in report
    assert "41.4 MiB stayed cached (pages that other processes map cannot be dropped)" in report
