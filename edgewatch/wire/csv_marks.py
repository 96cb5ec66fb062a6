"""The decimal and thousands marks of a CSV export's numbers, decided once for the whole file or given.

A cell ``1.234`` is a decimal in one convention and a thousand in the
other; only ``1.234,5``, ``1.234.567``, ``12,5`` or ``12.5`` tell by
themselves. The marks are found from the first rows, else from every
number cell of the file (:func:`with_marks`); a mark given (fit's
``--decimal``, the replay's ``?decimal=``) is
checked against the file instead (:func:`told_marks`).

NumPy and the standard library only: the agent may import this module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from edgewatch.errors import BadInput
from edgewatch.wire.csv_cells import GROUPED, without_unit
from edgewatch.wire.csv_files import open_text
from edgewatch.wire.csv_layout import CsvLayout
from edgewatch.wire.csv_rows import iter_rows


DECIMALS = (".", ",")  # the decimal marks a user may give (fit's --decimal, the replay's ?decimal=)


_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+(?:[eE][+-]?\d+)?$")
_DECIMAL_DOT = re.compile(r"^[+-]?\d*\.\d+(?:[eE][+-]?\d+)?$")
_DOT_GROUPS = re.compile(r"^[+-]?[1-9]\d{0,2}\.\d{3}$")  # 1.234: a decimal, or a thousands mark; the cell cannot tell
_PLAIN_INT = re.compile(r"^[+-]?\d+$")


@dataclass
class Marks:
    """What a file's number cells say about its decimal and thousands marks (:func:`sniff_decimal`)."""

    comma: int = 0  # 12,5
    dot: int = 0  # 12.5, 0.125, 1234.567: a decimal point for sure
    dot_groups: int = 0  # 1.234: either
    sure: dict[str, int] = field(default_factory=lambda: {",": 0, ".": 0, "'": 0})  # 1.234.567, 1.234,5, 1'234
    columns: dict[int, tuple[list[float], list[float]]] = field(default_factory=dict)  # j -> (ints, 1.234 as 1.234)

    def add(self, row: Sequence[str], skip: Sequence[int] = ()) -> None:
        """Count the cells of ``row``. A ``1.234`` cell is tried first: it can be sure of no mark, and in a file of
        nothing else every cell is one (200,000 rows of ten took 12 s when each was tried for every mark first)."""
        dot_groups = _DOT_GROUPS.match
        for j, cell in enumerate(row):
            c = cell.strip()
            if not c or not c[-1].isdigit() or j in skip:
                continue
            if "." in c or "," in c or "'" in c:
                if dot_groups(c):
                    self.dot_groups += 1
                    dotted = self.columns[j][1] if j in self.columns else self.columns.setdefault(j, ([], []))[1]
                    if len(dotted) < 10_000:
                        dotted.append(float(c))
                    continue
                for mark, pattern in GROUPED.items():
                    if pattern.match(c) and (c.count(mark) > 1 or len(set(c) & {",", "."}) == 2 or mark == "'"):
                        self.sure[mark] += 1
                if _DECIMAL_DOT.match(c):
                    self.dot += 1
                elif _DECIMAL_COMMA.match(c):
                    self.comma += 1
            elif _PLAIN_INT.match(c) and len(self.columns.get(j, ([], []))[0]) < 10_000:
                self.columns.setdefault(j, ([], []))[0].append(float(c))

    def decided(self) -> bool:
        return bool(self.comma or self.dot or any(self.sure.values()) or self._one_range() is not None)

    def _one_range(self) -> str | None:
        """'.' groups thousands when, read so, each column of integers and 1.234 cells is one range (987, 1.012
        is 987 and 1012, not 987 and 1.012); a decimal when they sit closer read as decimals; None: no column tells."""
        votes = set()
        for ints, dotted in self.columns.values():
            if ints and dotted:
                p, d = float(np.median(np.abs(ints))) or 1.0, float(np.median(np.abs(dotted)))
                votes.add("." if abs(math.log(1000.0 * d / p)) < abs(math.log(d / p)) else ",")
        return votes.pop() if len(votes) == 1 else None

    def decimal(self) -> tuple[str, str | None, str | None]:
        """(decimal mark, thousands mark or None, a note when nothing in the file told)."""
        comma = self.comma + self.sure["."]
        dot = self.dot + self.sure[","]
        if comma or dot:  # a mark is one thing in one file: with a decimal comma, 1.234 is 1234
            decimal = "," if comma > dot else "."
        else:
            decimal = {".": ",", ",": "."}.get(self._one_range() or "", ".")
        if decimal == ",":
            return ",", ("." if self.sure["."] or self.dot_groups else None), None
        note = None
        if not dot and self.dot_groups:
            note = ("'.' read as the decimal mark: every number with a '.' has three digits after it (1.234), "
                    "which could as well group thousands, and no number in the file tells; if '.' groups "
                    "thousands there, say so: edgewatch fit --decimal , (the replay: replay:FILE?decimal=,)")
        return ".", ("," if self.sure[","] else "'" if self.sure["'"] else None), note


def sniff_decimal(rows: list[list[str]], separator: str, skip: Sequence[int] = ()) -> Marks:
    """The cells' evidence on the marks: only ``1.234,5``, ``1.234.567``, ``12,5`` or ``12.5`` tell by
    themselves; ``1.234`` is a decimal in one convention and a thousand in the other (see :class:`Marks`)."""
    marks = Marks()
    if separator == ",":  # a quoted "1,234.5": ',' can only group thousands
        marks.dot = 1
        marks.sure[","] = sum(1 for r in rows for c in r if GROUPED[","].match(c.strip()))
        return marks
    for row in rows:
        marks.add(row, skip)
    return marks


_MARKED_NUMBER = re.compile(r"^[+-]?\d*[.,]\d[\d.,]*(?:[eE][+-]?\d+)?$")  # a number with a '.' or ',' in it


def _against(cell: str, decimal: str) -> bool:
    """Whether ``cell`` cannot be a number written with the ``decimal`` mark: its other mark does not group
    thousands (``12.5`` with a decimal comma, ``12,5`` with a decimal point)."""
    other = "." if decimal == "," else ","
    c = cell.strip()
    return other in c and bool(_MARKED_NUMBER.match(c)) and not GROUPED[other].match(c)


def told_marks(layout: CsvLayout, body: list[list[str]], decimal: str) -> CsvLayout:
    """The layout with the decimal mark it was given; the other mark groups thousands (``1.234,5``; ``1,234.5``,
    or Switzerland's ``1'234.5`` when the first rows write that).

    A number the given mark cannot read (``12.5`` told ``,``) is a
    :class:`BadInput` naming it and its line, never a column of text left
    out or a value read a thousand times off. The file's text is looked
    through by a regular expression (cells holding a mark); only when one
    cell may contradict are its rows split, to name the line and to leave
    time columns (``01.05.2024``) alone.
    """
    skip = [layout.header.index(c) for c in layout.time_parts]
    sample = sniff_decimal(body, layout.separator, skip) if decimal == "." else Marks()
    thousands = "." if decimal == "," else "'" if sample.sure["'"] and not sample.sure[","] else ","
    told = replace(layout, decimal=decimal, thousands=thousands, decimal_note=None, decimal_told=True)
    if layout.separator == "," and decimal == ".":  # a ',' within a cell is quoted: none, no contradiction
        if not any('"' in chunk for chunk in _text_chunks(layout)):
            return told
    if layout.separator != ",":
        cell = _whole_cells(layout.separator, r"[+-]?\d*[.,]\d[\d.,]*")
        if not any(_against(c, decimal) for chunk in _text_chunks(layout) for c in set(cell.findall(chunk))):
            return told
    for line, row in iter_rows(told, on_error=lambda line, exc: None):
        for j, c in enumerate(row[:len(told.header)]):
            name = told.header[j]
            c = without_unit(c, told.cell_units.get(name))
            if j not in skip and _against(c, decimal):
                other = "." if decimal == "," else ","
                raise BadInput(
                    f"{layout.path} line {line}: {c.strip()!r} in the column {name!r} is no number written with "
                    f"the decimal mark {decimal!r} that was given ('--decimal {decimal}', '?decimal={decimal}'): "
                    f"with it, a {other!r} only groups thousands (1{other}234), and there it does not. The file "
                    f"writes {other!r} as its decimal mark: give '{other}', or leave the option out to have the "
                    "marks found from the file")
    return told


def with_marks(layout: CsvLayout, body: list[list[str]]) -> CsvLayout:
    """The layout with its decimal and thousands marks: from the sample, else from every row of the file.

    Rows of integers only, or of ``1.234`` cells only, do not tell; a
    ``987`` or a ``12,5`` in row 90,000 may. The whole file's number cells
    are then looked through: a regular expression over the text, where it
    holds a ``.``, ``,`` or ``'`` (0.7 s for 200,000 rows of ten integers
    beside ``01.05.2024 08:00:00``, whose reading takes 3.5 s; nothing
    for ISO or epoch times). Its rows are split by column only when
    ``1.234`` cells are all it holds (time columns left out: ``01.05.2024``
    is a date).
    """
    skip = [layout.header.index(c) for c in layout.time_parts]
    marks = sniff_decimal(body, layout.separator, skip)
    if not marks.decided() and layout.separator != ",":
        marks = Marks()
        cell = _whole_cells(layout.separator, r"[+-]?\d+[.,'][\d.,']*")
        for chunk in _text_chunks(layout):
            if "." in chunk or "," in chunk or "'" in chunk:
                marks.add(cell.findall(chunk))
        if marks.dot_groups and not marks.decided():
            marks = Marks()
            for _, row in iter_rows(layout, on_error=lambda line, exc: None):
                marks.add(row, skip)
    decimal, thousands, note = marks.decimal()
    return replace(layout, decimal=decimal, thousands=thousands, decimal_note=note)


def _text_chunks(layout: CsvLayout) -> Iterator[str]:
    """The file's text in pieces of about 1 MiB, each ending at a line's end so that no cell is cut in two: the
    whole-file passes look through text, not rows (a ','-separated file of 200,000 rows of ten: 0.18 s, where
    splitting its rows took 1.09 s)."""
    with open_text(layout.path, layout.encoding) as fh:
        while chunk := fh.read(1 << 20):
            yield chunk + fh.readline()


def _whole_cells(separator: str, number: str) -> re.Pattern[str]:
    """A pattern that finds the cells that are all ``number`` in a file's text: between separators, quotes and
    line ends, never a part of a longer cell."""
    sep = re.escape(separator)
    return re.compile(rf"(?:^|(?<=[{sep}\"])){number}(?=[{sep}\"\r\n]|$)", re.MULTILINE)
