"""BottleNet++ training, each stage checkpointed and resumable.

  0. (shared by every rate) The frozen backbone's split features of the training and test sets are
     cached once with its logits (the teacher), and the backbone weights are kept beside them.
  1. Per rate, encoder and decoder trained end to end through the noisy channel (AWGN or binary
     erasure), head frozen and tail fixed: feature MSE + distillation + cross-entropy.
  2. Per rate, the quantization range is fitted on the training codes; decoder and tail are
     fine-tuned with straight-through quantization in the loop (encoder frozen, so the range stays
     valid); then the entropy model is fitted on the training set's symbols.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, PositiveInt

from grl_aecnn.codecs.bottlenetpp.model import BottleNetLevel, NoisyChannel
from grl_aecnn.codecs.training import (CACHE_FILE, LEVEL_CARD, LEVEL_WEIGHTS, QuantizedLevelConfig, SgdStage,
                                       cache_split_features, check_or_write_base_config, fit_entropy, frozen_backbone,
                                       level_loss, level_top1, train_cached_stage)
from grl_aecnn.config import StrictModel
from grl_aecnn.data import load_dataset
from grl_aecnn.entropy import fit_channel_range
from grl_aecnn.nets import SplitNet
from grl_aecnn.store import atomic_write_json, load_tensors, save_tensors
from grl_aecnn.zoo import load_card

CACHE_INFO = "cache.json"


class BottleNetBaseConfig(StrictModel):
    """Stage 0, shared by every rate."""

    backbone: str = Field("resnet20-cifar10", description="zoo name of the trained backbone (frozen)")
    split: str = Field("layer2", description="stage boundary after which the device stops")
    cache_mirrored: bool = Field(False, description="also cache the features of horizontally mirrored training images")
    seed: int = 0
    train_limit: PositiveInt | None = None
    test_limit: PositiveInt | None = None
    output_dir: str = "runs/codecs/bottlenetpp-resnet20-cifar10"


class ChannelConfig(StrictModel):
    """The channel layer of stage 1 (the paper trains through the channel)."""

    kind: Literal["awgn", "erasure", "none"] = "awgn"
    snr_db: float = Field(20.0, description="AWGN: SNR against the code's mean power")
    erasure: float = Field(0.05, ge=0, lt=1, description="binary erasure: probability a value is lost")


class BottleNetLevelConfig(QuantizedLevelConfig):
    """One rate: code channels, spatial stride and bits, and how to train it."""

    codec: str = Field("bottlenetpp", pattern="^bottlenetpp$")
    code_channels: PositiveInt
    stride: int = Field(2, ge=1, le=4, description="spatial reduction of the encoder convolution")
    range_quantiles: tuple[float, float] = (0.001, 0.999)
    base: BottleNetBaseConfig = BottleNetBaseConfig()
    channel: ChannelConfig = ChannelConfig()
    autoencoder: SgdStage = SgdStage(epochs=2, lr=0.05, batch_size=256)
    finetune: SgdStage = SgdStage(epochs=2, lr=0.01, batch_size=256)


def feature_cache(cfg: BottleNetBaseConfig) -> tuple[SplitNet, dict[str, torch.Tensor]]:
    """Stage 0: the frozen backbone and the cached split features (made once, then reused)."""
    out = Path(cfg.output_dir)
    backbone = frozen_backbone(cfg.backbone, out)
    if (out / CACHE_INFO).exists() and (out / CACHE_FILE).exists():  # a lost cache is made again
        return backbone, load_tensors(out / CACHE_FILE)
    dataset = load_card(cfg.backbone)["dataset"]["name"]
    train_set = load_dataset(dataset, "train").take(cfg.train_limit)
    test_set = load_dataset(dataset, "test").take(cfg.test_limit)

    def split_features(x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = backbone.head(x, cfg.split)
        return {"features": z.half(), "teacher": backbone.tail(z, cfg.split)}

    cache, _ = cache_split_features(split_features, train_set, test_set, cfg.cache_mirrored)
    save_tensors(out / CACHE_FILE, cache)
    atomic_write_json(out / CACHE_INFO, {
        "uncompressed_top1": float((cache["test_teacher"].argmax(1) == cache["test_labels"]).float().mean()),
        "train_checksum": train_set.checksum, "test_checksum": test_set.checksum,
    })
    return backbone, cache


def _stage(cfg: BottleNetLevelConfig, level: BottleNetLevel, cache: dict, stage: SgdStage, name: str,
           quantized: bool, params, frozen: tuple, show_progress: bool) -> list[dict]:
    return train_cached_stage(cfg.level_dir / name, cfg.stage_config(), level, cache, stage, params,
                              level_loss(cfg.loss, level, quantized),
                              cfg.base.seed, f"bottlenet++ {cfg.level} {name}",
                              lambda: level_top1(level, cache, quantized), frozen, show_progress)


def train_level(cfg: BottleNetLevelConfig, show_progress: bool = True) -> dict:
    """Stages 0-2 for one rate; returns the level card (also written to level.json)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    check_or_write_base_config(cfg.base, Path(cfg.base.output_dir))
    backbone, cache = feature_cache(cfg.base)
    channels, height, width = cache["train_features"].shape[1:]
    torch.manual_seed(cfg.base.seed + cfg.level)
    level = BottleNetLevel(backbone, cfg.base.split, channels, cfg.code_channels, cfg.stride, cfg.bits,
                           NoisyChannel(cfg.channel.kind, cfg.channel.snr_db, cfg.channel.erasure))
    level.net.requires_grad_(False)
    stage1 = _stage(cfg, level, cache, cfg.autoencoder, "stage1", False,
                    list(level.encoder.parameters()) + list(level.decoder.parameters()), (level.net,), show_progress)
    level.encoder.requires_grad_(False)
    level.eval()
    with torch.no_grad():
        codes = level.encoder(cache["train_features"][:20000].float())
    level.lo, level.hi = fit_channel_range(codes, *cfg.range_quantiles)
    prefixes = tuple(f"net.{p}" for p in level.net.tail_prefixes(cfg.base.split))
    tail_params = [p.requires_grad_(True) for k, p in level.named_parameters() if k.startswith(prefixes)]
    stage2 = _stage(cfg, level, cache, cfg.finetune, "stage2", True, list(level.decoder.parameters()) + tail_params,
                    (level.encoder,), show_progress)
    level.eval()
    entropy, code_length = fit_entropy(level.symbols, cache["train_features"], cfg.bits, cfg.neighbours)
    save_tensors(cfg.level_dir / LEVEL_WEIGHTS, {**level.level_state(),
                                                 **{f"entropy.{k}": v for k, v in entropy.to_tensors().items()}})
    with torch.no_grad():
        symbol_shape = list(level.encoder(torch.zeros(1, channels, height, width)).shape[1:])
    card = {
        "level": cfg.level, "code_channels": cfg.code_channels, "stride": cfg.stride, "bits": cfg.bits,
        "symbol_shape": symbol_shape, "entropy": entropy.metadata(), "entropy_bits_per_symbol": code_length,
        "test_top1_tensor_path": level_top1(level, cache, quantized=True),
        "history": {"stage1": stage1, "stage2": stage2}, "config": cfg.model_dump(mode="json"),
    }
    atomic_write_json(cfg.level_dir / LEVEL_CARD, card)
    return card
