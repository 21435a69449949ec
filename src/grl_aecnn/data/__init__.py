"""Datasets: CIFAR-10 and Fashion-MNIST as uint8 arrays, found offline or downloaded."""

from grl_aecnn.data.cifar10 import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, load_cifar10
from grl_aecnn.data.fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, load_fashion_mnist
from grl_aecnn.data.imageset import ImageSet
from grl_aecnn.data.locate import data_roots
from grl_aecnn.data.transforms import augment_batch, iterate_batches, to_tensor

DATASETS = {"cifar10": load_cifar10, "fashion-mnist": load_fashion_mnist}
# Per-channel (mean, std) used to normalize each dataset's pixels in [0, 1].
NORMALIZATION = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "fashion-mnist": (FASHION_MNIST_MEAN, FASHION_MNIST_STD)}


def load_dataset(name: str, split: str, **kwargs) -> ImageSet:
    try:
        loader = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}") from None
    return loader(split, **kwargs)


__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "NORMALIZATION",
    "FASHION_MNIST_CLASSES",
    "ImageSet",
    "augment_batch",
    "data_roots",
    "iterate_batches",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "to_tensor",
]
