"""Hot model swap: a new model file on disk, or on a retained MQTT topic, replaces the running one.

Both paths end the same way: :meth:`Agent.load_candidate` builds a
:class:`~edgewatch.agent.runtime.ModelRuntime` from the file with the
agent's run-time overrides and model checks (so a card that cannot run, a
post-process parameter the kind does not know, a drift reference that does
not fit, k > n, is found here, off the scoring loop) and checks it reads
the same features; :meth:`Agent.swap_runtime` then installs it between two
batches, so no message is dropped. A candidate that fails any check is
refused: ``edgewatch_model_swaps{result="refused"}`` counts it, the log
says why, a ``model_refused`` event goes to the sinks, and the old model
keeps running.

**File** (``--watch-model``): the model path is polled (mtime, size, inode);
a change that stays put for one more poll is loaded. Replace the file
atomically (write a temporary file beside it, then ``mv``/rename).

**MQTT** (``--model-topic``): ``PREFIX/AGENT/model``, retained, QoS 1, payload
a JSON object ``{"sha256": "<hex of the file>", "name": "x.onnx",
"onnx_b64": "<base64 of the file>"}`` (see :func:`model_message`). In this
order, before anything touches the disk: the message size against the limit
(``--max-model-mb``), the JSON, the sha256 against the bytes, the
:class:`~edgewatch.agent.signing.TrustPolicy` (signed by a trusted key, or
unsigned allowed explicitly). Only then is the file written to ``models/``
under the spool directory and loaded from there; a file the loader refuses
is deleted again, so a refusal leaves nothing behind. A retained message
equal to the running model is ignored, so restarts are quiet.

Every path (start, file, MQTT) checks the trust policy on the very bytes it
then loads, by sha256, so a file swapped between the check and the load is
refused rather than run unchecked.
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

from edgewatch.agent.signing import TrustPolicy
from edgewatch.errors import BadModelFile, EdgewatchError
from edgewatch.files import write_bytes

if TYPE_CHECKING:
    from edgewatch.agent.engine import Agent
    from edgewatch.agent.mqtt import MqttSink

log = logging.getLogger(__name__)

# models are a few MB (the S2 conv AE, the largest family, is 14 MB fp32); the agent's unit has MemoryMax=512M
MAX_MODEL_BYTES = 64 * 2**20


def offer(agent: Agent, path: Path, expected_sha256: str | None, origin: str,
          trust: TrustPolicy | None = None, data: bytes | None = None) -> bool:
    """Check ``path`` (its bytes ``data`` when already read) against ``trust``, load it and queue it
    for the agent; on any failure refuse it. True when accepted."""
    trust = trust or TrustPolicy()
    try:
        if data is None:
            data = _read(path)
        verified = trust.check(data, origin, str(path))
        sha = hashlib.sha256(data).hexdigest()
        if expected_sha256 and expected_sha256.lower() != sha:
            raise BadModelFile(f"{path} has sha256 {sha}, expected {expected_sha256.lower()}")
        # built from the very bytes checked: a file swapped in between cannot slip past
        runtime = agent.load_candidate(path, expected_sha256=sha, data=data)
        if runtime.sha256 == agent.model.sha256:
            return False
        agent.swap_runtime(runtime)
        if verified is not None:
            log.info("model %s %s", path, verified.describe())
    except EdgewatchError as exc:
        agent.refuse_model(str(exc), sha256=expected_sha256, origin=origin)
        return False
    except Exception as exc:  # anything else a broken file can provoke
        agent.refuse_model(f"{type(exc).__name__}: {exc}", sha256=expected_sha256, origin=origin)
        return False
    log.info("model %s (%s) accepted from %s; swapping in", path, runtime.sha256[:12], origin)
    return True


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadModelFile(f"cannot read model file {path}: {exc.strerror}") from None


class ModelFileWatcher:
    """Polls the model path and offers a changed file to the agent."""

    def __init__(self, agent: Agent, path: str | os.PathLike[str], interval: float = 1.0,
                 trust: TrustPolicy | None = None) -> None:
        self.agent = agent
        self.path = Path(path)
        self.trust = trust or TrustPolicy()
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
            data = self.path.read_bytes()
        except OSError:
            return
        sha = hashlib.sha256(data).hexdigest()
        if sha == self._seen_sha:
            return
        self._seen_sha = sha
        if offer(self.agent, self.path, sha, origin="file", trust=self.trust, data=data):
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
    """Takes model files from the retained ``PREFIX/AGENT/model`` topic, on the sink's broker connection.

    ``trust`` decides which files may run (default: none unsigned, see
    :class:`TrustPolicy`); ``max_bytes`` bounds the model file, and its base64
    message, before anything is decoded or written. paho has the message in
    memory by then: bound the broker's ``message_size_limit`` too.
    """

    def __init__(self, agent: Agent, sink: MqttSink, directory: str | os.PathLike[str],
                 trust: TrustPolicy | None = None, max_bytes: int = MAX_MODEL_BYTES) -> None:
        self.agent = agent
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.trust = trust or TrustPolicy()
        self.max_bytes = max_bytes
        self.accepted = 0
        self.refused = 0
        self._latest: bytes | None = None
        self._too_big: int | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-topic", daemon=True)
        self._thread.start()
        self.connection = sink.connection
        self.topic = self.connection.subscribe(f"{sink.base}/model", self._on_message)

    def _on_message(self, msg: Any) -> None:
        # paho's network thread: keep it short, loading a model happens in our thread
        size = len(msg.payload)
        if size > self._message_limit():
            self._too_big, self._latest = size, None  # drop our reference at once
        else:
            self._latest, self._too_big = bytes(msg.payload), None
        self._wake.set()

    def _message_limit(self) -> int:
        return self.max_bytes * 4 // 3 + 4096  # base64 plus the JSON header

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            payload, self._latest = self._latest, None
            too_big, self._too_big = self._too_big, None
            if too_big is not None:
                self.refused += 1
                self.agent.refuse_model(f"model message of {too_big} bytes is over the limit of "
                                        f"{self._message_limit()} bytes (--max-model-mb "
                                        f"{self.max_bytes / 2**20:g}); nothing was written", origin="mqtt")
            elif payload:
                self.handle(payload)

    def handle(self, payload: bytes) -> bool:
        """Check one model message and, if it passes, write it and offer it; True when swapped in."""
        sha = None
        try:
            sha, name, data = self._unpack(payload)
            if sha == self.agent.model.sha256:
                return False
            self.trust.check(data, "mqtt", f"model {name!r} ({sha[:12]}) from MQTT")
        except BadModelFile as exc:
            self.refused += 1
            self.agent.refuse_model(str(exc), sha256=sha, origin="mqtt")
            return False
        path = self.dir / f"{sha}.onnx"
        existed = path.exists()
        if not existed:
            write_bytes(path, data)
        if offer(self.agent, path, sha, origin="mqtt", trust=self.trust, data=data):
            self.accepted += 1
            return True
        self.refused += 1
        if not existed and path != self.agent.model.path:
            path.unlink(missing_ok=True)
        return False

    def _unpack(self, payload: bytes) -> tuple[str, str, bytes]:
        if len(payload) > self._message_limit():
            raise BadModelFile(f"model message of {len(payload)} bytes is over the limit of "
                               f"{self._message_limit()} bytes; nothing was written")
        try:
            header = json.loads(payload)
            sha = str(header["sha256"]).lower()
            name = str(header.get("name", "model.onnx"))[:200]
            data = base64.b64decode(header["onnx_b64"], validate=True)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise BadModelFile("model message is not JSON with 'sha256' and 'onnx_b64' (base64 of the "
                               f"file): {exc}") from None
        if len(data) > self.max_bytes:
            raise BadModelFile(f"model file of {len(data)} bytes is over the limit of {self.max_bytes} bytes "
                               "(--max-model-mb); nothing was written")
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha:
            raise BadModelFile(f"model message says sha256 {sha} but its file has {actual}: damaged in transit?")
        return sha, name, data

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self.connection.unsubscribe(self.topic)
