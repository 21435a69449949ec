"""Normalization and train-time augmentation on whole batches (fast on CPU, seeded)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from grl_aecnn.data.imageset import ImageSet


def to_tensor(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 NHWC -> normalized float32 NCHW."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - m) / s).contiguous()


def augment_batch(x: torch.Tensor, generator: torch.Generator, padding: int = 4, cutout: int = 0) -> torch.Tensor:
    """Random crop with zero padding (after normalization, i.e. padding with the mean) and horizontal flip.

    `cutout` > 0 then zeroes (sets to the mean) one `cutout` x `cutout` square per image whose centre is uniform
    over the image, clipped at the borders (DeVries & Taylor, 2017). With cutout 0 the generator draws exactly
    what it drew before the option existed, so earlier seeded runs resume unchanged.
    """
    n, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = int(offsets[i, 0]), int(offsets[i, 1])
        crop = padded[i, :, dy:dy + h, dx:dx + w]
        out[i] = crop.flip(-1) if flips[i] else crop
    if cutout > 0:
        tops = (torch.randint(0, h, (n,), generator=generator) - cutout // 2).tolist()
        lefts = (torch.randint(0, w, (n,), generator=generator) - cutout // 2).tolist()
        for i, (top, left) in enumerate(zip(tops, lefts)):
            out[i, :, max(top, 0):top + cutout, max(left, 0):left + cutout] = 0.0
    return out


def iterate_batches(
    data: ImageSet,
    batch_size: int,
    generator: torch.Generator | None = None,
    augment: bool = False,
    cutout: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalized batches; shuffled and augmented (crop, flip, optional cutout) when a generator is given."""
    order = torch.randperm(len(data), generator=generator) if generator is not None else torch.arange(len(data))
    labels = torch.from_numpy(data.labels)
    for start in range(0, len(data), batch_size):
        idx = order[start:start + batch_size].numpy()
        x = to_tensor(data.images[idx], data.mean, data.std)
        if augment:
            if generator is None:
                raise ValueError("augmentation needs a seeded generator")
            x = augment_batch(x, generator, cutout=cutout)
        yield x, labels[idx]
