"""wire/csv_files: exports packed in gzip or a zip read as the plain file; workbooks refused with what to do."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgewatch.errors import BadInput
from edgewatch.wire.csv_table import read_csv_table

TEXT = "time,flow,pressure\n" + "".join(f"2024-03-04 08:00:{i:02d},{120 + i},{4.2 - 0.01 * i:.2f}\n" for i in range(30))


def _same_as_plain(path: Path, tmp_path: Path) -> str:
    plain = tmp_path / "plain.csv"
    plain.write_text(TEXT)
    want, got = read_csv_table(plain), read_csv_table(path)
    assert got.rows == want.rows == 30 and list(got.numeric) == ["flow", "pressure"]
    assert np.array_equal(got.times, want.times) and np.array_equal(got.numeric["flow"], want.numeric["flow"])
    return got.layout.describe()


def test_a_gzip_export_is_read_as_the_plain_file(tmp_path: Path) -> None:
    path = tmp_path / "export.csv.gz"
    path.write_bytes(gzip.compress(TEXT.encode()))
    assert "gzip-compressed" in _same_as_plain(path, tmp_path)


def test_a_zip_of_one_csv_is_read_as_that_file(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("pump/2024-03-04.csv", TEXT)
    assert "read from the zip member 'pump/2024-03-04.csv'" in _same_as_plain(path, tmp_path)


def test_a_zip_of_several_files_is_refused_with_their_names(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.csv", TEXT)
        z.writestr("b.csv", TEXT)
    with pytest.raises(BadInput, match=r"holding 2 CSV file\(s\) \(a.csv, b.csv\).*Unpack it"):
        read_csv_table(path)


def test_an_excel_workbook_is_refused_with_how_to_save_it_as_csv(tmp_path: Path) -> None:
    xlsx = tmp_path / "export.xlsx"
    with zipfile.ZipFile(xlsx, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(BadInput, match=r"Excel workbook \(.xlsx\), not a CSV file: .*Save As.*CSV UTF-8"):
        read_csv_table(xlsx)
    xls = tmp_path / "export.xls"
    xls.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512))
    with pytest.raises(BadInput, match=r"old Excel workbook \(.xls\).*Save As"):
        read_csv_table(xls)
