"""Learning on the device: each stream gets its own ``pca`` model fitted on its first N messages.

Why: a stream per machine, each with its own normal (SKAB's protocol --
fit on an experiment's first 400 rows, score the rest -- as a live
feature). The ``pca`` family fits with NumPy in milliseconds and writes its
ONNX file without torch or the onnx package, so the agent can do it.

While a stream learns, its rows go into its window (so its first scored
window after learning is the one an offline evaluation scores) and into a
buffer; nothing is scored. At the N-th row the model is fitted, written to
the state folder, built into a runtime with the agent's overrides, and
scores that stream from the next row on. The template model given with
``--model`` names the features and the window and, when it is a ``pca``
file, its settings (ignored features, factor, quantile); its own threshold
is not used for learned streams.

State (no pickle): ``index.json`` maps each stream to its model file;
``learned.jsonl`` notes each stream learned since (one line appended per
model, folded into the index at a clean stop); ``buffers.npz`` (read with
``allow_pickle=False``) holds the rows of streams still learning, written
at shutdown. So after a restart a learned stream scores from its first full
window and a learning one continues where it was. A crash loses only the
buffers since the last clean stop.

Why a journal: the index used to be rewritten whole at every newly learned
stream, so learning S streams wrote O(S^2) bytes: 45 bytes an entry, the
third hundred streams wrote 1.13 MB of index beside 1.04 MB of model files
(measured), 10,000 streams would write ~2.3 GB of index. An append is one ``write`` of one line; a kill -9 leaves
the journal's earlier lines whole, and a line cut short (a full disk) is
cut off at the next start, as the spool cuts a torn record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from edgewatch.agent.runtime import DriftSettings, Overrides, load_runtime
from edgewatch.contract import ModelCard
from edgewatch.errors import BadInput, EdgewatchError
from edgewatch.files import replacing, write_bytes

log = logging.getLogger("edgewatch.agent.learn")

INDEX = "index.json"
JOURNAL = "learned.jsonl"
BUFFERS = "buffers.npz"
STATE_VERSION = 1


def _settings_from(card: ModelCard) -> dict[str, object]:
    """The pca settings a template card carries (window always; the rest when it is a pca file)."""
    out: dict[str, object] = {"window": card.window}
    if card.family == "pca":
        out["ignore"] = [f for f in card.trained_on.get("ignore", []) if f in card.features]
        out["rates"] = [f for f in card.trained_on.get("rates", []) if f in card.features]
        if isinstance(card.trained_on.get("variance"), (int, float)):
            out["variance"] = float(card.trained_on["variance"])
        m = re.match(r"^([0-9.eE+-]+) x the ([0-9.eE+-]+) quantile", card.threshold_method)
        if m:
            out["factor"], out["quantile"] = float(m.group(1)), float(m.group(2))
        out["k"], out["n"], out["m"] = card.decision.k, card.decision.n, card.decision.m
    return out


class StreamLearner:
    """Per-stream models learned on the first ``rows`` messages, kept in ``state_dir``."""

    def __init__(self, state_dir: str | Path, template: ModelCard, rows: int, overrides: Overrides | None = None) -> None:
        from edgewatch.numpy_models.pca import PcaConfig

        if rows < 2:
            raise BadInput(f"--learn {rows}: need at least 2 rows per stream")
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.features = list(template.features)
        self.rows = int(rows)
        self.config = PcaConfig(**_settings_from(template))  # type: ignore[arg-type]
        self.config.check(self.features)
        self.overrides = overrides or Overrides()
        self.models: dict[str, str] = {}  # stream -> model file name in the state folder
        self.buffers: dict[str, list[list[float]]] = {}
        self.runtimes: dict[str, object] = {}
        self._journal: int | None = None  # learned.jsonl, open for appending once a stream has learned
        self._load()

    @staticmethod
    def key(stream: str) -> str:
        return "s" + hashlib.sha1(stream.encode("utf-8")).hexdigest()[:16]

    def _load(self) -> None:
        index = self.dir / INDEX
        learning: dict[str, str] = {}
        if index.is_file():
            try:
                doc = json.loads(index.read_text(encoding="utf-8"))
                self._check_state(doc, index)
                if doc.get("rows") != self.rows:
                    log.warning("learned state in %s was made with --learn %s; keeping its models", self.dir,
                                doc.get("rows"))
                self.models = {str(k): str(v) for k, v in doc.get("models", {}).items()}
                learning = {str(k): str(v) for k, v in doc.get("learning", {}).items()}
            except (ValueError, AttributeError) as exc:
                raise BadInput(f"learned state {index} is not readable: {exc}") from exc
        self.models.update(self._read_journal())
        buffers = self.dir / BUFFERS
        if learning and buffers.is_file():
            with np.load(buffers, allow_pickle=False) as z:
                for stream, key in learning.items():
                    if key in z.files and stream not in self.models:  # learned after the stop that saved them
                        self.buffers[stream] = np.asarray(z[key], dtype=np.float64).tolist()
        if self.models or self.buffers:
            log.info("learned state from %s: %d streams with models, %d still learning", self.dir,
                     len(self.models), len(self.buffers))

    def _check_state(self, doc: dict, where: Path) -> None:
        if doc.get("version") != STATE_VERSION or doc.get("features") != self.features:
            raise BadInput(f"learned state in {self.dir} ({where.name}) is for features {doc.get('features')} "
                           f"(version {doc.get('version')}); this run reads {self.features}: use another "
                           "--learn-state")

    def _read_journal(self) -> dict[str, str]:
        """The streams learned since the index was last written whole (a run that did not stop cleanly)."""
        path = self.dir / JOURNAL
        if not path.is_file():
            return {}
        data = path.read_bytes()
        whole = data[:data.rfind(b"\n") + 1]
        if len(whole) < len(data):  # a line cut short: cut it off, or the next append would join it
            log.warning("learned state %s: a line cut short at its end (%d bytes) is dropped; that stream "
                        "learns again", path, len(data) - len(whole))
            with open(path, "r+b") as fh:
                fh.truncate(len(whole))
        found: dict[str, str] = {}
        for n, line in enumerate(whole.splitlines()):
            try:
                entry = json.loads(line)
                if n == 0:
                    self._check_state(entry, path)
                    continue
                found[str(entry["stream"])] = str(entry["model"])
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("learned state %s line %d is not readable (%s); skipped", path, n + 1, exc)
        return found

    def _note_learned(self, stream: str, name: str) -> None:
        """One line appended to the journal: a write per learned stream, whatever the number of streams."""
        if self._journal is None:
            self._journal = os.open(self.dir / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            if os.fstat(self._journal).st_size == 0:
                head = {"version": STATE_VERSION, "features": self.features, "rows": self.rows}
                os.write(self._journal, (json.dumps(head) + "\n").encode("utf-8"))
        os.write(self._journal, (json.dumps({"stream": stream, "model": name}) + "\n").encode("utf-8"))

    def _write_index(self) -> None:
        """The whole index, atomically; then the journal it now contains goes."""
        doc = {"version": STATE_VERSION, "features": self.features, "rows": self.rows, "models": self.models,
               "learning": {s: self.key(s) for s in self.buffers}}
        write_bytes(self.dir / INDEX, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
        if self._journal is not None:
            os.close(self._journal)
            self._journal = None
        (self.dir / JOURNAL).unlink(missing_ok=True)  # a kill before this line: its entries are read again

    def runtime(self, stream: str):  # noqa: ANN201 - ModelRuntime | None
        """The stream's runtime when it has a model (loaded from the state folder on first use)."""
        rt = self.runtimes.get(stream)
        if rt is None and stream in self.models:
            rt = self.runtimes[stream] = load_runtime(self.dir / self.models[stream], self.overrides,
                                                      drift_settings=DriftSettings(every=0))
        return rt

    def observe(self, stream: str, values: list[float]):  # noqa: ANN201 - ModelRuntime | None
        """Buffer one row of a learning stream; at the N-th, fit and return its runtime (else None).

        A fit that fails (a stream constant on every feature, say) is logged
        and the stream keeps learning on its next N rows: never fatal.
        """
        from edgewatch.numpy_models.pca import train_pca

        buf = self.buffers.setdefault(stream, [])
        buf.append([float(v) for v in values])
        if len(buf) < self.rows:
            return None
        rows = np.asarray(buf, dtype=np.float64)
        del self.buffers[stream]
        name = self.key(stream) + ".onnx"
        try:
            fit = train_pca(rows, self.features, self.dir / name, self.config,
                            trained_on={"data": f"stream {stream}, its first {len(rows)} messages", "learned": True})
        except (EdgewatchError, ValueError, np.linalg.LinAlgError) as exc:
            log.error("learning a model for stream %s failed (%s); it learns again on its next %d rows",
                      stream, exc, self.rows)
            return None
        self.models[stream] = name
        self._note_learned(stream, name)
        log.info("stream %s: learned pca on %d rows (%d components, threshold %.4g) -> %s", stream, fit.rows,
                 fit.components, fit.threshold, self.dir / name)
        return self.runtime(stream)

    def forget(self, streams: list[str]) -> None:
        """Streams the agent dropped (idle past ``--stream-ttl``): their runtimes and learning rows leave memory.

        Why: a loaded runtime is an ONNX Runtime session, ~215 KiB each here; kept for every stream that ever
        learned, 1,800 streams come and gone held 490 MiB with none left (measured). The model file stays: a
        stream that comes back loads it again (:meth:`runtime`); one still learning starts its rows again, as
        its window does.
        """
        for stream in streams:
            self.runtimes.pop(stream, None)
            self.buffers.pop(stream, None)

    def save(self) -> None:
        """Write the buffers of streams still learning and the index, which takes in the journal (at shutdown)."""
        with replacing(self.dir / BUFFERS, suffix=".npz") as tmp:
            np.savez(tmp, **{self.key(s): np.asarray(b, dtype=np.float64).reshape(-1, len(self.features))
                             for s, b in self.buffers.items()})
        self._write_index()
