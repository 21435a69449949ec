"""CIFAR-10 (Krizhevsky, 2009) from an ImageFolder zip or directory, or the official python archive.

Each root from `data_roots` is searched for, in order:
  <root>/cifar10-jpeg/<split>.zip      ImageFolder zip (the offline JPEG copy)
  <root>/cifar10-jpeg/<split>/         ImageFolder directory
  <root>/cifar10/<split>/              ImageFolder directory
  <root>/cifar-10-python.tar.gz        the official archive
With download=True and nothing found, the official archive is fetched into the user cache and its
MD5 verified before use.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from grl_aecnn.data.download import download_verified
from grl_aecnn.data.imagefolder import read_imagefolder_dir, read_imagefolder_zip
from grl_aecnn.data.imageset import ImageSet
from grl_aecnn.data.locate import data_roots, user_cache_dir
from grl_aecnn.errors import DatasetCorruptError, DatasetNotFoundError

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
OFFICIAL_ARCHIVE = "cifar-10-python.tar.gz"
SPLITS = ("train", "test")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """The official batches are pickles: allow only what numpy arrays need, nothing executable."""

    ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return super().find_class(module, name)


def _read_batch(archive: tarfile.TarFile, member: str, where: str) -> dict:
    try:
        handle = archive.extractfile(member)
    except KeyError as exc:
        raise DatasetCorruptError(f"{where}: member {member} is missing") from exc
    if handle is None:
        raise DatasetCorruptError(f"{where}: member {member} is not a file")
    try:
        batch = _ArrayOnlyUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()
    except Exception as exc:  # any unpickling failure means a damaged or foreign archive
        raise DatasetCorruptError(f"{where}:{member}: not a CIFAR-10 batch ({exc})") from exc
    if not isinstance(batch, dict):
        raise DatasetCorruptError(f"{where}:{member}: not a CIFAR-10 batch")
    return batch


def read_official_archive(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels from `cifar-10-python.tar.gz`."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    try:
        archive = tarfile.open(path, "r:gz")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetCorruptError(f"{path}: not a readable tar.gz archive ({exc})") from exc
    images, labels = [], []
    try:
        with archive:
            for name in names:
                batch = _read_batch(archive, f"cifar-10-batches-py/{name}", str(path))
                data, batch_labels = batch.get(b"data"), batch.get(b"labels")
                if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072 \
                        or batch_labels is None or len(batch_labels) != data.shape[0]:
                    raise DatasetCorruptError(f"{path}:{name}: unexpected batch layout")
                images.append(data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
                labels.append(np.asarray(batch_labels, dtype=np.int64))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetCorruptError(f"{path}: damaged archive ({exc})") from exc
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _candidates(root: Path, split: str) -> list[Path]:
    return [
        root / "cifar10-jpeg" / f"{split}.zip",
        root / "cifar10-jpeg" / split,
        root / "cifar10" / split,
        root / OFFICIAL_ARCHIVE,
    ]


def _read(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if path.name == OFFICIAL_ARCHIVE:
        return read_official_archive(path, split)
    reader = read_imagefolder_zip if path.suffix == ".zip" else read_imagefolder_dir
    images, labels, classes = reader(path)
    if classes != CIFAR10_CLASSES:
        raise DatasetCorruptError(f"{path}: class folders {list(classes)} are not CIFAR-10's {list(CIFAR10_CLASSES)}")
    if images.shape[1:] != (32, 32, 3):
        raise DatasetCorruptError(f"{path}: images are {images.shape[1:]}, CIFAR-10 images are 32x32x3")
    return images, labels


def load_cifar10(
    split: str,
    root: str | os.PathLike | None = None,
    download: bool = False,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
) -> ImageSet:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    searched: list[Path] = []
    found: Path | None = None
    for base in data_roots(root):
        for candidate in _candidates(base, split):
            searched.append(candidate)
            if candidate.exists():
                found = candidate
                break
        if found:
            break
    if found is None and download:
        found = download_verified(url, user_cache_dir() / OFFICIAL_ARCHIVE, md5)
    if found is None:
        places = "\n  ".join(map(str, searched))
        raise DatasetNotFoundError(
            f"CIFAR-10 ({split}) not found. Searched:\n  {places}\n"
            "Set GRL_AECNN_DATA to a folder holding cifar10-jpeg/{train,test}.zip, "
            f"or put {OFFICIAL_ARCHIVE} there, or run `grl-aecnn data fetch cifar10` where the internet is reachable."
        )
    images, labels = _read(found, split)
    return ImageSet("cifar10", split, images, labels, CIFAR10_CLASSES, str(found), CIFAR10_MEAN, CIFAR10_STD)
