"""Which model feature a name on the wire means, when the plant spells it another way than its CSV header.

A model fitted on a historian's export knows its features by the CSV
headers (``Volume Flow RateRMS``, ``Pressure (bar)``, ``FIT-101.PV``); the
same plant's gateway publishes ``volume_flow_raterms``, ``Pressure``,
``fit-101-pv`` or ``Volume%20Flow%20RateRMS``. The rule, in three tiers, the
first that gives an answer wins:

1. the name itself;
2. the name's *key*: URL escapes decoded, case folded, and spaces, ``_``,
   ``-``, ``.``, ``/`` and brackets dropped, equal to exactly one feature's
   key (``pressure_bar`` is ``Pressure (bar)``). A separator between two
   digits is kept (as one mark), so ``TT-1-10`` and ``TT-11-0`` stay two
   names;
3. the key without a unit in brackets at the end (``(bar)``, ``[°C]``),
   equal to exactly one feature's key without its unit, when at most one
   of the two names has a unit: ``Pressure`` is ``Pressure (bar)`` and
   ``Temp [°C]`` is ``Temp``, but ``Pressure (psi)`` is never
   ``Pressure (bar)`` nor ``Temp [°F]`` ``Temp [°C]`` (another unit, or
   another bracketed part, ``Flow (Line 2)``, is another quantity).
   Brackets holding a number alone are an index, not a unit: ``Flow (2)``
   is never ``Flow``.

A name whose key two features share is never guessed: it means no feature
(``unknown_feature`` where the source counts that) and the log says which
features it could be. Every name matched by tier 2 or 3 is logged once, so
the operator can see what was taken for what.

The other way round, one feature two names on one stream match (``Temp
[°C]`` and ``Temp [°F]`` for the feature ``Temp``) is fed by neither of
them once both have been seen (:meth:`FeatureNames.claim`), and the log
says so: the feature's exact name always feeds it, and then no other
spelling does. Which of two spellings came first changes nothing after
the second has come.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from urllib.parse import unquote

log = logging.getLogger("edgewatch.agent.sources")

_DROPPED = re.compile(r"[\s_\-./()\[\]]+")
_BETWEEN_DIGITS = re.compile(r"(?<=\d)[\s_\-./()\[\]]+(?=\d)")  # kept as one mark: TT-1-10 is not TT-11-0
# a unit in brackets at the end; brackets holding a number alone are an index (Flow (2), the second flow meter)
_UNIT = re.compile(r"\s*[(\[](?![\d\s.,]*[)\]])[^()\[\]]*[)\]]\s*$")
MAX_TOLD = 100  # features whose two spellings were logged, per source
MAX_CACHED = 4096  # names remembered beside the exact ones; past it, those that matched no feature are forgotten
MAX_NAME = 256  # characters of a name worth remembering (a topic level may be 64 KiB long)


def name_key(name: str) -> str:
    """Tier 2's form of a name: ``"Volume Flow RateRMS"`` and ``"volume_flow_raterms"`` give ``"volumeflowraterms"``."""
    return _DROPPED.sub("", _BETWEEN_DIGITS.sub("|", unquote(name).casefold()))


def unitless_key(name: str) -> str:
    """Tier 3's form: the key without a trailing unit in brackets (``"Pressure (bar)"`` -> ``"pressure"``)."""
    text = unquote(name)
    bare = _UNIT.sub("", text)
    return name_key(bare or text)


def has_unit(name: str) -> bool:
    """Whether the name ends in a bracketed part (a unit, or a qualifier such as ``(Line 2)``) after some text."""
    text = unquote(name)
    bare = _UNIT.sub("", text)
    return bool(bare) and bare != text


def _unique(features: Sequence[str], key) -> tuple[dict[str, int], dict[str, list[str]]]:
    """(key -> the one feature with it, key -> the features sharing it)."""
    owners: dict[str, list[int]] = {}
    for j, name in enumerate(features):
        owners.setdefault(key(name), []).append(j)
    unique = {k: js[0] for k, js in owners.items() if len(js) == 1}
    shared = {k: [features[j] for j in js] for k, js in owners.items() if len(js) > 1}
    return unique, shared


class FeatureNames:
    """The model's features and the names that stand for them on the wire (the module docstring's rule)."""

    def __init__(self, features: Sequence[str], source: str = "") -> None:
        self.features = list(features)
        self.source = source
        self.exact = {name: j for j, name in enumerate(self.features)}
        self._keys, self._shared_keys = _unique(self.features, name_key)
        self._unitless, self._shared_unitless = _unique(self.features, unitless_key)
        self._with_unit = [has_unit(f) for f in self.features]
        self._cache: dict[str, int | None] = dict(self.exact)
        self._told: set[int] = set()  # features said to have two spellings

    def resolve(self, name: str) -> int | None:
        """The index of the feature ``name`` stands for, or None (no feature, or two it could be)."""
        j = self._cache.get(name, -1)
        if j != -1:
            return j
        if len(name) > MAX_NAME:  # not remembered (memory), not logged (each time), still matched
            return self._match(name, False)
        cache = self._cache
        if len(cache) >= len(self.exact) + MAX_CACHED:
            # a flood of new names (ids or times in a topic level): forget it, not the names in use, so these are
            # matched once per round rather than on every message, and each new mapping is still logged
            kept = {k: v for k, v in cache.items() if v is not None}
            self._cache = cache = kept if len(kept) < len(self.exact) + MAX_CACHED // 2 else dict(self.exact)
        j = self._match(name, True)
        cache[name] = j
        return j

    def _match(self, name: str, say: bool) -> int | None:
        for tier, key, unique, shared in ((2, name_key(name), self._keys, self._shared_keys),
                                          (3, unitless_key(name), self._unitless, self._shared_unitless)):
            if key in shared:
                if say:
                    log.warning("source %s: %r could be any of the features %s; it is taken for none of them "
                                "(publish the feature's exact name)", self.source, name, shared[key])
                return None
            j = unique.get(key)
            if j is not None and tier == 3 and self._with_unit[j] and has_unit(name):
                if say:  # Pressure (psi) for Pressure (bar): the same quantity in another unit, or another one
                    log.warning("source %s: %r differs from the feature %r in its bracketed part (another unit "
                                "or another quantity); it is taken for no feature (publish the feature's exact "
                                "name)", self.source, name, self.features[j])
                return None
            if j is not None:
                if say:
                    log.info("source %s: %r taken as the feature %r (names match ignoring case, spaces, '_', '-', "
                             "'.', '/', brackets, URL escapes and a unit in brackets, when exactly one feature "
                             "matches)",
                             self.source, name, self.features[j])
                return j
        return None

    def pick(self, names: Sequence[str | None]) -> tuple[dict[int, int], dict[int, list[int]]]:
        """Names seen all at once (a file's header, an object's variables): which one feeds each feature.

        Returns feature -> the position of its name in ``names``, and
        feature -> the positions of two or more other spellings, none of
        them its exact name, which therefore feed it neither (the rule of
        :meth:`claim`, for names that come in no order). A None is skipped.
        """
        found: dict[int, list[int]] = {}
        for i, name in enumerate(names):
            j = None if name is None else self.resolve(name)
            if j is not None:
                found.setdefault(j, []).append(i)
        picked: dict[int, int] = {}
        contested: dict[int, list[int]] = {}
        for j, at in found.items():
            exact = [i for i in at if names[i] == self.features[j]]
            if exact or len(at) == 1:
                picked[j] = (exact or at)[0]
            else:
                contested[j] = at
        return picked, contested

    def claim(self, owners: dict[int, object], j: int, name: str) -> int | None:
        """``j`` when ``name`` may feed feature ``j`` on the stream whose ``owners`` these are, else None.

        ``owners`` (feature -> the name feeding it, kept by the caller per
        stream or session) is updated: the first name of a feature owns it;
        its exact name takes it over; a second other spelling makes it
        contested, fed by its exact name alone.
        """
        owner = owners.get(j)
        if owner == name:
            return j
        exact = self.features[j]
        if owner is None or name == exact:
            owners[j] = name
            return j
        if owner is CONTESTED:
            return None
        if j not in self._told and len(self._told) < MAX_TOLD:
            self._told.add(j)
            log.warning("source %s: %r and %r both match the feature %r on one stream; %s (two tags, perhaps in "
                        "two units, must not take turns in one feature)", self.source, owner, name, exact,
                        "only the exact name is taken for it" if owner == exact
                        else "neither is taken for it: publish it under its exact name")
        if owner != exact:
            owners[j] = CONTESTED
        return None


CONTESTED = object()  # an owner: two spellings of one feature were seen, neither feeds it
