"""Codecs behind one protocol, and a registry: codec name -> loader of its shipped levels for a backbone."""

from collections.abc import Callable

from grl_aecnn.codecs.aecnn import load_codecs as load_aecnn
from grl_aecnn.codecs.base import Codec
from grl_aecnn.codecs.image import ImageCodec
from grl_aecnn.data import NORMALIZATION
from grl_aecnn.errors import ModelNotFoundError
from grl_aecnn.zoo import load_backbone, load_card

JPEG_QUALITIES = (95, 75, 50, 25, 10)


def load_image_codecs(fmt: str, model: str) -> list[Codec]:
    mean, std = NORMALIZATION[load_card(model)["dataset"]["name"]]
    backbone = load_backbone(model)
    qualities = JPEG_QUALITIES if fmt == "jpeg" else (0,)
    return [ImageCodec(backbone, mean, std, fmt, q) for q in qualities]


# Each loader takes the zoo name of the backbone and returns the codec's levels.
CODECS: dict[str, Callable[[str], list[Codec]]] = {
    "aecnn": lambda model: load_aecnn(f"aecnn-{model}"),
    "raw": lambda model: load_image_codecs("raw", model),
    "png": lambda model: load_image_codecs("png", model),
    "jpeg": lambda model: load_image_codecs("jpeg", model),
}


def load_codec_levels(codec: str, model: str) -> list[Codec]:
    try:
        loader = CODECS[codec]
    except KeyError:
        raise ModelNotFoundError(f"unknown codec {codec!r}; known: {sorted(CODECS)}") from None
    return loader(model)


__all__ = ["CODECS", "Codec", "load_codec_levels"]
