"""Values as JSON-ready data, for the card's JSON properties."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Mapping


def to_plain(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses, mappings, enums and NumPy values become plain ones."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "tolist") and callable(value.tolist):  # NumPy arrays and scalars
        return value.tolist()
    return value
