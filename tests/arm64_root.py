"""An arm64 Python with the agent's dependencies, run under qemu user-mode emulation.

Edge boxes are mostly arm64; this machine is x86-64 without binfmt_misc, so
the arm64 interpreter is started explicitly:
``qemu-aarch64-static -cpu neoverse-n1 -L ROOT ROOT/usr/bin/python3.11``.

- ROOT: Debian 12 arm64 packages (python3.11, libstdc++6 for ONNX Runtime and
  their dependencies, about 40 packages) fetched by ``apt-get`` with a private
  configuration and state (architecture arm64, an empty dpkg status) and
  unpacked with ``dpkg-deb -x``: the host's dpkg and APT lists are untouched.
- SITE: PyPI's aarch64 wheels of the agent's dependencies at the versions the
  host runs (so both sides execute the same library code), fetched with
  ``pip download --platform``, which needs every manylinux tag listed.
- ``ROOT/proc/cpuinfo``: qemu 7.2 passes the host's x86 ``/proc/cpuinfo``
  through and ``import onnxruntime`` then segfaults; qemu opens paths under
  ``-L ROOT`` first, so a fake aarch64 cpuinfo there fixes it. It must match
  ``-cpu`` (neoverse-n1; the default ``max`` runs 7x slower).

Everything is cached under ``$EDGEWATCH_ARM64_CACHE`` (default
``~/.cache/edgewatch-arm64``), in a folder named by a hash of what it holds,
built beside it and renamed into place, under a lock. Fails with the command
that failed when a registry cannot be reached.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

CHECKOUT = Path(__file__).resolve().parents[1]
QEMU = "qemu-aarch64-static"
QEMU_CPU = "neoverse-n1"
DEBIAN_PACKAGES = ("python3.11", "libstdc++6")
DEBIAN_SOURCES = (
    "http://deb.debian.org/debian bookworm main",
    "http://deb.debian.org/debian bookworm-updates main",
    "http://deb.debian.org/debian-security bookworm-security main",
)
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# glibc of Debian 12 is 2.36: every manylinux tag up to it, plus the legacy alias
PLATFORM_TAGS = ("manylinux2014_aarch64", *(f"manylinux_2_{m}_aarch64" for m in range(17, 37)), "any")
# What `cat /proc/cpuinfo` shows on a Neoverse-N1 (AWS Graviton2), one core is enough for ORT.
CPUINFO = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1

"""


class SetupFailed(RuntimeError):
    """A step of the set-up failed; the message holds the command and its output."""


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEWATCH_ARM64_CACHE") or Path.home() / ".cache" / "edgewatch-arm64")


def agent_requirements() -> list[str]:
    """The base dependencies of pyproject.toml, pinned to the versions installed on the host."""
    project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]
    pins = []
    for spec in project["dependencies"]:
        name = Requirement(spec).name
        pins.append(f"{name}=={metadata.version(name)}")
    return sorted(pins)


@dataclass(frozen=True)
class Arm64Python:
    """A ready arm64 interpreter: ``command()`` starts it under qemu."""

    root: Path
    site: Path
    setup_seconds: float  # 0.0 when taken from the cache

    def command(self, *args: str) -> list[str]:
        return [QEMU, "-cpu", QEMU_CPU, "-L", str(self.root), str(self.root / "usr/bin/python3.11"), *args]

    def env(self) -> dict[str, str]:
        """PYTHONPATH: the aarch64 wheels, then this checkout (edgewatch is pure Python)."""
        keep = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        return {**keep, "PYTHONPATH": f"{self.site}{os.pathsep}{CHECKOUT}", "PYTHONNOUSERSITE": "1",
                "PYTHONHASHSEED": "0"}


def _run(cmd: list[str], timeout: float = 600) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise SetupFailed(f"timed out after {timeout:.0f} s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        raise SetupFailed(f"exit {proc.returncode}: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _apt_options(apt: Path) -> list[str]:
    """A private APT: own sources, lists, archives and an empty dpkg status, architecture arm64."""
    return [f"-oDir::Etc={apt}/etc", f"-oDir::Etc::SourceList={apt}/etc/sources.list",
            f"-oDir::Etc::SourceParts={apt}/etc/sources.list.d", f"-oDir::Etc::Parts={apt}/etc/apt.conf.d",
            f"-oDir::Etc::PreferencesParts={apt}/etc/preferences.d", f"-oDir::State={apt}/state",
            f"-oDir::State::Lists={apt}/state/lists", f"-oDir::State::status={apt}/state/status",
            f"-oDir::Cache={apt}/cache", f"-oDir::Cache::archives={apt}/archives",
            "-oAPT::Architecture=arm64", "-oAPT::Architectures::=arm64", "-oDebug::NoLocking=1",
            "-oAcquire::Retries=3", "-oAPT::Install-Recommends=0"]


def _fetch_debs(apt: Path) -> list[Path]:
    for sub in ("etc/sources.list.d", "etc/apt.conf.d", "etc/preferences.d", "state/lists/partial",
                "cache", "archives/partial"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "state/status").write_text("")
    (apt / "etc/sources.list").write_text(
        "".join(f"deb [arch=arm64 signed-by={KEYRING}] {src}\n" for src in DEBIAN_SOURCES))
    opts = _apt_options(apt)
    _run(["apt-get", *opts, "-q", "update"])
    _run(["apt-get", *opts, "-q", "-y", "--download-only", "install", *DEBIAN_PACKAGES])
    debs = sorted((apt / "archives").glob("*.deb"))
    if not debs:
        raise SetupFailed("apt-get downloaded no package")
    return debs


def _fetch_wheels(wheels: Path, requirements: list[str]) -> None:
    tags = [a for t in PLATFORM_TAGS for a in ("--platform", t)]
    _run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", str(wheels),
          "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
          *tags, *requirements])


def _install_wheels(wheels: Path, site: Path, requirements: list[str]) -> None:
    tags = [a for t in PLATFORM_TAGS for a in ("--platform", t)]
    _run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
          "--find-links", str(wheels), "--target", str(site), "--only-binary=:all:", "--python-version", "3.11",
          "--implementation", "cp", "--abi", "cp311", *tags, *requirements])


def _build(dest: Path, requirements: list[str], downloads: Path) -> None:
    root, site = dest / "root", dest / "site"
    for deb in _fetch_debs(dest / "apt"):
        _run(["dpkg-deb", "-x", str(deb), str(root)])
    shutil.rmtree(dest / "apt")
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc/cpuinfo").write_text(CPUINFO)
    _fetch_wheels(downloads / "wheels", requirements)
    _install_wheels(downloads / "wheels", site, requirements)


def ensure_arm64_python() -> Arm64Python:
    """The cached arm64 interpreter, built first when missing (about a minute, needs the registries)."""
    if shutil.which(QEMU) is None:
        raise SetupFailed(f"{QEMU} not found: install the Debian package qemu-user-static (make system-deps)")
    requirements = agent_requirements()
    key = hashlib.sha256(json.dumps([DEBIAN_PACKAGES, DEBIAN_SOURCES, PLATFORM_TAGS, requirements,
                                     CPUINFO]).encode()).hexdigest()[:16]
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    dest = base / key
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (dest / "ready").is_file():
            return Arm64Python(dest / "root", dest / "site", 0.0)
        t0 = time.perf_counter()
        tmp = base / f"{key}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        _build(tmp, requirements, base / "downloads")
        (tmp / "ready").write_text(json.dumps({"requirements": requirements, "debian": DEBIAN_PACKAGES}) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        for old in base.iterdir():  # earlier keys: other dependency versions
            if old.is_dir() and old.name not in (key, "downloads"):
                shutil.rmtree(old, ignore_errors=True)
        return Arm64Python(dest / "root", dest / "site", time.perf_counter() - t0)
