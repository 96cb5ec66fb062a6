"""Which model feature a name on the wire means, when the plant spells it another way than its CSV header.

A model fitted on a historian's export knows its features by the CSV
headers (``Volume Flow RateRMS``, ``Pressure (bar)``, ``FIT-101.PV``); the
same plant's gateway publishes ``volume_flow_raterms``, ``Pressure``,
``fit-101-pv`` or ``Volume%20Flow%20RateRMS``. The rule, in three tiers, the
first that gives an answer wins:

1. the name itself;
2. the name's *key*: URL escapes decoded, case folded, and spaces, ``_``,
   ``-``, ``.``, ``/`` and brackets dropped, equal to exactly one feature's
   key (``pressure_bar`` is ``Pressure (bar)``);
3. the key without a unit in brackets at the end (``(bar)``, ``[°C]``),
   on both sides, equal to exactly one feature's.

A name whose key two features share is never guessed: it means no feature
(``unknown_feature`` where the source counts that) and the log says which
features it could be. Every name matched by tier 2 or 3 is logged once, so
the operator can see what was taken for what.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from urllib.parse import unquote

log = logging.getLogger("edgewatch.agent.sources")

_DROPPED = re.compile(r"[\s_\-./()\[\]]+")
_UNIT = re.compile(r"\s*[(\[][^()\[\]]*[)\]]\s*$")
MAX_CACHED = 4096  # names remembered (an endless stream of new names costs a recomputation each, not memory)


def name_key(name: str) -> str:
    """Tier 2's form of a name: ``"Volume Flow RateRMS"`` and ``"volume_flow_raterms"`` give ``"volumeflowraterms"``."""
    return _DROPPED.sub("", unquote(name).casefold())


def unitless_key(name: str) -> str:
    """Tier 3's form: the key without a trailing unit in brackets (``"Pressure (bar)"`` -> ``"pressure"``)."""
    text = unquote(name)
    bare = _UNIT.sub("", text)
    return name_key(bare or text)


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
        self._cache: dict[str, int | None] = dict(self.exact)

    def resolve(self, name: str) -> int | None:
        """The index of the feature ``name`` stands for, or None (no feature, or two it could be)."""
        j = self._cache.get(name, -1)
        if j != -1:
            return j
        first = len(self._cache) < MAX_CACHED  # a name not cached is matched (and logged) each time: do not log
        j = self._match(name, first)
        if first:
            self._cache[name] = j
        return j

    def _match(self, name: str, say: bool) -> int | None:
        for key, unique, shared in ((name_key(name), self._keys, self._shared_keys),
                                    (unitless_key(name), self._unitless, self._shared_unitless)):
            if key in shared:
                if say:
                    log.warning("source %s: %r could be any of the features %s; it is taken for none of them "
                                "(publish the feature's exact name)", self.source, name, shared[key])
                return None
            j = unique.get(key)
            if j is not None:
                if say:
                    log.info("source %s: %r taken as the feature %r (names match ignoring case, spaces, '_', '-', "
                             "'.', '/', brackets, URL escapes and a unit in brackets, when exactly one feature "
                             "matches)",
                             self.source, name, self.features[j])
                return j
        return None
