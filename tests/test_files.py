"""Atomic writes: readers see the whole old file or the whole new one, with ordinary permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edgewatch.files import replacing, write_bytes


def test_replacing_moves_the_file_in_with_ordinary_permissions(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "model.onnx"
    old = os.umask(0o022)
    try:
        write_bytes(target, b"new")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not mkstemp's 0600: a service account can read it
    assert [p.name for p in target.parent.iterdir()] == ["model.onnx"]


def test_a_failed_write_leaves_the_old_file_and_no_debris(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_the_suffix_is_kept_for_writers_that_need_it(tmp_path: Path) -> None:
    with replacing(tmp_path / "scores.npz", suffix=".npz") as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "scores.npz").read_bytes() == b"x"
