"""Ground truth from the user's own CSV: the 0/1 column of the file that was replayed, as time intervals.

``edgewatch plot RUN --truth DATA.csv --truth-column anomaly`` draws the
rows labelled 1 of ``DATA.csv`` under the run's episodes. The file is read
as ``edgewatch fit`` and ``eval csv`` read it (:mod:`edgewatch.wire.csv_table`),
and its time column places the labels on the run's clock: the replay
source stamps each message with that same column. An interval runs from
the first labelled row's time to the last one's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgewatch.errors import BadInput
from edgewatch.eval.episode_score import segments
from edgewatch.plot.run_file import Interval
from edgewatch.wire.csv_table import read_csv_table, sniff_layout


def read_truth_column(path: str | Path, column: str, time_column: str | None = None) -> list[Interval]:
    """Intervals where ``column`` is 1, on the file's time column; fails with the fix when it cannot."""
    layout = sniff_layout(path, time_column)
    if column not in layout.header:
        raise BadInput(f"{path} has no column '{column}' (--truth-column); its columns: {layout.header}")
    if layout.time_column is None:
        raise BadInput(f"{path} has no time column that places its labels on the run's clock; name it with "
                       "--truth-time-column")
    table = read_csv_table(path, layout)
    values = table.labels.get(column, table.numeric.get(column))
    if values is None:
        raise BadInput(f"column '{column}' of {path} is not 0/1 numbers (e.g. {table.text_columns.get(column)!r})")
    times = table.times
    ok = np.isfinite(times)
    flags = np.where(np.isfinite(values) & ok, values > 0.5, False)
    return [Interval(float(times[a]), float(times[b - 1]), f"{column} = 1") for a, b in segments(flags)]
