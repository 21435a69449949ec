"""Fashion-MNIST (Xiao et al., 2017) from the official idx files.

Searched in each root from `data_roots` under `fashion-mnist/`, then in `/usr/share/datasets/fashion-mnist`
(Debian's `dataset-fashion-mnist`). Files may be gzip-compressed (`.gz`) or plain.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from grl_aecnn.data.imageset import ImageSet
from grl_aecnn.data.locate import data_roots
from grl_aecnn.errors import DatasetCorruptError, DatasetNotFoundError

FASHION_MNIST_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """An idx array of unsigned bytes (magic 0x0000 08 <ndim>), checked against its declared size."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise DatasetCorruptError(f"{path}: cannot read ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] == 0:
        raise DatasetCorruptError(f"{path}: not an unsigned-byte idx file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetCorruptError(f"{path}: truncated idx header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DatasetCorruptError(f"{path}: {len(raw) - header} data bytes, header declares {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def load_fashion_mnist(split: str, root: str | os.PathLike | None = None) -> ImageSet:
    if split not in FILES:
        raise ValueError(f"split must be one of {tuple(FILES)}, got {split!r}")
    image_stem, label_stem = FILES[split]
    searched = [base / "fashion-mnist" for base in data_roots(root)] + [DEBIAN_DIR]
    for directory in searched:
        image_file, label_file = _find(directory, image_stem), _find(directory, label_stem)
        if image_file and label_file:
            images, labels = read_idx(image_file), read_idx(label_file)
            if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
                raise DatasetCorruptError(f"{directory}: images {images.shape} and labels {labels.shape} disagree")
            if labels.max(initial=0) >= len(FASHION_MNIST_CLASSES):
                raise DatasetCorruptError(f"{label_file}: label {labels.max()} out of range")
            return ImageSet(
                "fashion-mnist", split, np.ascontiguousarray(images[..., None]), labels.astype(np.int64),
                FASHION_MNIST_CLASSES, str(directory), FASHION_MNIST_MEAN, FASHION_MNIST_STD,
            )
    places = "\n  ".join(str(d) for d in searched)
    raise DatasetNotFoundError(
        f"Fashion-MNIST ({split}) not found. Searched for {image_stem}[.gz] and {label_stem}[.gz] in:\n  {places}\n"
        "Install it with `apt-get install -y dataset-fashion-mnist`, or put the official idx files "
        "in $GRL_AECNN_DATA/fashion-mnist/."
    )
