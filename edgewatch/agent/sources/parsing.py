"""Turning one wire message into a measurement, or a reason to skip it.

Accepted forms: a JSON array of numbers (``[0.1, 0.2, 0.3, 0.4]``) or an
object ``{"values": [...], "ts": <epoch seconds or ISO time>, "stream": "id"}``
(``ts`` and ``stream`` optional; ``v``/``value`` accepted for ``values``,
``t``/``time``/``timestamp`` for ``ts``; a number time is epoch seconds, or
milliseconds, microseconds or nanoseconds by its size, as ``fit`` reads a
file's). Two more forms are decoded here
and made into rows by :mod:`edgewatch.agent.sources.rows`: an object keyed
by the model's feature names (:func:`parse_object`), and one feature's
reading on a topic of its own (:func:`parse_reading`). A model with state
features read from text (the card's ``states``) takes their words in an
array as their codes (:class:`StateCells`). Anything else is
*bad input*: it is returned as a :class:`BadReason`, never raised, because
the agent must not crash on data.
"""

from __future__ import annotations

import enum
import json
import math
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from edgewatch.wire.csv_cells import MISSING as MISSING_TEXT
from edgewatch.wire.csv_states import StateLookup
from edgewatch.wire.csv_times import EPOCH_UNITS

DEFAULT_MAX_BYTES = 64 * 1024
MAX_UNKNOWN_STATES_TOLD = 20  # (feature, text) pairs said in the log per reader (whoever publishes chooses texts)
log = logging.getLogger("edgewatch.agent.sources")
# timestamps a measurement may carry: 1900-01-01 to 2200-01-01 UTC (anything else is a broken clock or an
# attack, and would not even print: datetime stops at year 9999)
MIN_TS = -2208988800.0
MAX_TS = 7258118400.0
FLOAT32_MAX = 3.4028234663852886e38


class BadReason(str, enum.Enum):
    BINARY = "binary"  # bytes that are not UTF-8 text
    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    WRONG_TYPE = "wrong_type"  # valid JSON, but not an array or object
    NO_VALUES = "no_values"  # object without a values field
    WRONG_ARITY = "wrong_arity"
    NOT_NUMBER = "not_number"  # a string, bool, null or nested value
    NON_FINITE = "non_finite"  # NaN or infinity
    OVERFLOW = "overflow"  # finite, but beyond float32 (the model's input type)
    BAD_TIMESTAMP = "bad_timestamp"  # not a time, or outside MIN_TS..MAX_TS
    BAD_STREAM = "bad_stream"
    TOO_MANY_STREAMS = "too_many_streams"  # a new stream id past --max-streams
    # field protocols (edgewatch.agent.sources): the same counter, one reason each
    BAD_PAYLOAD = "bad_payload"  # a binary payload (Sparkplug B protobuf) that does not decode
    UNKNOWN_ALIAS = "unknown_alias"  # Sparkplug data naming a metric alias no birth certificate defined
    UNKNOWN_MESSAGE = "unknown_message"  # a spBv1.0 topic that is no Sparkplug B message type or layout
    TOO_MANY_NODES = "too_many_nodes"  # a Sparkplug node or device past the source's sparkplug_max_nodes
    TOO_MANY_ALIASES = "too_many_aliases"  # a Sparkplug birth past sparkplug_max_aliases for its edge node
    BAD_STATUS = "bad_status"  # an OPC UA value whose status code is not Good; a reading whose quality is "bad"
    TIMEOUT = "timeout"  # a polled device (Modbus) did not answer in time
    EXCEPTION_RESPONSE = "exception_response"  # a Modbus exception code instead of registers
    # a reply or reading a source could not use: a Modbus reply with another function code or register count
    # than asked, bytes that do not decode, or any error raised while reading one message
    BAD_REPLY = "bad_reply"
    # rows assembled from values that arrive apart or with gaps (edgewatch.agent.sources.rows)
    MISSING_FEATURE = "missing_feature"  # a feature with no value on this stream yet: the row is skipped
    STALE_FEATURE = "stale_feature"  # a feature's last value older than max_age, or a value out of order
    UNKNOWN_FEATURE = "unknown_feature"  # a topic or message naming a feature the model does not have
    # a text for a state feature (read from text by fit, e.g. Run/Stop) that the normal data never held (Fault)
    UNKNOWN_STATE = "unknown_state"


@dataclass(slots=True)
class Measurement:
    values: list[float]
    ts: float | None = None
    stream: str | None = None


_VALUE_KEYS = ("values", "v", "value")
_TIME_KEYS = ("ts", "t", "time", "timestamp")
_QUALITY_KEYS = ("quality", "q")
META_KEYS = frozenset((*_TIME_KEYS, "stream"))  # keys of an object keyed by feature name that are no feature
_MAX_STREAM_ID = 200


def _nan_const(name: str) -> float:
    # Python's json writes NaN, Infinity and -Infinity: a NaN is "no value" (held), an infinity non_finite, as the
    # same words as text are (an overrange a gateway wrote as Infinity was held as the sensor's last value before)
    return float(name)


# one decoder for every message: json.loads(..., parse_constant=...) builds a new one per call
_DECODE = json.JSONDecoder(parse_constant=_nan_const).decode

try:  # a compiled decoder: a fifth of the stdlib's time per message (the agent's largest cost after the model)
    from orjson import JSONDecodeError as _FastError
    from orjson import loads as _fast_loads
except ImportError:  # not installed: the stdlib decoder alone, same results
    _fast_loads = None


def parse_message(raw: str | bytes, n_features: int, max_bytes: int = DEFAULT_MAX_BYTES,
                  value_keys: tuple[str, ...] = _VALUE_KEYS, states: StateCells | None = None
                  ) -> Measurement | BadReason:
    """Parse one message for a model with ``n_features`` inputs; ``value_keys`` from :func:`value_keys_beside`.

    Valid messages go through orjson when it is installed; whatever it
    refuses (bad UTF-8, ``NaN`` literals, integers past 64 bits, nesting
    past 1024) is decoded again by the stdlib decoder, so the reason given
    is the same with or without it. ``states``: the model's state features
    (:class:`StateCells`), whose texts in an array (``[2.1, "Run"]``) are
    read as their codes; None (a model without them) changes nothing.
    """
    if len(raw) > max_bytes:
        return BadReason.TOO_LARGE
    if _fast_loads is not None:
        try:
            obj = _fast_loads(raw)
        except (_FastError, TypeError):
            pass
        else:
            m = _measurement(obj, n_features, value_keys)
            return m if m is not BadReason.NOT_NUMBER or states is None else states.coded(obj, n_features, value_keys)
    obj = _decode_slowly(raw)
    if type(obj) is BadReason:
        return obj
    m = _measurement(obj, n_features, value_keys)
    return m if m is not BadReason.NOT_NUMBER or states is None else states.coded(obj, n_features, value_keys)


class StateCells:
    """The model's state features (the card's ``states``) by position: live texts read as their codes.

    One per reader of values (a row assembler, the agent loop's parser):
    it also says once per feature and text, in the log, which text the
    normal data never held (counted ``unknown_state``; the row is skipped,
    never given a guessed code).
    """

    def __init__(self, features: Sequence[str], states: Mapping[str, Mapping[str, float]], source: str = "") -> None:
        self.features = list(features)
        self.lookups: list[StateLookup | None] = [StateLookup(states[f]) if f in states else None
                                                   for f in self.features]
        self.source = source
        self._told: set[tuple[int, str]] = set()

    @classmethod
    def of(cls, features: Sequence[str], states: Mapping[str, Mapping[str, float]] | None, source: str = ""
           ) -> StateCells | None:
        """None for a model without state features (every reader's fast path stays as it was)."""
        return cls(features, states, source) if states else None

    def __getitem__(self, j: int) -> StateLookup | None:
        return self.lookups[j]

    def value(self, j: int, raw: object) -> float | BadReason | None:
        """Feature ``j``'s code for the text or bool ``raw``; None when ``raw`` is no state word for it (a number,
        a blank: read as any value is); ``unknown_state`` for a text the normal data never held."""
        lookup = self.lookups[j]
        if lookup is None or (type(raw) is not str and type(raw) is not bool):
            return None
        code = lookup.code(raw)
        if code is not None:
            return code
        if type(raw) is str:
            text = raw.strip()
            if text.lower() in MISSING_TEXT:
                return None
            try:
                float(text.replace(",", "."))
                return None  # a number as text: the code itself
            except ValueError:
                pass
        self.unknown(j, raw)
        return BadReason.UNKNOWN_STATE

    def unknown(self, j: int, raw: object) -> None:
        key = (j, str(raw).strip().casefold()[:100])
        if key in self._told or len(self._told) >= MAX_UNKNOWN_STATES_TOLD:
            return
        self._told.add(key)
        log.warning("source %s: %r is %r, a state the normal data of the model never held (its states: %s): its "
                    "rows are skipped and counted unknown_state until a known state comes. If it is a normal state, "
                    "fit the model on normal data that holds it (said once per feature and text)",
                    self.source or "?", self.features[j], raw, self.lookups[j].known())  # type: ignore[union-attr]

    def coded(self, obj: object, n_features: int, value_keys: tuple[str, ...]) -> Measurement | BadReason:
        """A decoded array or values message with its state texts as codes (:func:`parse_message`)."""
        values = _first(obj, value_keys) if type(obj) is dict else obj
        if type(values) is not list or len(values) != n_features:
            return BadReason.NOT_NUMBER
        coded = list(values)
        for j, raw in enumerate(values):
            v = self.value(j, raw)
            if type(v) is BadReason:
                return v
            if v is not None:
                coded[j] = v
        if type(obj) is dict:
            obj = {**obj, next(k for k in value_keys if obj.get(k) is not None): coded}
        else:
            obj = coded
        return _measurement(obj, n_features, value_keys)


def _decode_slowly(raw: str | bytes) -> object:
    """The stdlib decoder's JSON value, or its reason for having none (what gives a refused message its reason)."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return BadReason.BINARY
    try:
        return _DECODE(raw)
    except (ValueError, RecursionError):
        return BadReason.NOT_JSON


def _measurement(obj: object, n_features: int, value_keys: tuple[str, ...] = _VALUE_KEYS) -> Measurement | BadReason:
    """A decoded message as a measurement: the rules of :func:`parse_message` after JSON decoding."""
    ts = stream = None
    if type(obj) is dict:
        values = _first(obj, value_keys)
        if values is None:
            return BadReason.NO_VALUES
        if len(obj) > 1 + ("stream" in obj):  # keys beside values and stream: look for a time
            raw_ts = _first(obj, _TIME_KEYS)
            if raw_ts is not None:
                ts = _timestamp(raw_ts)
                if ts is None:
                    return BadReason.BAD_TIMESTAMP
        if len(obj) > 1:
            stream = obj.get("stream")
            if stream is not None and type(stream) is not str:
                if isinstance(stream, (int, float)) and not isinstance(stream, bool):
                    stream = str(stream)
                else:
                    return BadReason.BAD_STREAM
            if stream is not None and (not stream or len(stream) > _MAX_STREAM_ID):
                return BadReason.BAD_STREAM
    else:
        values = obj
    if type(values) is not list:
        if isinstance(values, (int, float)) and not isinstance(values, bool):
            values = [values]
        else:
            return BadReason.WRONG_TYPE
    if len(values) != n_features:
        return BadReason.WRONG_ARITY
    # hot path: JSON floats within float32 (a NaN or an infinity fails the comparison too)
    for v in values:
        if type(v) is not float or not -FLOAT32_MAX <= v <= FLOAT32_MAX:
            checked = _checked(values)
            return checked if type(checked) is BadReason else Measurement(checked, ts, stream)
    return Measurement(values, ts, stream)


def _checked(values: list) -> list[float] | BadReason:
    """The slow path of :func:`_measurement`: integers become floats, anything else gets its reason."""
    out: list[float] = []
    for v in values:
        if type(v) is float:
            f = v
        elif type(v) is int:
            try:
                f = float(v)
            except OverflowError:
                return BadReason.OVERFLOW
        else:
            return BadReason.NOT_NUMBER
        if not math.isfinite(f):
            return BadReason.NON_FINITE
        if not -FLOAT32_MAX <= f <= FLOAT32_MAX:
            return BadReason.OVERFLOW
        out.append(f)
    return out


def check_values(values: list[float], n_features: int) -> BadReason | None:
    """Why a row parsed by a source (a replay CSV, a field protocol) is bad input, or None when it is fine.

    The same rules as :func:`parse_message`: arity, finite, within float32.
    """
    if len(values) != n_features:
        return BadReason.WRONG_ARITY
    for f in values:
        if not math.isfinite(f):
            return BadReason.NON_FINITE
        if not -FLOAT32_MAX <= f <= FLOAT32_MAX:
            return BadReason.OVERFLOW
    return None


def sane_timestamp(ts: float | None) -> bool:
    """A timestamp the agent can order, subtract and print (finite, between MIN_TS and MAX_TS)."""
    return ts is None or (math.isfinite(ts) and MIN_TS <= ts <= MAX_TS)


def _first(obj: dict, keys: tuple[str, ...]) -> object:
    """The value of the first of ``keys`` present in ``obj`` (a plain loop: hot path)."""
    for k in keys:
        v = obj.get(k)
        if v is not None:
            return v
    return None


def _timestamp(value: object) -> float | None:
    """Epoch seconds of a message's time, or None when it is not a sane time (see :func:`sane_timestamp`).

    An epoch number sent as text (``"1700000000"``, as gateways that write every field as a string do) is
    read as the number, after ISO 8601 (which ``"20240501"`` is).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            f = iso_to_epoch(value)
        except (ValueError, OverflowError):
            try:
                value = float(value)
            except ValueError:
                return None
        else:
            return f if sane_timestamp(f) else None
    if isinstance(value, (int, float)):
        try:
            f = float(value)
        except OverflowError:
            return None
        if not math.isfinite(f):
            return None
        size = abs(f)
        for above, per_second in EPOCH_UNITS:  # ms (Node-RED), us and ns (Telegraf, InfluxDB) since the epoch
            if size > above:
                f /= per_second
                break
        return f if sane_timestamp(f) else None
    return None


def iso_to_epoch(text: str) -> float:
    """Epoch seconds of an ISO 8601 time; one without a zone is UTC (not this machine's zone).

    Raises ValueError when ``text`` is not an ISO time (OverflowError when it is beyond what a float holds).
    """
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _decode(raw: str | bytes, max_bytes: int) -> object:
    """The JSON value of a message, or the reason it has none (the stdlib decoder's reasons)."""
    if len(raw) > max_bytes:
        return BadReason.TOO_LARGE
    if _fast_loads is not None:
        try:
            return _fast_loads(raw)
        except (_FastError, TypeError):
            pass
    return _decode_slowly(raw)


def _time_and_stream(obj: dict, time_keys: tuple[str, ...]) -> tuple[float | None, str | None] | BadReason:
    ts = stream = None
    raw_ts = _first(obj, time_keys)
    if raw_ts is not None:
        ts = _timestamp(raw_ts)
        if ts is None:
            return BadReason.BAD_TIMESTAMP
    raw_stream = obj.get("stream")
    if raw_stream is not None:
        if type(raw_stream) is str:
            stream = raw_stream
        elif isinstance(raw_stream, (int, float)) and not isinstance(raw_stream, bool):
            stream = str(raw_stream)
        else:
            return BadReason.BAD_STREAM
        if not stream or len(stream) > _MAX_STREAM_ID:
            return BadReason.BAD_STREAM
    return ts, stream


def value_keys_beside(features: Iterable[str]) -> tuple[str, ...]:
    """The keys read as a message's values (``{"v": [...]}``) for a model with these features: those that name none.

    A model with a feature ``v`` (a voltage) or ``value`` gets
    ``{"v": 230, "i": 5, ...}`` as the object keyed by its features it is:
    read as the values form, its 230 was one value for four features and
    every message was refused ``wrong_arity``.
    """
    names = set(features)
    return tuple(k for k in _VALUE_KEYS if k not in names)


def time_keys_beside(features: Iterable[str]) -> tuple[str, ...]:
    """The keys read as a message's time in an object keyed by these features: those that name no feature.

    A model with a feature ``t`` (a temperature) or ``time`` (a cycle time)
    gets that key's value as the feature: the model's own names are what its
    messages are keyed by, and its value read as the time (21.5 s after 1970)
    set the stream's clock back by decades and its feature was never its own.
    The other time keys still give the time (``{"t": 21.5, "ts": ...}``).
    """
    names = set(features)
    return tuple(k for k in _TIME_KEYS if k not in names)


def parse_object(raw: str | bytes, max_bytes: int = DEFAULT_MAX_BYTES, time_keys: tuple[str, ...] = _TIME_KEYS
                 ) -> tuple[dict, float | None, str | None] | BadReason:
    """A message that is one JSON object: (the object, its time, its stream), with the reasons of :func:`parse_message`.

    For the object keyed by feature name (``{"flow": 12.5, "pressure": 2.1,
    "ts": ...}``) that :mod:`.rows` turns into a row; ``time_keys`` from
    :func:`time_keys_beside` the model's features.
    """
    obj = _decode(raw, max_bytes)
    if type(obj) is BadReason:
        return obj
    if type(obj) is not dict:
        return BadReason.WRONG_TYPE
    meta = _time_and_stream(obj, time_keys)
    if type(meta) is BadReason:
        return meta
    return obj, meta[0], meta[1]  # type: ignore[index]


def parse_reading(raw: str | bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[object, float | None] | BadReason:
    """One feature's message (a topic per sensor): (its value as sent, its time).

    ``12.5``, ``"12.5"``, ``12,5`` (text that is not JSON but one short token,
    judged as a number as text), ``null``, or ``{"value": 12.5, "ts": ...}`` (also
    ``v``; ``timestamp``, ``time`` or ``t`` for the time). The value is
    judged by :func:`edgewatch.agent.sources.rows.cell_value`. A ``quality``
    (or ``q``) that :func:`bad_quality` calls bad makes it ``bad_status``.
    """
    obj = _decode(raw, max_bytes)
    if obj is BadReason.NOT_JSON:
        text = _bare_text(raw)
        if text is None:
            return obj
        return text, None
    if type(obj) is BadReason:
        return obj
    if type(obj) is dict:
        if "value" in obj:
            value = obj["value"]
        elif "v" in obj:
            value = obj["v"]
        else:
            return BadReason.NO_VALUES
        if len(obj) > 1:  # more than a value: perhaps a quality
            quality = _first(obj, _QUALITY_KEYS)
            if quality is not None and bad_quality(quality):
                return BadReason.BAD_STATUS
        raw_ts = _first(obj, _TIME_KEYS)
        ts = None
        if raw_ts is not None:
            ts = _timestamp(raw_ts)
            if ts is None:
                return BadReason.BAD_TIMESTAMP
        return value, ts
    if type(obj) is list:
        return BadReason.WRONG_TYPE
    return obj, None


# quality texts that say the value is not the sensor's present value (compared casefolded, after a prefix "bad")
_BAD_WORDS = frozenset(("invalid", "error", "fault", "failure", "offline", "stale", "not connected",
                        "schlecht", "ungültig", "mauvais", "mauvaise", "invalide", "malo", "mala", "inválido"))


def bad_quality(quality: object) -> bool:
    """Whether a reading's ``quality`` says its value is not to be used.

    Text: starting with ``bad`` in any case (``Bad_SensorFailure``, OPC UA's
    ``BadCommunicationError``), or one of a few words for it, English or not
    (``invalid``, ``offline``, ``schlecht``, ``ungültig``, ``mauvais``...).
    ``false`` (Kepware's IoT Gateway writes ``"q": false``). A number: an
    OPC UA status code of Bad severity (``0x80000000`` and up, or the same
    32 bits read as a negative int32). Any other number is left alone, because
    gateways disagree on what one means: OPC DA's and Sparkplug's 192 and OPC
    UA's 0 are Good, OPC DA's 0 is Bad, and some gateways write 1 for good.
    """
    if quality is False:
        return True
    if type(quality) is int:
        return 0x80000000 <= quality <= 0xFFFFFFFF or -0x80000000 <= quality < 0
    if type(quality) is str:
        text = quality.strip().casefold()
        return text.startswith("bad") or text in _BAD_WORDS
    return False


_BARE_MAX = 40  # characters of a payload that is one number as text (12,5 or -1.5e3), not JSON


def _bare_text(raw: str | bytes) -> str | None:
    """A payload that is a single short token of text (``12,5``: not JSON), or None for anything else."""
    if len(raw) > _BARE_MAX:
        return None
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            raw = bytes(raw).decode("ascii")
        except UnicodeDecodeError:
            return None
    text = raw.strip()
    return text if text and not any(c.isspace() for c in text) else None
