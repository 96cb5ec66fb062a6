"""Training the conv image autoencoder (S2) on clean images, with early stopping.

Images go in as raw pixels 0–255; the scorer scales them to 0–1 inside
the graph. After the autoencoder is trained, its score head is fitted
(:func:`fit_score_head`): the Gaussians of the feature and image
statistics and the nearest-neighbour banks of codes and layouts on the
training images, then each test's mean and spread on the clean validation
images. The threshold is ``mean + k·std`` (``k = 3``) of the combined
score on those validation images, so it is set without ever seeing a
corrupted image. Calibration samples (for static quantization and the
export parity check) are validation images plus a few corrupted copies, so
that parity is checked on both sides of the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgewatch.contract import Scaler, ScoreStats, Task
from edgewatch.data.corrupt import Corruption, corrupt
from edgewatch.contract.drift_reference import drift_reference_from
from edgewatch.errors import BadInput, require_torch
from edgewatch.export.scoring import score_batches
from edgewatch.models.conv_ae import FAMILY, ConvAeConfig, ConvAutoencoder, ImageScorer
from edgewatch.train.density import fit_whitening
from edgewatch.train.loop import TrainConfig, TrainResult, fit

# corruptions mixed into the calibration set, so that static quantization sees their activation ranges
# and parity is checked on both sides of the threshold, for detail added and detail removed
CALIBRATION_CORRUPTIONS = (Corruption.GAUSSIAN_NOISE, Corruption.OCCLUSION, Corruption.STRIPES,
                           Corruption.BLUR, Corruption.LOW_CONTRAST, Corruption.PIXELATE)

SCORE_TEXT = ("soft maximum T*log(sum(exp(z/T))), T = 2, of seven z-scores against clean validation images: "
              "log reconstruction MSE (pixels 0-1), "
              "log Mahalanobis distance (Gaussian fitted on the training images) of the conv stages' channel "
              "means and stds, log squared distance to the nearest training image's bottleneck code and "
              "4x4-pooled layout, log Mahalanobis distance of image statistics (moments of pixel differences, "
              "8x8 block-DCT energies), |z| of the log mean squared pixel gradient (detail lost or added), "
              "log(1 + number of flat non-black 7x7 windows) (detail lost in one place); "
              "feature_error is the reconstruction MSE of each pixel row")


@dataclass
class ConvAeRun:
    scorer: Any  # ImageScorer
    model_config: ConvAeConfig
    train_result: TrainResult
    val_scores: np.ndarray
    threshold: float
    threshold_method: str
    calibration: np.ndarray  # [N, 1, S, S] raw pixels
    card_fields: dict[str, Any] = field(default_factory=dict)


def default_train_config(**changes: Any) -> TrainConfig:
    """Adam 2e-3, up to 30 epochs, stop after 3 without validation improvement."""
    base = dict(epochs=30, batch_size=64, lr=2e-3, lr_gamma=1.0, patience=3, min_delta=1e-5, desc="conv-ae")
    base.update(changes)
    return TrainConfig(**base)


def split_images(images: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded shuffle split into (train, validation)."""
    order = np.random.default_rng(seed).permutation(len(images))
    n_val = max(1, int(round(len(images) * val_fraction)))
    return images[order[n_val:]], images[order[:n_val]]


def _as_batch(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images, dtype=np.float32)
    return x[:, None] if x.ndim == 3 else x


def train_conv_ae(train_images: np.ndarray, val_images: np.ndarray, model_config: ConvAeConfig | None = None,
                  train_config: TrainConfig | None = None, sigmas: float = 3.0,
                  trained_on: dict[str, Any] | None = None,
                  init_state: dict[str, Any] | None = None) -> ConvAeRun:
    """Fit on clean ``train_images`` ``[n, S, S]`` (0–255), early-stop and calibrate on ``val_images``.

    ``init_state`` (a conv-ae checkpoint's ``state_dict``) starts from trained
    autoencoder weights; with ``epochs=0`` only the score head and the
    threshold are fitted, which is how a checkpoint from an older score
    gets the current one without hours of training.
    """
    torch = require_torch()
    train_x, val_x = _as_batch(train_images), _as_batch(val_images)
    if len(train_x) < 2 or len(val_x) < 2:
        raise BadInput(f"need at least 2 training and 2 validation images, got {len(train_x)} and {len(val_x)}")
    size = train_x.shape[-1]
    cfg = model_config or ConvAeConfig(size=size)
    if train_x.shape[1:] != (1, cfg.size, cfg.size) or val_x.shape[1:] != train_x.shape[1:]:
        raise BadInput(f"images of shape {train_x.shape[1:]} / {val_x.shape[1:]} do not fit a "
                       f"{cfg.size}x{cfg.size} model")
    tcfg = train_config or default_train_config()
    torch.manual_seed(tcfg.seed)
    model = ConvAutoencoder(cfg)
    if init_state is not None:
        weights = {k[len("model."):]: v for k, v in init_state.items() if k.startswith("model.")}
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise BadInput(f"the initial weights do not fit a {cfg.channels}/{cfg.dense} conv-ae: "
                           f"{str(exc).splitlines()[0]}") from exc
    if tcfg.epochs > 0:
        result = fit(model, torch.from_numpy(train_x / 255.0).float(), tcfg,
                     val_inputs=torch.from_numpy(val_x / 255.0).float())
    else:
        result = TrainResult()
    model.eval()
    scorer = ImageScorer(model).eval()
    head = fit_score_head(scorer, train_x, val_x, seed=tcfg.seed)
    val_scores, _ = score_batches(scorer, val_x)
    threshold = float(val_scores.mean() + sigmas * val_scores.std())
    method = f"mean + {sigmas:g}*std of the combined score on {len(val_x)} clean validation images"
    train_scores, _ = score_batches(scorer, train_x[:2048])
    rng = np.random.default_rng(tcfg.seed)
    clean = val_x[:192]
    step = len(CALIBRATION_CORRUPTIONS)
    bad = [corrupt(val_x[i::step][:16, 0], kind, 3, rng)[:, None] for i, kind in enumerate(CALIBRATION_CORRUPTIONS)]
    calibration = np.concatenate([clean, *bad]).astype(np.float32)
    corrupted_scores, _ = score_batches(scorer, np.concatenate(bad))
    rows = cfg.size
    card_fields = dict(
        family=FAMILY, task=Task.RECONSTRUCT.value, sample_shape=[1, cfg.size, cfg.size],
        features=[f"row{r:02d}" for r in range(rows)],
        scaler=Scaler("minmax", [0.0] * rows, [1.0 / 255.0] * rows), score=SCORE_TEXT,
        threshold=threshold, threshold_method=method,
        score_stats={"normal": ScoreStats.of(val_scores), "train": ScoreStats.of(train_scores),
                     "corrupted": ScoreStats.of(corrupted_scores)},
        trained_on=dict(trained_on or {}, images=int(len(train_x)), val_images=int(len(val_x)),
                        epochs=result.epochs_run, best_epoch=result.best_epoch + 1,
                        stopped_early=result.stopped_early, score_head=head),
        window=0, horizon=0, stride=1,
        # drift reference per feature = per row: the row's mean pixel value per image
        drift_reference=drift_reference_from(train_x[:, 0].mean(axis=2)),
    )
    return ConvAeRun(scorer, cfg, result, val_scores, threshold, method, calibration, card_fields)


BANK_LIMIT = 8192  # nearest-neighbour banks keep at most this many training images (seeded sample)


def _encodings_of(scorer: Any, images: np.ndarray, batch_size: int = 512) -> dict[str, np.ndarray]:
    """What the head is fitted on (:meth:`ImageScorer.encodings`) for raw-pixel images, float64."""
    torch = require_torch()
    parts: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size], dtype=np.float32))
            for name, value in scorer.encodings(xb).items():
                parts.setdefault(name, []).append(value.double().numpy())
    return {name: np.concatenate(v) for name, v in parts.items()}


def _components_of(scorer: Any, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    torch = require_torch()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size], dtype=np.float32))
            out.append(scorer.components(xb)[0].double().numpy())
    return np.concatenate(out)


def fit_score_head(scorer: Any, train_x: np.ndarray, val_x: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Fit the densities and banks on ``train_x``, standardize each test on ``val_x`` (both clean, raw pixels).

    The densities and nearest-neighbour banks come from the training
    images and the tests are standardized on validation images the network
    never trained on: a Mahalanobis distance is smaller on the points it
    was fitted on, a nearest-neighbour distance is zero on its own bank, and
    the autoencoder reconstructs its training images better, so
    training-set statistics would put clean test images in the tail.
    Returns a summary for the card's ``trained_on``.
    """
    torch = require_torch()
    scorer.eval()
    enc = _encodings_of(scorer, train_x)
    features, image = fit_whitening(enc["features"]), fit_whitening(enc["statistics"])
    keep = np.arange(len(train_x))
    if len(keep) > BANK_LIMIT:
        keep = np.sort(np.random.default_rng(seed).choice(len(keep), BANK_LIMIT, replace=False))
    code_bank, layout_bank = enc["code"][keep], enc["layout"][keep]
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))  # noqa: E731
    k = len(scorer.COMPONENTS)
    scorer.set_head(feature_mean=t(features.mean), feature_whitening=t(features.matrix),
                    image_mean=t(image.mean), image_whitening=t(image.matrix),
                    code_bank_t=t(code_bank.T), code_bank_sq=t((code_bank ** 2).sum(axis=1)),
                    layout_bank_t=t(layout_bank.T), layout_bank_sq=t((layout_bank ** 2).sum(axis=1)),
                    component_mean=t(np.zeros(k)), component_std=t(np.ones(k)))
    raw = _components_of(scorer, val_x)
    mean, std = raw.mean(axis=0), np.maximum(raw.std(axis=0), 1e-6)
    for name, (m, sd) in scorer.FIXED_STANDARDIZATION.items():
        k_fixed = scorer.COMPONENTS.index(name)
        mean[k_fixed], std[k_fixed] = m, sd
    scorer.set_head(component_mean=t(mean), component_std=t(std))
    return {"components": list(scorer.COMPONENTS), "density_images": features.n,
            "density_dims": [int(len(features.mean)), int(len(image.mean))],
            "ledoit_wolf_shrinkage": [round(features.shrinkage, 4), round(image.shrinkage, 4)],
            "bank_images": int(len(keep)), "bank_dims": [int(code_bank.shape[1]), int(layout_bank.shape[1])],
            "standardized_on": int(len(val_x)), "fixed_scale": sorted(scorer.FIXED_STANDARDIZATION),
            "clean_mean": [round(float(v), 4) for v in mean], "clean_std": [round(float(v), 4) for v in std]}
