"""Older model files keep working: a card's properties are brought to the current format before it is read.

Files outlive the code that wrote them. :data:`UPGRADES` holds one step per
format version this edgewatch reads; a card of an older version passes
every later step (a no-op today: there is one version). A card of a newer
version is read as far as this version knows it, with a warning naming
what was left out, and refused only when what is left cannot run (a field
missing, a post-process kind unknown). anomalib's deploy metadata migration
is the precedent.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from edgewatch.errors import BadModelFile

FORMAT_VERSION = 1

Props = dict[str, str]  # a card's ``edgewatch.*`` properties, prefix removed


def _unchanged(props: Props) -> Props:
    return props


# Every format version this edgewatch reads -> the step that turns a card of that version into one of the
# next version (the current version's step changes nothing). A format change adds the new version with
# ``_unchanged`` and gives the old one its real step, so a card of any version passes every later step.
UPGRADES: dict[int, Callable[[Props], Props]] = {1: _unchanged}


def upgrade(props: Props, source: str = "model") -> tuple[Props, list[str]]:
    """A card's properties in the current format, and warnings for what a newer format had beyond it.

    BadModelFile for a version that is not a whole number or is older than
    any this edgewatch reads.
    """
    text = props.get("format_version", str(FORMAT_VERSION))
    try:
        version = int(text)
    except ValueError:
        raise BadModelFile(f"{source} has model format version {text!r}, not a whole number") from None
    if version > FORMAT_VERSION:
        from edgewatch.contract.card import ModelCard  # lazy: the card reads its props through this

        known = {f.name for f in dataclasses.fields(ModelCard)}
        extra = sorted(set(props) - known)
        return {k: v for k, v in props.items() if k in known}, [
            f"model format version {version} is newer than this edgewatch's ({FORMAT_VERSION}): read as "
            f"version {FORMAT_VERSION}" + (f", ignoring {extra}" if extra else "") + "; upgrade edgewatch to "
            "read all of it"]
    if version not in UPGRADES:
        raise BadModelFile(f"{source} has model format version {version}; this edgewatch reads versions "
                           f"{min(UPGRADES)} to {FORMAT_VERSION}: re-export it")
    for step in range(version, FORMAT_VERSION + 1):
        props = UPGRADES[step](dict(props))
    return {**props, "format_version": str(FORMAT_VERSION)}, []
