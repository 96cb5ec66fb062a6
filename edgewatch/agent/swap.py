"""Hot model swap: a new model file on disk, or on a retained MQTT topic, replaces the running one.

Both paths end the same way: the candidate is loaded as a
:class:`~edgewatch.agent.model.ScoringModel` (which checks it is an
edgewatch model whose graph matches its card) and handed to
:meth:`Agent.swap_model`, which checks it reads the same features and
installs it between two batches, so no message is dropped. A candidate that
fails any check is refused: ``edgewatch_model_swaps{result="refused"}``
counts it, the log says why, a ``model_refused`` event goes to the sinks,
and the old model keeps running.

**File** (``--watch-model``): the model path is polled (mtime, size, inode);
a change that stays put for one more poll is loaded. Replace the file
atomically (write a temporary file beside it, then ``mv``/rename).

**MQTT** (``--model-topic``): ``PREFIX/AGENT/model``, retained, QoS 1, payload
a JSON object ``{"sha256": "<hex of the file>", "name": "x.onnx",
"onnx_b64": "<base64 of the file>"}`` (see :func:`model_message`). The sha256
is checked against the bytes before anything else; the file is written to
``models/`` under the spool directory and loaded from there. A retained
message equal to the running model is ignored, so restarts are quiet.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgewatch.agent.model import ScoringModel
from edgewatch.errors import BadModelFile, EdgewatchError
from edgewatch.files import write_bytes

if TYPE_CHECKING:
    from edgewatch.agent.engine import Agent
    from edgewatch.agent.mqtt import MqttSink

log = logging.getLogger(__name__)

MAX_MODEL_BYTES = 256 * 2**20


def offer(agent: Agent, path: Path, expected_sha256: str | None, origin: str) -> bool:
    """Validate ``path`` and queue it for the agent; on any failure refuse it. True when accepted."""
    try:
        model = ScoringModel(path, expected_sha256=expected_sha256)
        if model.sha256 == agent.model.sha256:
            return False
        agent.swap_model(model)
    except EdgewatchError as exc:
        agent.refuse_model(str(exc), sha256=expected_sha256, origin=origin)
        return False
    except Exception as exc:  # anything else a broken file can provoke
        agent.refuse_model(f"{type(exc).__name__}: {exc}", sha256=expected_sha256, origin=origin)
        return False
    log.info("model %s (%s) accepted from %s; swapping in", path, model.sha256[:12], origin)
    return True


class ModelFileWatcher:
    """Polls the model path and offers a changed file to the agent."""

    def __init__(self, agent: Agent, path: str | os.PathLike[str], interval: float = 1.0) -> None:
        self.agent = agent
        self.path = Path(path)
        self.interval = interval
        self.accepted = 0
        self.refused = 0
        self._last = self._stat()
        self._seen_sha = agent.model.sha256
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-watch", daemon=True)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def start(self) -> ModelFileWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def check(self) -> None:
        """One poll: offer the file when it changed and then stayed put for one interval."""
        now = self._stat()
        if now is None or now == self._last:
            return
        self._stop.wait(min(self.interval, 0.5))
        if self._stat() != now:
            return  # still being written; next poll
        self._last = now
        try:
            sha = hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return
        if sha == self._seen_sha:
            return
        self._seen_sha = sha
        if offer(self.agent, self.path, sha, origin="file"):
            self.accepted += 1
        else:
            self.refused += 1

    def close(self) -> None:
        self._stop.set()


def model_message(path: str | os.PathLike[str]) -> bytes:
    """The payload to publish (retained) on ``PREFIX/AGENT/model`` to ship a model file."""
    data = Path(path).read_bytes()
    return json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "name": Path(path).name,
                       "onnx_b64": base64.b64encode(data).decode("ascii")}).encode()


class MqttModelReceiver:
    """Takes model files from the retained ``PREFIX/AGENT/model`` topic, on the sink's broker connection."""

    def __init__(self, agent: Agent, sink: MqttSink, directory: str | os.PathLike[str]) -> None:
        self.agent = agent
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.accepted = 0
        self.refused = 0
        self._latest: bytes | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-topic", daemon=True)
        self._thread.start()
        self.connection = sink.connection
        self.topic = self.connection.subscribe(f"{sink.base}/model", self._on_message)

    def _on_message(self, msg: Any) -> None:
        # paho's network thread: keep it short, loading a model happens in our thread
        self._latest = bytes(msg.payload)
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            payload, self._latest = self._latest, None
            if payload:
                self.handle(payload)

    def handle(self, payload: bytes) -> bool:
        try:
            path, sha = self._unpack(payload)
        except BadModelFile as exc:
            self.refused += 1
            self.agent.refuse_model(str(exc), origin="mqtt")
            return False
        if sha == self.agent.model.sha256:
            return False
        if offer(self.agent, path, sha, origin="mqtt"):
            self.accepted += 1
            return True
        self.refused += 1
        return False

    def _unpack(self, payload: bytes) -> tuple[Path, str]:
        if len(payload) > MAX_MODEL_BYTES * 4 // 3 + 1024:
            raise BadModelFile(f"model message of {len(payload)} bytes is larger than allowed")
        try:
            header = json.loads(payload)
            sha = str(header["sha256"]).lower()
            data = base64.b64decode(header["onnx_b64"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise BadModelFile("model message is not JSON with 'sha256' and 'onnx_b64' (base64 of the "
                               f"file): {exc}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha:
            raise BadModelFile(f"model message says sha256 {sha} but its file has {actual}: damaged in transit?")
        path = self.dir / f"{sha}.onnx"
        if not path.exists():
            write_bytes(path, data)
        return path, sha

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self.connection.unsubscribe(self.topic)
