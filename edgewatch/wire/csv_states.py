"""Text state columns (``Run``/``Stop``, ``Open``/``Closed``, ``Auto``/``Manual``/``Off``) as numbers.

A plant's export often says which operating point a machine is in by a
word, not a number: ``Pump1 State`` = ``Run``/``Stop``, ``Valve`` =
``Open``/``Closed``, ``Alarm`` = ``TRUE``/``FALSE``. That column is what
tells a model of several operating points which one it is in, so ``fit``
reads it as a *state feature* and the agent reads the same words on every
live source by the same code (the mapping is written into the model file,
the card's ``states``).

The rule (:func:`is_state_column`, :func:`state_codes`):

* a text column (most of its present cells are not numbers) is a state
  column when its text cells take 2 to :data:`MAX_STATES` distinct texts
  (spaces around them dropped; ``Run`` and ``RUN`` are one). More distinct texts
  are names, comments or a long export's tag names: left out as before;
  one text alone says nothing (left out too). Its blank and "no value"
  cells stay missing, filled as any blank; a number in such a column is
  no state, read as a blank and counted.
* the code of each text: when the column takes two texts, one an off
  word (:data:`OFF_WORDS`: ``Off``, ``Stop``, ``Closed``, ``False``,
  ``No``, ``Idle``...) and the other an on word (:data:`ON_WORDS`:
  ``On``, ``Run``, ``Running``, ``Open``, ``True``, ``Yes``...), off is 0
  and on is 1,
  so ``Run``/``Stop`` means what a 0/1 run signal means. Otherwise the
  texts are numbered 0, 1, 2... in sorted order (case-folded, then as
  written): stable whatever the file's row order, documented, and the
  same for a file that holds the same states. The code is one number per
  column (not one column per state) so that the model keeps one input per
  data column: the agent's features, range check, drift check and top
  features stay per column; for the commonest case, two states, one code
  carries everything a one-hot pair would.

Live values are looked up by :class:`StateLookup`: the text as written or
in another case (``RUN`` for ``Run``); a JSON ``true``/``false`` as its
text, or as on/off for an on/off pair; a number is taken as the code
itself (an OPC UA boolean, a PLC's state number). Anything else is an
unknown state (``None``): the caller counts it, never guesses a code.

NumPy and the standard library only: the agent may import this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

MAX_STATES = 10  # distinct texts a state column may take; more are names or comments
OFF_WORDS = frozenset({"off", "stop", "stopped", "closed", "close", "false", "no", "n", "inactive", "disabled",
                       "idle", "down", "low"})
ON_WORDS = frozenset({"on", "run", "running", "open", "opened", "true", "yes", "y", "active", "enabled", "up",
                      "high"})


def distinct_states(texts: Iterable[str]) -> list[str]:
    """The distinct texts, one spelling per text in any case (``Run`` and ``RUN`` are one state), sorted."""
    spelt: dict[str, str] = {}
    for t in sorted(t.strip() for t in texts):
        if t:
            spelt.setdefault(t.casefold(), t)
    return sorted(spelt.values(), key=lambda t: (t.casefold(), t))


def is_state_column(texts: Iterable[str]) -> bool:
    """Whether a text column whose text cells take these distinct texts is a state column (module docstring)."""
    return 2 <= len(distinct_states(texts)) <= MAX_STATES


def state_codes(texts: Iterable[str]) -> dict[str, int]:
    """The code of each distinct text (module docstring); ValueError when they are not 2..MAX_STATES texts."""
    distinct = distinct_states(texts)
    if not 2 <= len(distinct) <= MAX_STATES:
        raise ValueError(f"a state column takes 2 to {MAX_STATES} distinct texts, not {len(distinct)}")
    pair = on_off(distinct)
    if pair is not None:
        return pair
    return {t: k for k, t in enumerate(distinct)}


def on_off(texts: Iterable[str]) -> dict[str, int] | None:
    """Two texts, an off word 0 and an on word 1; else None (three texts are never folded onto two codes)."""
    codes: dict[str, int] = {}
    for t in texts:
        word = t.strip().casefold()
        if word in OFF_WORDS:
            codes[t] = 0
        elif word in ON_WORDS:
            codes[t] = 1
        else:
            return None
    return codes if len(codes) == 2 and set(codes.values()) == {0, 1} else None


def describe(codes: Mapping[str, float]) -> str:
    """``Run=1, Stop=0``: the texts in sorted order with their codes (the report's and the log's form)."""
    return ", ".join(f"{t}={_number(c)}" for t, c in sorted(codes.items(), key=lambda kv: (kv[0].casefold(), kv[0])))


STATE_SHOWN_WITHIN = 0.05  # a mean this near one code is that state (a 0/1 pair: 95 % of the windows in it)


def level_shown(value: float, codes: Mapping[str, float] | None) -> str:
    """A feature's mean level as the report shows it: a state column's by its text (``Unoccupied``), else the number.

    Why: the report's operating points said ``AHU1 Occupancy 0.9982`` of a column whose file held
    ``Occupied``/``Unoccupied``; the reader has to know the codes to read it. A mean between the codes (a point
    that holds several states) keeps its number, with the codes beside it."""
    if not codes:
        return f"{value:.4g}"
    text, code = min(codes.items(), key=lambda kv: abs(kv[1] - value))
    if abs(code - value) <= STATE_SHOWN_WITHIN:
        return text
    return f"{value:.4g} (a mix of {describe(codes)})"


def _number(c: float) -> str:
    return str(int(c)) if float(c).is_integer() else f"{c:g}"


class StateLookup:
    """One state feature's texts -> codes as the agent reads live values (module docstring)."""

    __slots__ = ("codes", "folded", "pair")

    def __init__(self, codes: Mapping[str, float]) -> None:
        self.codes = {str(t): float(c) for t, c in codes.items()}
        self.folded: dict[str, float] = {}
        for t, c in self.codes.items():
            self.folded.setdefault(t.strip().casefold(), c)
        self.pair = on_off(self.codes) is not None and set(self.codes.values()) == {0.0, 1.0}

    def code(self, value: object) -> float | None:
        """The code of a live value: a text (any case), a bool, or a number taken as the code; None: unknown."""
        if type(value) is bool:
            found = self.folded.get("true" if value else "false")
            if found is None and self.pair:
                found = 1.0 if value else 0.0
            return found
        if isinstance(value, str):
            text = value.strip()
            found = self.codes.get(text)
            return found if found is not None else self.folded.get(text.casefold())
        return None

    def known(self) -> str:
        return describe(self.codes)
