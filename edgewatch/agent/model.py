"""Loading and running an edgewatch model file with ONNX Runtime (no torch)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgewatch import digests
from edgewatch.contract import AUX_OUTPUT, FEATURE_ERROR_OUTPUT, INPUT_NAME, SCORE_OUTPUT, ModelCard
from edgewatch.errors import BadModelFile


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = digests.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def session_options(threads: int = 1) -> ort.SessionOptions:
    """One intra-op thread and no busy-waiting: the agent sleeps between messages."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


def open_session(path: Path, threads: int = 1, what: str = "", data: bytes | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session on the CPU (from ``data`` when given, else the file); a model ORT cannot
    read is a BadModelFile with its reason."""
    try:
        return ort.InferenceSession(str(path) if data is None else data, session_options(threads),
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types
        raise BadModelFile(f"{what}{path} is not a readable ONNX model (truncated or corrupt?): "
                           f"{str(exc).splitlines()[0][:300]}") from exc


@dataclass
class ScoreBatch:
    scores: np.ndarray  # [batch] float32
    feature_error: np.ndarray  # [batch, n_features] float32
    aux: np.ndarray | None = None  # [batch, k] float32 when the card names aux columns, else None


class ScoringModel:
    """An edgewatch ONNX file, checked and ready to score batches of samples.

    Construction fails with :class:`BadModelFile` and the reason when the file
    is missing, unreadable, not ours, or its graph does not match its card.
    Given ``data`` (the file's bytes, already read and checked by the
    caller), the session is built from those very bytes, so a file replaced
    on disk in between cannot slip past the check.
    """

    def __init__(self, path: str | os.PathLike[str], expected_sha256: str | None = None,
                 threads: int = 1, data: bytes | None = None) -> None:
        self.path = Path(path)
        if data is None and not self.path.is_file():
            raise BadModelFile(f"model file {self.path} does not exist")
        self.sha256 = file_sha256(self.path) if data is None else digests.sha256(data).hexdigest()
        if expected_sha256 and expected_sha256.lower() != self.sha256:
            raise BadModelFile(f"model file {self.path} has sha256 {self.sha256}, "
                               f"expected {expected_sha256.lower()}: refusing to load it")
        self.session = open_session(self.path, threads, data=data)
        props = self.session.get_modelmeta().custom_metadata_map
        self.card = ModelCard.from_props(props, source=str(self.path))
        self._check_graph()

    def _check_graph(self) -> None:
        inputs = self.session.get_inputs()
        outputs = {o.name: o for o in self.session.get_outputs()}
        if [i.name for i in inputs] != [INPUT_NAME]:
            raise BadModelFile(f"{self.path}: graph inputs {[i.name for i in inputs]}, expected ['{INPUT_NAME}']")
        if SCORE_OUTPUT not in outputs or FEATURE_ERROR_OUTPUT not in outputs:
            raise BadModelFile(f"{self.path}: graph outputs {sorted(outputs)} lack "
                               f"'{SCORE_OUTPUT}' and '{FEATURE_ERROR_OUTPUT}'")
        width = self.card.aux_width
        if width and AUX_OUTPUT not in outputs:
            raise BadModelFile(f"{self.path}: the card names aux columns {self.card.aux} but the graph has no "
                               f"'{AUX_OUTPUT}' output (outputs {sorted(outputs)}); re-export the model")
        if not width and AUX_OUTPUT in outputs:
            raise BadModelFile(f"{self.path}: the graph has an '{AUX_OUTPUT}' output but the card names no aux "
                               "columns, so no post-process could read it; re-export the model")
        if width:
            aux_shape = list(outputs[AUX_OUTPUT].shape)
            if len(aux_shape) != 2 or (isinstance(aux_shape[1], int) and aux_shape[1] != width):
                raise BadModelFile(f"{self.path}: graph output '{AUX_OUTPUT}' has shape {aux_shape}, the card's "
                                   f"aux {self.card.aux} needs [batch, {width}]")
        self._outputs = [SCORE_OUTPUT, FEATURE_ERROR_OUTPUT] + ([AUX_OUTPUT] if width else [])
        shape = list(inputs[0].shape)
        static = [d if isinstance(d, int) else None for d in shape[1:]]
        if static != list(self.card.sample_shape):
            raise BadModelFile(f"{self.path}: graph input shape {shape} does not match the card's "
                               f"sample shape {self.card.sample_shape}")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.card.sample_shape)

    def score_many(self, samples: np.ndarray) -> ScoreBatch:
        """Score a batch ``[batch, *sample_shape]`` of raw-unit samples."""
        x = np.ascontiguousarray(samples, dtype=np.float32)
        if x.shape[1:] != self.sample_shape:
            raise ValueError(f"samples of shape {x.shape[1:]} given to a model of sample shape {self.sample_shape}")
        got = self.session.run(self._outputs, {INPUT_NAME: x})
        aux = None
        if len(got) == 3:
            aux = np.asarray(got[2], dtype=np.float32).reshape(len(x), -1)
            if aux.shape[1] != self.card.aux_width:
                raise BadModelFile(f"{self.path}: graph gave {aux.shape[1]} aux columns, the card names "
                                   f"{self.card.aux_width}")
        return ScoreBatch(np.asarray(got[0], dtype=np.float32).reshape(-1), np.asarray(got[1], dtype=np.float32),
                          aux)

    def score_one(self, sample: np.ndarray) -> tuple[float, np.ndarray]:
        batch = self.score_many(np.asarray(sample)[None])
        return float(batch.scores[0]), batch.feature_error[0]
