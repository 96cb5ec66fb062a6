"""Readers for the idx image format (MNIST, Fashion-MNIST) and image arrays.

Images travel through edgewatch as ``[n, 28, 28]`` arrays of raw pixel
values 0–255 (uint8 on disk, float32 in the graph, whose scaler maps them
to 0–1). Nothing is ever downloaded: the files must already be there.
"""

from __future__ import annotations

import enum
import gzip
import os
import struct
from pathlib import Path

import numpy as np

from edgewatch.errors import BadInput

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049


class ImageDataset(str, enum.Enum):
    MNIST = "mnist"
    FASHION_MNIST = "fashion-mnist"


def datasets_root() -> Path:
    """The shared datasets folder: ``$EDGEWATCH_DATASETS`` or ``../shared/datasets`` beside the repo."""
    env = os.environ.get("EDGEWATCH_DATASETS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "datasets"


def _open(path: Path):  # noqa: ANN202 - a binary file object
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an idx images (``[n, rows, cols]``) or labels (``[n]``) file, gzipped or not."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"idx file {p} does not exist (edgewatch never downloads data; "
                       "point --data-dir at the folder holding the .gz files)")
    try:
        with _open(p) as fh:
            magic, count = struct.unpack(">II", fh.read(8))
            if magic == IMAGE_MAGIC:
                rows, cols = struct.unpack(">II", fh.read(8))
                shape: tuple[int, ...] = (count, rows, cols)
            elif magic == LABEL_MAGIC:
                shape = (count,)
            else:
                raise BadInput(f"{p} is not an idx file (magic {magic}, expected {IMAGE_MAGIC} or {LABEL_MAGIC})")
            data = np.frombuffer(fh.read(), dtype=np.uint8)
    except (OSError, struct.error, EOFError) as exc:
        raise BadInput(f"{p} cannot be read as idx: {exc}") from exc
    need = int(np.prod(shape))
    if data.size < need:
        raise BadInput(f"{p} is truncated: {data.size} bytes of data for shape {shape}")
    return data[:need].reshape(shape).copy()


def dataset_files(data_dir: str | os.PathLike[str], dataset: ImageDataset) -> dict[str, Path]:
    """The idx files of a dataset folder that exist, keyed ``train``/``test``."""
    base = Path(data_dir)
    if (base / dataset.value).is_dir():
        base = base / dataset.value
    found = {}
    for split, stem in (("train", "train-images-idx3-ubyte"), ("test", "t10k-images-idx3-ubyte")):
        for name in (stem + ".gz", stem):
            if (base / name).is_file():
                found[split] = base / name
                break
    return found


def load_dataset_images(data_dir: str | os.PathLike[str], dataset: ImageDataset) -> dict[str, np.ndarray]:
    """All images of a dataset that are present (MNIST here has only its test images)."""
    files = dataset_files(data_dir, dataset)
    if not files:
        raise BadInput(f"no {dataset.value} idx image files under {data_dir}; expected "
                       "train-images-idx3-ubyte.gz and/or t10k-images-idx3-ubyte.gz")
    return {split: read_idx(p) for split, p in files.items()}


def load_images(path: str | os.PathLike[str]) -> np.ndarray:
    """Images from an ``.npy`` file or an idx file, as float32 ``[n, 28, 28]`` pixel values 0–255."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"image file {p} does not exist")
    if p.suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except ValueError as exc:
            raise BadInput(f"{p} is not a plain numeric .npy file: {exc}") from exc
    else:
        arr = read_idx(p)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise BadInput(f"{p} holds an array of shape {arr.shape}; expected [n, rows, cols] images")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise BadInput(f"{p} holds non-finite pixel values")
    return arr
