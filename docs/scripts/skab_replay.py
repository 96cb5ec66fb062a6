"""A SKAB experiment as a replay file and a truth file, for `edgewatch agent run --source replay:` and `edgewatch plot`.

SKAB ships `;`-separated files with a `datetime` column and the labels
`anomaly` and `changepoint`; the replay source reads a comma CSV with an
epoch `timestamp` column. The labelled anomaly becomes one interval of
the simulator's truth format (`edgewatch plot --truth`).

    python docs/scripts/skab_replay.py ../shared/datasets/skab/data/valve1/1.csv skab.csv skab-truth.jsonl
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime, timezone

LABELS = ("anomaly", "changepoint")


def main(source: str, replay: str, truth: str) -> None:
    with open(source, newline="") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    head, data = rows[0], rows[1:]
    keep = [j for j, name in enumerate(head) if name != "datetime" and name not in LABELS]
    ts = [datetime.fromisoformat(r[0]).replace(tzinfo=timezone.utc).timestamp() for r in data]
    with open(replay, "w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["timestamp"] + [head[j] for j in keep])
        out.writerows([t] + [r[j] for j in keep] for t, r in zip(ts, data))
    label = [float(r[head.index("anomaly")]) for r in data]
    with open(truth, "w") as fh:
        if 1.0 in label:
            first, last = label.index(1.0), len(label) - 1 - label[::-1].index(1.0)
            fh.write(json.dumps({"fault": "SKAB anomaly label", "features": [], "start_ts": ts[first],
                                 "end_ts": ts[last] + 1.0, "stream": None}) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
