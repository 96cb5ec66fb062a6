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

import codecs
import gzip
import io
import re
import zipfile
import zlib
from pathlib import Path
from typing import IO

from edgewatch.errors import BadInput

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # an old Excel .xls (and other Office files)
TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".dat", ".log")
SAVE_AS_CSV = ("open it in Excel and save it with File > Save As > 'CSV UTF-8 (Comma delimited) (*.csv)' "
               "(one file per sheet), then give that file")
ENCODING = "utf-8-sig"  # a byte-order mark (Excel's "CSV UTF-8") is dropped
_LATIN1_ONLY = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")  # bytes Windows-1252 leaves undefined


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
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise BadInput(f"{path} starts like a zip archive but cannot be opened as one ({exc})") from None
    if head == OLE_MAGIC:
        raise BadInput(f"{path} is an old Excel workbook (.xls) or another Office file, not a CSV file: {SAVE_AS_CSV}")
    return ""


def open_bytes(path: Path) -> IO[bytes]:
    """The file's content as a binary stream, unpacked from gzip or a one-CSV zip (see :func:`packing`).

    A damaged archive (cut short, a bad checksum) raises :class:`BadInput` when read, not a zlib error.
    """
    kind = packing(path)
    if kind == "gzip":
        return io.BufferedReader(_Guarded(gzip.open(path, "rb"), path, "gzip"))
    if kind.startswith("zip:"):
        z = zipfile.ZipFile(path)
        return io.BufferedReader(_Guarded(z.open(kind[4:]), path, "zip", z))
    return path.open("rb")


def ends_mid_line(path: Path, encoding: str) -> bool:
    """True when a plain file's last line has no line end, as a write cut off mid-line leaves it.

    A gzip or zip archive is never cut so (a cut archive fails its checksum when read): False."""
    if packing(path):
        return False
    width = 2 if "16" in encoding else 4 if "32" in encoding else 1
    with path.open("rb") as fh:
        fh.seek(0, io.SEEK_END)
        size = fh.tell()
        if size == 0:
            return False
        fh.seek(max(0, size - width))
        tail = fh.read()
    return b"\n" not in tail and b"\r" not in tail


def open_text(path: Path, encoding: str) -> IO[str]:
    """:func:`open_bytes` decoded (undecodable bytes replaced), with the newlines left to the csv module."""
    return io.TextIOWrapper(open_bytes(path), encoding=encoding, errors="replace", newline="")


class _Guarded(io.RawIOBase):
    """An unpacking stream whose errors are :class:`BadInput` saying which file; closing it closes its archive."""

    def __init__(self, inner: IO[bytes], path: Path, kind: str, archive: zipfile.ZipFile | None = None) -> None:
        super().__init__()
        self.inner, self.path, self.kind, self.archive = inner, path, kind, archive

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001 - a writable buffer
        try:
            return self.inner.readinto(buffer)  # type: ignore[attr-defined]
        except (EOFError, OSError, zlib.error, zipfile.BadZipFile) as exc:
            raise BadInput(f"{self.path}: its {self.kind} content is damaged ({exc}); unpack it with another tool "
                           "or export the file again") from None

    def close(self) -> None:
        if not self.closed:
            self.inner.close()
            if self.archive is not None:
                self.archive.close()
        super().close()


def described(path: Path) -> str:
    """How the file was unpacked, for the report ('' when plain)."""
    kind = packing(path)
    return "gzip-compressed" if kind == "gzip" else (f"read from the zip member '{kind[4:]}'" if kind else "")


def sniff_encoding(path: Path) -> tuple[str, str | None]:
    """UTF-8 (a BOM dropped), UTF-16 with its BOM, else Windows-1252 (Latin-1 where 1252 has no character).

    The whole file is checked: a Latin-1 "°" in row 90,000 of an otherwise
    ASCII export would stop the read there. Any bytes decode in Latin-1, so
    the second answer never fails; the note says what was read and where.
    """
    with open_bytes(path) as fh:
        if fh.read(2) in (b"\xff\xfe", b"\xfe\xff"):
            return "utf-16", None
    with open_bytes(path) as fh:
        decoder = codecs.getincrementaldecoder("utf-8")()
        lines = 0
        bad: tuple[int, int] | None = None
        while chunk := fh.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                at = max(exc.start - (len(exc.object) - len(chunk)), 0)  # exc.object: held bytes + chunk
                bad = (chunk[at] if at < len(chunk) else chunk[-1], lines + chunk.count(b"\n", 0, at) + 1)
                break
            lines += chunk.count(b"\n")
        if bad is None:
            pending = decoder.getstate()[0]  # a character cut off by the end of the file
            if not pending:
                return ENCODING, None
            bad = (pending[0], lines + 1)
    with open_bytes(path) as fh:
        latin1 = any(_LATIN1_ONLY.search(chunk) for chunk in iter(lambda: fh.read(1 << 20), b""))
    encoding = "latin-1" if latin1 else "cp1252"
    char = bytes([bad[0]]).decode(encoding)
    return encoding, (f"not UTF-8 (byte 0x{bad[0]:02x} on line {bad[1]}): read as "
                      f"{'Latin-1' if latin1 else 'Windows-1252 (Latin-1)'}, where it is {char!r}")
