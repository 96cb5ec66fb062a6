"""Columns that are one tag's attributes side by side: a quality beside its value, a time beside its value.

PI DataLink and SCADA exports write ``FIC101 Value, FIC101 Quality`` or
``Time, FIC101, Time, PIC7``: the quality is no feature, each tag's own
time is the time of its value, and ``Value`` is the export's word for the
attribute, not part of the tag's name (:func:`named_after_tags`).

NumPy and the standard library only: the agent may import this module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from edgewatch.wire.csv_cells import are_quality_cells, mostly_numbers
from edgewatch.wire.csv_header import SAMPLE_LINES, columns_of, plain_name
from edgewatch.wire.csv_layout import CsvLayout
from edgewatch.wire.csv_rows import iter_rows
from edgewatch.wire.csv_time_column import looks_like_times


QUALITY_NAMES = ("quality", "q", "qual", "qc", "status", "validity", "qualitat", "qualitaet", "opcquality")
_VALUE_SUFFIX = re.compile(r"(value|val|pv|v)$")


def quality_columns(header: list[str], renamed: dict[str, str], columns: dict[str, list[str]],
                    decimal: str, thousands: str | None) -> dict[str, str]:
    """Value column -> its quality column: a column right after a number column, named ``Quality``, ``Q`` or
    ``Status`` (alone, or after the value's own name: ``FIC101 Quality``, ``FIC101.Q``; PI DataLink and SCADA
    exports), holding quality words or OPC codes. A text value (a valve's ``Forward``/``Divert``, a state
    column) has its quality too when the quality's name is the value's own (``FDV101 Quality`` beside
    ``FDV101 Value``): before, that quality was reported as a text column left out, and the state kept the
    name ``FDV101 Value`` while the numbers beside it became ``TT101``."""
    out: dict[str, str] = {}
    for j in range(1, len(header)):
        value, name = header[j - 1], header[j]
        own = plain_name(renamed.get(name, name)).strip(".:/")
        stem = _VALUE_SUFFIX.sub("", plain_name(value)) or plain_name(value)
        tagged = own.startswith(stem) and own != stem
        rest = own[len(stem):].strip(".:/") if tagged else own
        if rest not in QUALITY_NAMES or value in out.values() or not are_quality_cells(columns[name]):
            continue
        if mostly_numbers(columns[value], decimal, thousands) or (
                tagged and not are_quality_cells(columns[value]) and not looks_like_times(columns[value])):
            out[value] = name
    return out


_VALUE_WORD = re.compile(r"^(.*?[^\s._:/-])[\s._:/-]+(?:value|val)$", re.IGNORECASE)  # FIC101 Value, FIC101.Val


def _tag_names(values: Sequence[str], header: Sequence[str]) -> dict[str, str]:
    """Value column -> the tag it is named after, for columns named ``<tag> Value`` or ``<tag>.Val``.

    Called for the value of a tag's attributes spelled side by side (its
    quality, its own time): there ``Value`` is the export's word for the
    attribute, not part of the tag's name, and the tag is what every live
    source names (an MQTT topic level, an OPC UA node): a model fitted on
    ``FIC101 Value`` never matched the topic ``plant/FIC101``. ``PV`` is
    kept: ``FIC101.PV`` is the control system's parameter (beside ``.SP``
    and ``.OP``), the item name its OPC server and gateways publish. No
    rename where the tag is another column's name or two values share it.
    """
    found = {v: m.group(1) for v in values if (m := _VALUE_WORD.match(v))}
    tags = list(found.values())
    return {v: t for v, t in found.items() if tags.count(t) == 1 and t not in header}


def named_after_tags(layout: CsvLayout, values: Sequence[str]) -> CsvLayout:
    """The layout with ``values`` named after their tags (:func:`_tag_names`), the renaming said."""
    new = _tag_names(values, layout.header)
    if not new:
        return layout
    def name(c: str) -> str:
        return new.get(c, c)
    return replace(layout, header=[name(c) for c in layout.header],
                   quality={name(v): q for v, q in layout.quality.items()},
                   units={name(c): u for c, u in layout.units.items()},
                   cell_units={name(c): u for c, u in layout.cell_units.items()},
                   renamed={**layout.renamed, **{t: layout.renamed.get(v, v) for v, t in new.items()}})


PAIR_TIME = "Time"  # the time column of the table a file of (time, value) pairs stands for


def as_pairs(layout: CsvLayout) -> CsvLayout:
    """A file whose columns are (time, value) pairs, one per tag, each tag on its own times (PI DataLink's
    "Compressed Data" of several tags side by side), as the table it stands for: a ``Time`` column and one
    column per tag. Read as it is, the first tag's time was the row's, and every other tag's values sat
    beside times they were not taken at (minutes apart by the end of a day's file)."""
    header = layout.header
    if len(header) < 4 or len(header) % 2 or layout.time_column != header[0]:
        return layout
    sample = [r for _, (_, r) in zip(range(SAMPLE_LINES), iter_rows(layout, on_error=lambda line, exc: None))]
    columns = columns_of(header, sample)
    pairs = tuple((header[j], header[j + 1]) for j in range(0, len(header), 2))
    for time, value in pairs:
        if not (looks_like_times(columns[time]) and mostly_numbers(columns[value], layout.decimal, layout.thousands)):
            return layout
    values = [v for _, v in pairs]
    table = replace(layout, header=[PAIR_TIME, *values], time_column=PAIR_TIME, pairs=pairs,
                    raw_header=tuple(header), units={k: u for k, u in layout.units.items() if k in values},
                    quality={}, date_column=None, ms_column=None, zone="")
    return named_after_tags(table, values)
