"""An image classification split held in memory as uint8 arrays."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 NHWC, labels as int64, and where they came from."""

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    checksum: str = field(default="")

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 NHWC, got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{len(self.labels)} labels for {self.images.shape[0]} images")
        if not self.checksum:
            object.__setattr__(self, "checksum", content_checksum(self.images, self.labels))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def take(self, limit: int | None) -> ImageSet:
        """A fixed subset of `limit` samples (all of them when limit is None).

        Files are stored class by class, so the subset is the first `limit` of a fixed permutation
        (seed 0), which keeps the classes mixed; the order within the subset is the stored order.
        """
        if limit is None or limit >= len(self):
            return self
        idx = np.sort(np.random.default_rng(0).permutation(len(self))[:limit])
        return ImageSet(
            self.name, self.split, self.images[idx], self.labels[idx], self.classes,
            self.source, self.mean, self.std,
        )


def content_checksum(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of the decoded pixels and labels: the same data gives the same checksum from any container."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return "sha256:" + digest.hexdigest()
