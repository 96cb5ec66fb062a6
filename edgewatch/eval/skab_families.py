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
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from edgewatch.errors import BadInput

if TYPE_CHECKING:
    from edgewatch.data.skab import SkabFile

Fit = Callable[["SkabFile", int, Path, int], None]
"""(experiment file, its training rows, the model file to write, seed): fits on ``file``'s first rows only."""

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
    def fit(file: SkabFile, rows: int, out: Path, seed: int) -> None:
        from edgewatch.numpy_models.pca import PcaConfig, train_pca

        features = file.features
        train_pca(file.values[:rows], features, out, PcaConfig(ignore=[f for f in ignore if f in features]),
                  trained_on={"data": f"SKAB {file.key}, first {rows} rows"})
    return fit


def _fit_as_a_user(file: SkabFile, rows: int, out: Path, seed: int) -> None:
    """The realistic protocol: the file's first rows, as the user's CSV (labels cut off), through 'edgewatch fit'
    with no options; nothing SKAB-specific is passed."""
    import tempfile

    from edgewatch.fit.pipeline import fit_model

    lines = file.path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(";")
    keep = [i for i, h in enumerate(header) if h.strip() not in ("anomaly", "changepoint")]
    with tempfile.TemporaryDirectory(prefix="edgewatch-skab-fit-") as tmp:
        normal = Path(tmp) / f"{file.group}-{file.name}-normal.csv"
        normal.write_text("\n".join(";".join(line.split(";")[i] for i in keep) for line in lines[:rows + 1]) + "\n",
                          encoding="utf-8")
        fit_model([normal], out)


def _torch_ae(family: str, build: Callable[[int], Any], window: int, train: dict[str, Any], factor: float = 3.0,
              k: int = 1, n: int = 1, ignore: tuple[str, ...] = ()) -> Fit:
    """A torch window autoencoder: trained on the rows, thresholded from its own windows, exported fp32."""
    def fit(file: SkabFile, rows: int, out: Path, seed: int) -> None:
        import torch

        from edgewatch.contract import Quantization
        from edgewatch.export.onnx import export_model
        from edgewatch.train.loop import TrainConfig
        from edgewatch.train.window_ae import WindowAeConfig, train_window_ae

        torch.set_num_threads(1)
        values, features = file.values[:rows], file.features
        skip = [f for f in ignore if f in features]
        cfg = WindowAeConfig(window=window, factor=factor, k=k, n=n, ignore=skip,
                             train=TrainConfig(**train, seed=seed, progress=False, desc=family))
        run = train_window_ae(build, family, values, features, cfg,
                              trained_on={"data": f"SKAB {file.key}, first {rows} rows"})
        # parity on 96 windows (64 normal, 32 far over): export checks each one alone too, and that
        # dominated the per-file time with the default 320
        export_model(run.scorer, run.card(Quantization.NONE), out, quantization=Quantization.NONE,
                     calibration=np.concatenate([run.calibration[:64], run.calibration[-32:]]))
    return fit


def _lstm(n_features: int) -> Any:
    from edgewatch.models.lstm_ae import LstmAutoencoder

    return LstmAutoencoder(n_features, 160, 60)


def _conv1d(n_features: int) -> Any:
    from edgewatch.models.conv1d_ae import Conv1dAutoencoder

    return Conv1dAutoencoder(n_features)


FAMILIES: dict[str, SkabFamily] = {}


def register(family: SkabFamily) -> None:
    FAMILIES[family.name] = family


def resolve(name: str) -> SkabFamily:
    if name not in FAMILIES:
        raise BadInput(f"unknown SKAB family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


register(SkabFamily("fit", "what 'edgewatch fit' makes of the first 400 rows with no options (docs/fit.md)",
                    _fit_as_a_user))
register(SkabFamily("pca", "T²+Q of the window mean (window 10), NumPy only, temperatures ignored",
                    _pca(SLOW_FEATURES)))
register(SkabFamily("pca-all", "the same on all 8 sensors", _pca(())))
register(SkabFamily("lstm-ae", "the S0 LSTM autoencoder (160/60) on all 8 sensors, window 10",
                    _torch_ae("lstm-ae", _lstm, 10, {"epochs": 20, "batch_size": 64, "lr": 1e-2, "lr_gamma": 0.9995,
                                                     "patience": 3, "input_noise": 0.05}), needs_torch=True))
register(SkabFamily("conv1d-ae", "1-D conv autoencoder on all 8 sensors, window 32",
                    _torch_ae("conv1d-ae", _conv1d, 32, {"epochs": 30, "batch_size": 64, "lr": 1e-3,
                                                         "lr_gamma": 1.0, "patience": 5}), needs_torch=True))
register(SkabFamily("conv1d-ae-fast", "the conv1d-ae on the 6 fast sensors (temperatures ignored, as pca)",
                    _torch_ae("conv1d-ae", _conv1d, 32, {"epochs": 30, "batch_size": 64, "lr": 1e-3,
                                                         "lr_gamma": 1.0, "patience": 5}, ignore=SLOW_FEATURES),
                    needs_torch=True))
