"""Backbones with split points, and a registry of them by name."""

from collections.abc import Callable
from functools import partial

from grl_aecnn.errors import ModelNotFoundError
from grl_aecnn.nets.resnet import cifar_resnet, cifar_resnet50
from grl_aecnn.nets.splitnet import SplitInfo, SplitNet, count_flops, split_shape, split_table

MODELS: dict[str, Callable[..., SplitNet]] = {
    "resnet20": partial(cifar_resnet, 20),
    "resnet32": partial(cifar_resnet, 32),
    "resnet56": partial(cifar_resnet, 56),
    "resnet50": cifar_resnet50,
}


def build_model(name: str, **kwargs) -> SplitNet:
    try:
        factory = MODELS[name]
    except KeyError:
        raise ModelNotFoundError(f"unknown model {name!r}; known: {sorted(MODELS)}") from None
    return factory(**kwargs)


__all__ = ["MODELS", "SplitInfo", "SplitNet", "build_model", "count_flops", "split_shape", "split_table"]
