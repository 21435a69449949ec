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

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, model_validator

from grl_aecnn.codecs.aecnn.model import AecnnBase, AecnnLevel
from grl_aecnn.config import StrictModel
from grl_aecnn.data import ImageSet, iterate_batches, load_dataset
from grl_aecnn.entropy import EntropyModel, channel_histograms, fit_channel_range
from grl_aecnn.errors import CheckpointError
from grl_aecnn.loop import STATE_FILE, EpochLoop, optimize_epoch
from grl_aecnn.nets.training import evaluate
from grl_aecnn.store import atomic_write_json, load_module_state, load_tensors, read_json, save_tensors
from grl_aecnn.zoo import load_backbone, load_card

BASE_WEIGHTS = "base.safetensors"
CACHE_FILE = "cache.safetensors"
IMPORTANCE_FILE = "importance.json"
LEVEL_WEIGHTS = "level.safetensors"
LEVEL_CARD = "level.json"


class SgdStage(StrictModel):
    """One SGD stage with a cosine schedule to zero. lr is per step, batch_size in samples."""

    epochs: PositiveInt
    lr: float = Field(gt=0)
    batch_size: PositiveInt = 128
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)


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


class LossWeights(StrictModel):
    feature_mse: float = Field(1.0, ge=0)
    distill: float = Field(1.0, ge=0, description="KL to the uncompressed model's logits, times T^2")
    cross_entropy: float = Field(0.5, ge=0)
    temperature: float = Field(4.0, gt=0)


class AecnnLevelConfig(StrictModel):
    """One compression level: which channels survive and at how many bits, and how to train it."""

    codec: str = Field("aecnn", pattern="^aecnn$")
    level: int = Field(ge=0, le=255)
    keep_channels: PositiveInt
    bits: int = Field(ge=1, le=8)
    recovery_hidden: PositiveInt = 32
    range_quantiles: tuple[float, float] = (0.0, 0.999)
    base: AecnnBaseConfig = AecnnBaseConfig()
    recovery: SgdStage = SgdStage(epochs=1, lr=0.05, batch_size=256)
    finetune: SgdStage = SgdStage(epochs=2, lr=0.01, batch_size=256)
    loss: LossWeights = LossWeights()
    threads: PositiveInt | None = None

    @model_validator(mode="after")
    def _quantiles_ordered(self) -> AecnnLevelConfig:
        lo, hi = self.range_quantiles
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"range_quantiles must satisfy 0 <= lo < hi <= 1, got {self.range_quantiles}")
        return self

    @property
    def level_dir(self) -> Path:
        return Path(self.base.output_dir) / f"level{self.level:03d}"


def _sgd(params, stage: SgdStage, steps: int):
    optimizer = torch.optim.SGD(params, lr=stage.lr, momentum=stage.momentum, nesterov=True,
                                weight_decay=stage.weight_decay)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


def _check_or_write_base_config(cfg: AecnnBaseConfig) -> None:
    out = Path(cfg.output_dir)
    path = out / "base_config.json"
    resolved = cfg.model_dump(mode="json")
    if path.exists():
        if read_json(path) != resolved:
            raise CheckpointError(f"{path}: stages 1-2 in {out} were made with another base config; "
                                  "use the same `base:` section in every level config, or another output_dir")
    else:
        atomic_write_json(path, resolved)


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
    optimizer, scheduler = _sgd(base.parameters(), stage, stage.epochs * steps_per_epoch)
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


@torch.no_grad()
def _features_and_logits(base: AecnnBase, data: ImageSet, mirrored: bool) -> tuple[torch.Tensor, ...]:
    feats, logits, weights = [], [], []
    for x, _ in iterate_batches(data, 500):
        if mirrored:
            x = x.flip(-1)
        z = base.backbone.head(x, base.split)
        w = base.attention.weights(z)
        f = z * w[:, :, None, None]
        feats.append(f.half())
        logits.append(base.backbone.tail(f, base.split))
        weights.append(w)
    return torch.cat(feats), torch.cat(logits), torch.cat(weights)


def importance_and_cache(cfg: AecnnBaseConfig, base: AecnnBase) -> tuple[list[int], dict[str, torch.Tensor]]:
    """Stage 2: channel order by mean attention weight, and the cached split features."""
    out = Path(cfg.output_dir)
    if (out / IMPORTANCE_FILE).exists() and (out / CACHE_FILE).exists():
        return read_json(out / IMPORTANCE_FILE)["order"], load_tensors(out / CACHE_FILE)
    base.eval()
    dataset = load_card(cfg.backbone)["dataset"]["name"]
    train_set = load_dataset(dataset, "train").take(cfg.train_limit)
    test_set = load_dataset(dataset, "test").take(cfg.test_limit)
    train_f, train_logits, train_w = _features_and_logits(base, train_set, mirrored=False)
    parts_f, parts_logits = [train_f], [train_logits]
    labels = [torch.from_numpy(train_set.labels)]
    if cfg.cache_mirrored:
        mirror_f, mirror_logits, _ = _features_and_logits(base, train_set, mirrored=True)
        parts_f.append(mirror_f)
        parts_logits.append(mirror_logits)
        labels.append(torch.from_numpy(train_set.labels))
    test_f, test_logits, _ = _features_and_logits(base, test_set, mirrored=False)
    importance = train_w.mean(0)
    order = torch.argsort(importance, descending=True, stable=True).tolist()
    cache = {
        "train_features": torch.cat(parts_f), "train_teacher": torch.cat(parts_logits), "train_labels": torch.cat(labels),
        "test_features": test_f, "test_teacher": test_logits, "test_labels": torch.from_numpy(test_set.labels),
    }
    save_tensors(out / CACHE_FILE, cache)
    atomic_write_json(out / IMPORTANCE_FILE, {
        "order": order, "mean_attention": importance.tolist(),
        "uncompressed_with_attention_top1": float((test_logits.argmax(1) == cache["test_labels"]).float().mean()),
        "train_checksum": train_set.checksum, "test_checksum": test_set.checksum,
    })
    return order, cache


def _feature_batches(cache: dict, batch_size: int, generator: torch.Generator):
    n = len(cache["train_labels"])
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield cache["train_features"][idx].float(), cache["train_teacher"][idx], cache["train_labels"][idx]


def _distill(logits: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    return F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(teacher / t, 1), log_target=True,
                    reduction="batchmean") * t * t


@torch.no_grad()
def level_top1(level: AecnnLevel, cache: dict, quantized: bool) -> float:
    """Top-1 on the cached test features (tensor path, no bytes): progress only, not the reported figure."""
    was_training = level.training
    level.eval()
    correct = 0
    for start in range(0, len(cache["test_labels"]), 500):
        f = cache["test_features"][start:start + 500].float()
        correct += int((level.tail(level.reconstruct(f, quantized)).argmax(1)
                        == cache["test_labels"][start:start + 500]).sum())
    level.train(was_training)
    return correct / len(cache["test_labels"])


def _train_level_stage(cfg: AecnnLevelConfig, level: AecnnLevel, cache: dict, stage: SgdStage, name: str,
                       quantized: bool, params, show_progress: bool) -> list[dict]:
    steps_per_epoch = math.ceil(len(cache["train_labels"]) / stage.batch_size)
    optimizer, scheduler = _sgd(params, stage, stage.epochs * steps_per_epoch)
    out = cfg.level_dir / name
    loop = EpochLoop(out, cfg.model_dump(mode="json"), level, optimizer, scheduler, stage.epochs, steps_per_epoch,
                     cfg.base.seed, f"level {cfg.level} {name}")
    w = cfg.loss

    def loss_of(batch) -> tuple[torch.Tensor, int]:
        f, teacher, y = batch
        recovered = level.reconstruct(f, quantized)
        logits = level.tail(recovered)
        loss = (w.feature_mse * F.mse_loss(recovered, f) + w.distill * _distill(logits, teacher, w.temperature)
                + w.cross_entropy * F.cross_entropy(logits, y))
        return loss, len(y)

    def train_epoch(epoch, generator, on_step) -> float:
        if not quantized:  # stage 3: the tail is fixed, its BN statistics included
            level.net.eval()
        return optimize_epoch(_feature_batches(cache, stage.batch_size, generator), loss_of, optimizer, scheduler,
                              on_step)

    history, _ = loop.run(train_epoch, lambda: level_top1(level, cache, quantized),
                          resume=(out / STATE_FILE).exists(), show_progress=show_progress)
    return history


def train_level(cfg: AecnnLevelConfig, show_progress: bool = True) -> dict:
    """All four stages for one level; returns the level card (also written to level.json)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    Path(cfg.base.output_dir).mkdir(parents=True, exist_ok=True)
    _check_or_write_base_config(cfg.base)
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
    with torch.no_grad():
        counts = sum(
            channel_histograms(level.symbols(cache["train_features"][s:s + 2000].float()).numpy(), cfg.bits)
            for s in range(0, len(cache["train_labels"]), 2000)
        )
    entropy = EntropyModel.from_counts(counts, cfg.bits)
    save_tensors(cfg.level_dir / LEVEL_WEIGHTS, {**level.tail_state(),
                                                 **{f"entropy.{k}": v for k, v in entropy.to_tensors().items()}})
    card = {
        "level": cfg.level, "keep_channels": cfg.keep_channels, "bits": cfg.bits, "keep": keep.tolist(),
        "recovery_hidden": cfg.recovery_hidden, "entropy": entropy.metadata(),
        "entropy_bits_per_symbol": _mean_code_length(counts, entropy),
        "test_top1_tensor_path": level_top1(level, cache, quantized=True),
        "history": {"stage3": stage3, "stage4": stage4}, "config": cfg.model_dump(mode="json"),
    }
    atomic_write_json(cfg.level_dir / LEVEL_CARD, card)
    return card


def _mean_code_length(counts: np.ndarray, model: EntropyModel) -> float:
    """Cross-entropy of the training symbols under the fitted model, bits per symbol."""
    p = model.frequencies / model.frequencies.sum(1, keepdims=True)
    return float(-(counts * np.log2(p)).sum() / counts.sum())
