"""The families ``edgewatch eval skab`` can run, each as a recipe: rows in, model file out.

A recipe fits on a file's training rows only and writes an edgewatch model
file whose card carries the threshold and the decision, so that what is
evaluated is what is deployed. Settings are the same for every file (none
is tuned per file); docs/skab.md says on which files each was chosen.

The torch families import torch only when they fit, so the registry (and
the ``pca`` recipes) work on the base install.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgewatch.errors import BadInput

Fit = Callable[[np.ndarray, list[str], Path, int, str], None]

# SKAB's two temperature channels move with the water and motor heating over tens of minutes: 400 s of
# training cannot show their normal range, so the pca recipe leaves them out of the score (docs/skab.md)
SLOW_FEATURES = ("Temperature", "Thermocouple")


@dataclass(frozen=True)
class SkabFamily:
    name: str
    summary: str
    fit: Fit
    needs_torch: bool = False

    def check_available(self) -> None:
        if self.needs_torch:
            from edgewatch.errors import require_torch

            require_torch()


def _pca(ignore: tuple[str, ...]) -> Fit:
    def fit(values: np.ndarray, features: list[str], out: Path, seed: int, key: str) -> None:
        from edgewatch.train.pca import PcaConfig, train_pca

        train_pca(values, features, out, PcaConfig(ignore=[f for f in ignore if f in features]),
                  trained_on={"data": f"SKAB {key}, first {len(values)} rows"})
    return fit


FAMILIES: dict[str, SkabFamily] = {}


def register(family: SkabFamily) -> None:
    FAMILIES[family.name] = family


def resolve(name: str) -> SkabFamily:
    if name not in FAMILIES:
        raise BadInput(f"unknown SKAB family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


register(SkabFamily("pca", "T²+Q of the window mean (window 10), NumPy only, temperatures ignored",
                    _pca(SLOW_FEATURES)))
register(SkabFamily("pca-all", "the same on all 8 sensors", _pca(())))
