"""The bytes of an export, whatever it was packed in: a plain file, gzip (``.csv.gz``) or a ``.zip`` of one CSV.

Why: historians and loggers rotate their exports into ``.csv.gz``, and a
file mailed from the plant is often a ``.zip``; read as text they were
gibberish ("text columns: ['\\x8b\\x08...']"). The kind is told by the
file's first bytes, not its name. An Excel workbook (``.xlsx``, also a zip)
or an old ``.xls`` is refused with what to do: reading it needs a library
the agent does not carry, and Excel saves a CSV in two clicks.

The standard library only: the agent's replay opens files through here too.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path
from typing import IO

from edgewatch.errors import BadInput

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # an old Excel .xls (and other Office files)
TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".dat", ".log")
SAVE_AS_CSV = ("open it in Excel and save it with File > Save As > 'CSV UTF-8 (Comma delimited) (*.csv)' "
               "(one file per sheet), then give that file")


def _zip_member(path: Path, z: zipfile.ZipFile) -> str:
    names = [i.filename for i in z.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
    if "xl/workbook.xml" in names:
        raise BadInput(f"{path} is an Excel workbook (.xlsx), not a CSV file: {SAVE_AS_CSV}")
    texts = [n for n in names if n.lower().endswith(TEXT_SUFFIXES)]
    if len(texts) != 1:
        raise BadInput(f"{path} is a zip archive holding {len(texts)} CSV file(s) ({', '.join(texts[:5]) or 'none'}"
                       f"{', ...' if len(texts) > 5 else ''}); edgewatch reads a zip of one CSV file. Unpack it and "
                       "give the CSV files (or their folder)")
    return texts[0]


def packing(path: Path) -> str:
    """'' for a plain file, 'gzip', or 'zip:MEMBER'; :class:`BadInput` for a workbook or a zip of other files."""
    with path.open("rb") as fh:
        head = fh.read(4)
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    if head == ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as z:
                return "zip:" + _zip_member(path, z)
        except zipfile.BadZipFile as exc:
            raise BadInput(f"{path} starts like a zip archive but cannot be opened as one ({exc})") from None
    if head == OLE_MAGIC:
        raise BadInput(f"{path} is an old Excel workbook (.xls) or another Office file, not a CSV file: {SAVE_AS_CSV}")
    return ""


def open_bytes(path: Path) -> IO[bytes]:
    """The file's content as a binary stream, unpacked from gzip or a one-CSV zip (see :func:`packing`)."""
    kind = packing(path)
    if kind == "gzip":
        return gzip.open(path, "rb")
    if kind.startswith("zip:"):
        z = zipfile.ZipFile(path)
        member = z.open(kind[4:])
        member.close = _closing(member.close, z.close)  # type: ignore[method-assign]
        return member
    return path.open("rb")


def open_text(path: Path, encoding: str) -> IO[str]:
    """:func:`open_bytes` decoded (undecodable bytes replaced), with the newlines left to the csv module."""
    return io.TextIOWrapper(open_bytes(path), encoding=encoding, errors="replace", newline="")


def _closing(*closers):  # noqa: ANN001, ANN202 - close the member, then its archive
    def close() -> None:
        for c in closers:
            c()
    return close


def described(path: Path) -> str:
    """How the file was unpacked, for the report ('' when plain)."""
    kind = packing(path)
    return "gzip-compressed" if kind == "gzip" else (f"read from the zip member '{kind[4:]}'" if kind else "")
