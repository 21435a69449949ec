"""Codecs behind one protocol, and registries: codec name -> loader of its shipped levels for a
backbone, and for the learned codecs -> config schema, trainer and shipper."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from grl_aecnn.codecs import aecnn, bottlenetpp, deepjscc
from grl_aecnn.codecs.aecnn.training import AecnnLevelConfig
from grl_aecnn.codecs.aecnn.training import train_level as train_aecnn
from grl_aecnn.codecs.base import Codec
from grl_aecnn.codecs.bottlenetpp.training import BottleNetLevelConfig
from grl_aecnn.codecs.bottlenetpp.training import train_level as train_bottlenetpp
from grl_aecnn.codecs.deepjscc.training import DeepJsccConfig
from grl_aecnn.codecs.deepjscc.training import train_level as train_deepjscc
from grl_aecnn.codecs.image import ImageCodec
from grl_aecnn.config import load_config
from grl_aecnn.data import NORMALIZATION
from grl_aecnn.errors import ConfigError, ModelNotFoundError
from grl_aecnn.zoo import load_backbone, load_card

JPEG_QUALITIES = (95, 75, 50, 25, 10)


def load_image_codecs(fmt: str, model: str) -> list[Codec]:
    mean, std = NORMALIZATION[load_card(model)["dataset"]["name"]]
    backbone = load_backbone(model)
    qualities = JPEG_QUALITIES if fmt == "jpeg" else (0,)
    return [ImageCodec(backbone, mean, std, fmt, q) for q in qualities]


# Each loader takes the zoo name of the backbone and returns the codec's levels.
CODECS: dict[str, Callable[[str], list[Codec]]] = {
    "aecnn": lambda model: aecnn.load_codecs(f"aecnn-{model}"),
    "bottlenetpp": lambda model: bottlenetpp.load_codecs(f"bottlenetpp-{model}"),
    "deepjscc": lambda model: deepjscc.load_codecs(f"deepjscc-{model}"),
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


@dataclass(frozen=True)
class LearnedCodec:
    schema: type[BaseModel]  # one level's YAML config
    train: Callable[..., dict]  # config -> level card
    ship: Callable[..., dict]  # (runs folder, zoo name) -> codec card
    summary: Callable[[dict], str]  # level card -> one line


LEARNED: dict[str, LearnedCodec] = {
    "aecnn": LearnedCodec(AecnnLevelConfig, train_aecnn, aecnn.ship_codec, lambda c: (
        f"level {c['level']}: {c['keep_channels']} channels at {c['bits']} bits, "
        f"{c['entropy_bits_per_symbol']:.3f} bits/symbol on the training set, "
        f"test top-1 (tensor path) {c['test_top1_tensor_path']:.4f}")),
    "bottlenetpp": LearnedCodec(BottleNetLevelConfig, train_bottlenetpp, bottlenetpp.ship_codec, lambda c: (
        f"bottlenet++ level {c['level']}: code {'x'.join(map(str, c['symbol_shape']))} at {c['bits']} bits, "
        f"{c['entropy_bits_per_symbol']:.3f} bits/symbol on the training set, "
        f"test top-1 (tensor path) {c['test_top1_tensor_path']:.4f}")),
    "deepjscc": LearnedCodec(DeepJsccConfig, train_deepjscc, deepjscc.ship_codec, lambda c: (
        f"deepjscc level {c['level']}: {c['symbols']} complex symbols (k/n = {c['bandwidth_ratio']:.4f}), "
        f"{c['channel']}, test top-1 at {c['snr_train_db'][1]:g} dB {c['test_top1_top_snr']:.4f}")),
}


class _CodecField(BaseModel):
    model_config = ConfigDict(extra="ignore")
    codec: str = "aecnn"


def learned_codec(name: str) -> LearnedCodec:
    try:
        return LEARNED[name]
    except KeyError:
        raise ConfigError(f"codec {name!r} is not trainable; trainable: {sorted(LEARNED)}") from None


def train_codec_level(config: Path, show_progress: bool = True, threads: int | None = None) -> str:
    """Train the level a YAML config describes (its `codec:` picks the codec), with `threads` torch
    threads instead of the config's (speed only: checkpoints resume under any count); returns a summary line."""
    codec = learned_codec(load_config(config, _CodecField).codec)
    cfg = load_config(config, codec.schema)
    if threads is not None:
        cfg = cfg.model_copy(update={"threads": threads})
    return codec.summary(codec.train(cfg, show_progress=show_progress))


__all__ = ["CODECS", "LEARNED", "Codec", "learned_codec", "load_codec_levels", "train_codec_level"]
