"""Codecs behind one protocol, and a registry: codec name -> loader of its shipped levels for a backbone."""

from collections.abc import Callable

from grl_aecnn.codecs.aecnn import load_codecs as load_aecnn
from grl_aecnn.codecs.base import Codec
from grl_aecnn.errors import ModelNotFoundError

# Each loader takes the zoo name of the backbone and returns the codec's levels, lowest level first.
CODECS: dict[str, Callable[[str], list[Codec]]] = {
    "aecnn": lambda model: load_aecnn(f"aecnn-{model}"),
}


def load_codec_levels(codec: str, model: str) -> list[Codec]:
    try:
        loader = CODECS[codec]
    except KeyError:
        raise ModelNotFoundError(f"unknown codec {codec!r}; known: {sorted(CODECS)}") from None
    return loader(model)


__all__ = ["CODECS", "Codec", "load_codec_levels"]
