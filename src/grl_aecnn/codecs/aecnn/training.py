"""Step-by-step AECNN training, each stage checkpointed and resumable.

  1. Channel attention fine-tuned with the backbone (augmented images, cross-entropy).
  2. Channel importance = attention weights averaged over the training set; the split features of
     the training set (and its mirror images) and the teacher's logits are cached once.
  3. Per level, feature recovery trained with the head frozen and the tail fixed: feature MSE +
     distillation from the uncompressed model's logits + cross-entropy.
  4. Per level, recovery and tail fine-tuned with straight-through quantization in the loop; then
     the entropy model is fitted on the training set's symbols.

Stages 1-2 are shared by every level and live in `base.output_dir`; a level config that names a
different base refuses to reuse them. Every stage continues from its checkpoint when run again.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt

from grl_aecnn.codecs.aecnn.model import AecnnBase, AecnnLevel
from grl_aecnn.codecs.training import (CACHE_FILE, LEVEL_CARD, LEVEL_WEIGHTS, QuantizedLevelConfig, SgdStage,
                                       cache_split_features, cached_top1, check_or_write_base_config, fit_entropy,
                                       make_sgd, split_loss, train_cached_stage)
from grl_aecnn.config import StrictModel
from grl_aecnn.data import iterate_batches, load_dataset
from grl_aecnn.entropy import fit_channel_range
from grl_aecnn.errors import CheckpointError
from grl_aecnn.loop import STATE_FILE, EpochLoop, optimize_epoch
from grl_aecnn.nets.training import evaluate
from grl_aecnn.store import atomic_write_json, load_module_state, load_tensors, read_json, save_tensors
from grl_aecnn.zoo import load_backbone, load_card

BASE_WEIGHTS = "base.safetensors"
IMPORTANCE_FILE = "importance.json"


class AecnnBaseConfig(StrictModel):
    """Stages 1-2, shared by every level."""

    backbone: str = Field("resnet20-cifar10", description="zoo name of the trained backbone")
    split: str = Field("layer2", description="stage boundary after which the device stops")
    reduction: PositiveInt = Field(4, description="channel attention MLP: C -> C/reduction -> C")
    attention: SgdStage = SgdStage(epochs=1, lr=0.01)
    cache_mirrored: bool = Field(False, description="also cache the features of horizontally mirrored training images")
    seed: int = 0
    train_limit: PositiveInt | None = None
    test_limit: PositiveInt | None = None
    output_dir: str = "runs/codecs/aecnn-resnet20-cifar10"


class AecnnLevelConfig(QuantizedLevelConfig):
    """One compression level: which channels survive and at how many bits, and how to train it."""

    codec: str = Field("aecnn", pattern="^aecnn$")
    keep_channels: PositiveInt
    recovery_hidden: PositiveInt = 32
    base: AecnnBaseConfig = AecnnBaseConfig()
    recovery: SgdStage = SgdStage(epochs=1, lr=0.05, batch_size=256)
    finetune: SgdStage = SgdStage(epochs=2, lr=0.01, batch_size=256)


def train_attention(cfg: AecnnBaseConfig, show_progress: bool = True) -> AecnnBase:
    """Stage 1 (resumes a partial run; returns at once when done)."""
    out = Path(cfg.output_dir)
    backbone = load_backbone(cfg.backbone).train()
    base = AecnnBase(backbone, cfg.split, cfg.reduction)
    if (out / BASE_WEIGHTS).exists():
        load_module_state(base, load_tensors(out / BASE_WEIGHTS), str(out / BASE_WEIGHTS))
        return base.eval()
    dataset = load_card(cfg.backbone)["dataset"]["name"]
    train_set = load_dataset(dataset, "train").take(cfg.train_limit)
    test_set = load_dataset(dataset, "test").take(cfg.test_limit)
    torch.manual_seed(cfg.seed)
    stage = cfg.attention
    steps_per_epoch = math.ceil(len(train_set) / stage.batch_size)
    optimizer, scheduler = make_sgd(base.parameters(), stage, stage.epochs * steps_per_epoch)
    loop = EpochLoop(out / "stage1", cfg.model_dump(mode="json"), base, optimizer, scheduler, stage.epochs,
                     steps_per_epoch, cfg.seed, "stage 1: attention")

    def train_epoch(epoch, generator, on_step) -> float:
        batches = iterate_batches(train_set, stage.batch_size, generator, augment=True)
        return optimize_epoch(batches, lambda b: (F.cross_entropy(base(b[0]), b[1]), len(b[1])), optimizer,
                              scheduler, on_step)

    loop.run(train_epoch, lambda: evaluate(base, test_set), resume=(out / "stage1" / STATE_FILE).exists(),
             show_progress=show_progress)
    save_tensors(out / BASE_WEIGHTS, base.state_dict())
    return base.eval()


def importance_and_cache(cfg: AecnnBaseConfig, base: AecnnBase) -> tuple[list[int], dict[str, torch.Tensor]]:
    """Stage 2: channel order by mean attention weight, and the cached split features."""
    out = Path(cfg.output_dir)
    if (out / IMPORTANCE_FILE).exists() and (out / CACHE_FILE).exists():
        return read_json(out / IMPORTANCE_FILE)["order"], load_tensors(out / CACHE_FILE)
    base.eval()
    dataset = load_card(cfg.backbone)["dataset"]["name"]
    train_set = load_dataset(dataset, "train").take(cfg.train_limit)
    test_set = load_dataset(dataset, "test").take(cfg.test_limit)

    def attended(x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = base.backbone.head(x, base.split)
        w = base.attention.weights(z)
        f = z * w[:, :, None, None]
        return {"features": f.half(), "teacher": base.backbone.tail(f, base.split), "weights": w}

    cache, train = cache_split_features(attended, train_set, test_set, cfg.cache_mirrored)
    importance = train["weights"].mean(0)
    order = torch.argsort(importance, descending=True, stable=True).tolist()
    save_tensors(out / CACHE_FILE, cache)
    atomic_write_json(out / IMPORTANCE_FILE, {
        "order": order, "mean_attention": importance.tolist(),
        "uncompressed_with_attention_top1": float((cache["test_teacher"].argmax(1) == cache["test_labels"]).float().mean()),
        "train_checksum": train_set.checksum, "test_checksum": test_set.checksum,
    })
    return order, cache


def level_top1(level: AecnnLevel, cache: dict, quantized: bool) -> float:
    return cached_top1(level, lambda f: level.tail(level.reconstruct(f, quantized)), cache)


def _train_level_stage(cfg: AecnnLevelConfig, level: AecnnLevel, cache: dict, stage: SgdStage, name: str,
                       quantized: bool, params, show_progress: bool) -> list[dict]:
    def loss_of(batch) -> torch.Tensor:
        f, teacher, y = batch
        recovered = level.reconstruct(f, quantized)
        return split_loss(cfg.loss, recovered, f, level.tail(recovered), teacher, y)

    # Stage 3 keeps the tail fixed, its BN statistics included.
    return train_cached_stage(cfg.level_dir / name, cfg.model_dump(mode="json"), level, cache, stage, params, loss_of,
                              cfg.base.seed, f"level {cfg.level} {name}", lambda: level_top1(level, cache, quantized),
                              frozen_modules=() if quantized else (level.net,), show_progress=show_progress)


def train_level(cfg: AecnnLevelConfig, show_progress: bool = True) -> dict:
    """All four stages for one level; returns the level card (also written to level.json)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    Path(cfg.base.output_dir).mkdir(parents=True, exist_ok=True)
    check_or_write_base_config(cfg.base, Path(cfg.base.output_dir))
    base = train_attention(cfg.base, show_progress)
    order, cache = importance_and_cache(cfg.base, base)
    if cfg.keep_channels > base.channels:
        raise CheckpointError(f"keep_channels {cfg.keep_channels} > {base.channels} channels at {cfg.base.split}")
    torch.manual_seed(cfg.base.seed + cfg.level)
    keep = torch.tensor(order[:cfg.keep_channels])
    level = AecnnLevel(base.backbone, cfg.base.split, keep, cfg.bits, base.channels, cfg.recovery_hidden)
    level.net.requires_grad_(False)  # stage 3 trains the recovery network only
    stage3 = _train_level_stage(cfg, level, cache, cfg.recovery, "stage3", False, level.recovery.parameters(),
                                show_progress)
    # The quantization range comes from the training features of the kept channels.
    sample = cache["train_features"][:20000, keep].float()
    level.lo, level.hi = fit_channel_range(sample, *cfg.range_quantiles)
    tail_keys = level.tail_state().keys()
    tail_params = [p.requires_grad_(True) for k, p in level.named_parameters() if k.startswith("net.") and k in tail_keys]
    stage4 = _train_level_stage(cfg, level, cache, cfg.finetune, "stage4", True,
                                list(level.recovery.parameters()) + tail_params, show_progress)
    level.eval()
    entropy, code_length = fit_entropy(level.symbols, cache["train_features"], cfg.bits, cfg.context_model)
    save_tensors(cfg.level_dir / LEVEL_WEIGHTS, {**level.tail_state(),
                                                 **{f"entropy.{k}": v for k, v in entropy.to_tensors().items()}})
    card = {
        "level": cfg.level, "keep_channels": cfg.keep_channels, "bits": cfg.bits, "keep": keep.tolist(),
        "recovery_hidden": cfg.recovery_hidden, "entropy": entropy.metadata(),
        "entropy_bits_per_symbol": code_length,
        "test_top1_tensor_path": level_top1(level, cache, quantized=True),
        "history": {"stage3": stage3, "stage4": stage4}, "config": cfg.model_dump(mode="json"),
    }
    atomic_write_json(cfg.level_dir / LEVEL_CARD, card)
    return card

