"""Step-by-step AECNN training, each stage checkpointed and resumable.

  1. Channel attention fine-tuned with the backbone (augmented images, cross-entropy).
  2. Channel importance = attention weights averaged over the training set; the split features of
     the training set (and its mirror images) and the teacher's logits are cached once.
  3. Per level, feature recovery trained with the head frozen and the tail fixed: feature MSE +
     distillation from the uncompressed model's logits + cross-entropy.
  4. Per level, recovery and tail fine-tuned with straight-through quantization in the loop; then
     the entropy model is fitted on the training set's symbols.
  5. Optional (`device_finetune`), per level: the level gets its own copy of the device head and
     attention, trained end to end on augmented images with its recovery network and tail,
     quantization in the loop on the level's fixed range (distillation from the stage-1 model +
     cross-entropy). The shared head serves every kept count at once; this one serves only this
     level's.
  6. Optional (`rate_finetune`, after stage 5): stage 5's result fine-tuned with a rate term that
     penalizes the estimated code length of the sent symbols (entropy.rate) above a target.
     The entropy model is then fitted on the symbols of the level's own head.

With `base.prune_aware` set, two steps come between stages 1 and 2:

  1a. The channel ranking is fixed from the stage-1 attention weights averaged over the training set
      (stored in ranking.json; every later step and level uses it, never a re-ranking).
  1b. Prune-aware head training: per batch a kept count k is drawn from the levels' counts, only
      channels ranking[:k] are sent (quantized in the loop), and k's own recovery network and copy of
      the stage-1 tail classify them; head, attention and every k's recovery and tail learn from
      distillation of the stage-1 model + cross-entropy. A tail only ever sees its own k, so its
      batch-norm statistics are never a mixture over kept counts. Stage 2 then caches the new head's
      features with the stage-1 model's logits as the teacher, and each level starts from the
      recovery network and tail trained here for its k.

Stages 1-2 are shared by every level and live in `base.output_dir`; a level config that names a
different base refuses to reuse them. Every stage continues from its checkpoint when run again.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, model_validator
from torch import nn

from grl_aecnn.codecs.aecnn.model import AecnnBase, AecnnLevel, PruneAwareHead
from grl_aecnn.codecs.shipping import strip_prefix
from grl_aecnn.codecs.training import (CACHE_FILE, LEVEL_CARD, LEVEL_WEIGHTS, LossWeights, QuantizedLevelConfig,
                                       SgdStage, cache_split_features, check_or_write_base_config,
                                       fit_entropy, level_loss, level_top1, make_sgd, map_batches, split_loss,
                                       train_cached_stage)
from grl_aecnn.config import StrictModel
from grl_aecnn.data import ImageSet, iterate_batches, load_dataset
from grl_aecnn.entropy import RateProxy, fit_channel_range, quantization_levels
from grl_aecnn.errors import CheckpointError
from grl_aecnn.loop import STATE_FILE, EpochLoop, optimize_epoch
from grl_aecnn.nets.training import evaluate
from grl_aecnn.store import atomic_write_json, load_module_state, load_tensors, read_json, save_tensors
from grl_aecnn.zoo import load_backbone, load_card

BASE_WEIGHTS = "base.safetensors"
IMPORTANCE_FILE = "importance.json"
RANKING_FILE = "ranking.json"
PRUNE_AWARE_WEIGHTS = "prune_aware.safetensors"


class PruneAwareStage(SgdStage):
    """Step 1b: the shared head trained for every level's kept count (see the module docstring)."""

    keep_counts: list[PositiveInt] = Field(description="kept counts drawn per batch: the levels' keep_channels")
    keep_weights: list[float] = Field(description="relative draw probability of each kept count")
    bits: int = Field(2, ge=1, le=8, description="quantization in the loop")
    recovery_hidden: PositiveInt = 32
    range_quantiles: tuple[float, float] = (0.0, 0.999)
    loss: LossWeights = LossWeights(feature_mse=0.0)
    eval_keep: PositiveInt = Field(4, description="kept count whose test top-1 is reported after each epoch")
    eval_images: PositiveInt = Field(2000, description="test images of that per-epoch report")

    @model_validator(mode="after")
    def _consistent(self) -> PruneAwareStage:
        if len(self.keep_weights) != len(self.keep_counts) or min(self.keep_weights, default=0) <= 0:
            raise ValueError("keep_weights needs one positive weight per entry of keep_counts")
        if self.eval_keep not in self.keep_counts:
            raise ValueError(f"eval_keep {self.eval_keep} is not one of keep_counts {self.keep_counts}")
        return self


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
    prune_aware: PruneAwareStage | None = Field(None, description="steps 1a-1b; None: the plain recipe")


class RateConstraint(StrictModel):
    """The rate term: the estimated code length R of the sent symbols (entropy.rate, bits per symbol
    under the level's context neighbours) is penalized by weight / 2 x max(0, R - target)^2."""

    target_bits_per_symbol: float = Field(gt=0, description="no penalty at or below this estimate, bits per symbol")
    weight: float = Field(2.0, gt=0, description="penalty per (bit per symbol over the target) squared, x 1/2")
    count_decay: float = Field(0.99, ge=0, lt=1, description="decay per batch of the estimate's running symbol counts")


class RateStage(SgdStage):
    """Stage 6: stage 5's trainee fine-tuned with the rate term."""

    rate: RateConstraint


class AecnnLevelConfig(QuantizedLevelConfig):
    """One compression level: which channels survive and at how many bits, and how to train it."""

    codec: str = Field("aecnn", pattern="^aecnn$")
    keep_channels: PositiveInt
    recovery_hidden: PositiveInt = 32
    base: AecnnBaseConfig = AecnnBaseConfig()
    recovery: SgdStage = SgdStage(epochs=1, lr=0.05, batch_size=256)
    finetune: SgdStage = SgdStage(epochs=2, lr=0.01, batch_size=256)
    device_finetune: SgdStage | None = Field(None, description="stage 5: the level's own head and attention, "
                                                               "end to end on images; None: the shared head")
    rate_finetune: RateStage | None = Field(None, description="stage 6: stage 5's result with a rate term; "
                                                              "None: none")

    @model_validator(mode="after")
    def _rate_after_own_head(self) -> AecnnLevelConfig:
        if self.rate_finetune is not None and self.device_finetune is None:
            raise ValueError(f"level {self.level}: rate_finetune (stage 6) fine-tunes stage 5's own head; "
                             "it needs device_finetune")
        return self

    @model_validator(mode="after")
    def _trained_by_the_prune_aware_head(self) -> AecnnLevelConfig:
        # The level starts from the recovery network the prune-aware head trained for its kept count.
        stage = self.base.prune_aware
        if stage is not None and (self.keep_channels not in stage.keep_counts
                                  or self.recovery_hidden != stage.recovery_hidden):
            raise ValueError(f"level {self.level}: keep_channels {self.keep_channels} must be one of "
                             f"base.prune_aware.keep_counts {stage.keep_counts} and recovery_hidden "
                             f"{self.recovery_hidden} must equal its recovery_hidden {stage.recovery_hidden}")
        return self


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
        return optimize_epoch(batches, lambda b: (F.cross_entropy(base(b[0]).float(), b[1]), len(b[1])), optimizer,
                              scheduler, on_step, stage.precision)

    loop.run(train_epoch, lambda: evaluate(base, test_set), resume=(out / "stage1" / STATE_FILE).exists(),
             show_progress=show_progress)
    save_tensors(out / BASE_WEIGHTS, base.state_dict())
    return base.eval()


def rank_channels(weights: torch.Tensor) -> list[int]:
    """Channel indices by mean attention weight over the images (rows of `weights`), largest first."""
    return torch.argsort(weights.mean(0), descending=True, stable=True).tolist()


def fixed_ranking(cfg: AecnnBaseConfig, base: AecnnBase) -> list[int]:
    """Step 1a: the ranking of the stage-1 attention, computed once and stored (resumes from ranking.json)."""
    out = Path(cfg.output_dir)
    if (out / RANKING_FILE).exists():
        return read_json(out / RANKING_FILE)["order"]
    base.eval()
    dataset = load_card(cfg.backbone)["dataset"]["name"]
    train_set = load_dataset(dataset, "train").take(cfg.train_limit)
    weights = map_batches(train_set, lambda x: {"w": base.attention.weights(base.backbone.head(x, base.split))})["w"]
    order = rank_channels(weights)
    atomic_write_json(out / RANKING_FILE, {"order": order, "mean_attention": weights.mean(0).tolist(),
                                           "source": "stage-1 attention", "train_checksum": train_set.checksum})
    return order


def train_prune_aware(cfg: AecnnBaseConfig, base: AecnnBase, order: list[int],
                      show_progress: bool = True) -> PruneAwareHead:
    """Step 1b (resumes a partial run; returns at once when done). `base` (stage 1) is the teacher
    and stays unchanged; the returned head holds a trained copy."""
    out = Path(cfg.output_dir)
    stage = cfg.prune_aware
    head = PruneAwareHead(copy.deepcopy(base), order, stage.keep_counts, stage.bits, stage.recovery_hidden,
                          stage.range_quantiles)
    if (out / PRUNE_AWARE_WEIGHTS).exists():
        load_module_state(head, load_tensors(out / PRUNE_AWARE_WEIGHTS), str(out / PRUNE_AWARE_WEIGHTS))
        return head.eval()
    teacher = base.eval().requires_grad_(False)
    dataset = load_card(cfg.backbone)["dataset"]["name"]
    train_set = load_dataset(dataset, "train").take(cfg.train_limit)
    test_set = load_dataset(dataset, "test").take(min(stage.eval_images, cfg.test_limit or stage.eval_images))
    # The running range starts from the stage-1 features, so the first evaluations are meaningful.
    with torch.no_grad():
        sample = map_batches(train_set.take(2000), lambda x: {"f": teacher.features(x)})["f"]
    head.lo, head.hi = fit_channel_range(sample, *stage.range_quantiles)
    torch.manual_seed(cfg.seed)
    steps_per_epoch = math.ceil(len(train_set) / stage.batch_size)
    params = [p for p in head.parameters() if p.requires_grad]
    optimizer, scheduler = make_sgd(params, stage, stage.epochs * steps_per_epoch)
    loop = EpochLoop(out / "stage1b", cfg.model_dump(mode="json"), head, optimizer, scheduler, stage.epochs,
                     steps_per_epoch, cfg.seed, "stage 1b: prune-aware head")
    draw = torch.tensor(stage.keep_weights, dtype=torch.float64)

    def train_epoch(epoch, generator, on_step) -> float:
        def loss_of(batch) -> tuple[torch.Tensor, int]:
            x, y = batch
            keep = stage.keep_counts[int(torch.multinomial(draw, 1, generator=generator))]
            with torch.no_grad():
                target = teacher.features(x)
                teacher_logits = teacher.backbone.tail(target, teacher.split)
            recovered, logits = head(x, keep)
            return split_loss(stage.loss, recovered, target, logits, teacher_logits, y), len(y)

        batches = iterate_batches(train_set, stage.batch_size, generator, augment=True)
        return optimize_epoch(batches, loss_of, optimizer, scheduler, on_step, stage.precision)

    loop.run(train_epoch, lambda: evaluate(head, test_set, logits_of=lambda x: head(x, stage.eval_keep)[1]),
             resume=(out / "stage1b" / STATE_FILE).exists(), show_progress=show_progress)
    save_tensors(out / PRUNE_AWARE_WEIGHTS, head.state_dict())
    return head.eval()


def device_base_state(out: Path) -> dict[str, torch.Tensor]:
    """The head and attention the device runs: the prune-aware head when there is one, else stage 1's."""
    if (out / PRUNE_AWARE_WEIGHTS).exists():
        return strip_prefix(load_tensors(out / PRUNE_AWARE_WEIGHTS), "base.")
    return load_tensors(out / BASE_WEIGHTS)


def importance_and_cache(cfg: AecnnBaseConfig, base: AecnnBase, teacher: AecnnBase | None = None,
                         fixed_order: list[int] | None = None) -> tuple[list[int], dict[str, torch.Tensor]]:
    """Stage 2: channel order (by mean attention weight, or `fixed_order`), and the cached split features
    with the logits of `teacher` (default: `base` itself, uncompressed) as the distillation target."""
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
        logits = base.backbone.tail(f, base.split) if teacher is None else teacher(x)
        return {"features": f.half(), "teacher": logits, "weights": w}

    cache, train = cache_split_features(attended, train_set, test_set, cfg.cache_mirrored)
    order = rank_channels(train["weights"]) if fixed_order is None else fixed_order
    save_tensors(out / CACHE_FILE, cache)
    atomic_write_json(out / IMPORTANCE_FILE, {
        "order": order, "order_source": "this head's attention" if fixed_order is None else RANKING_FILE,
        "mean_attention": train["weights"].mean(0).tolist(),
        "uncompressed_with_attention_top1": float((cache["test_teacher"].argmax(1) == cache["test_labels"]).float().mean()),
        "train_checksum": train_set.checksum, "test_checksum": test_set.checksum,
    })
    return order, cache


def _train_level_stage(cfg: AecnnLevelConfig, level: AecnnLevel, cache: dict, stage: SgdStage, name: str,
                       quantized: bool, train_tail: bool, params, show_progress: bool) -> list[dict]:
    # Stage 3 keeps the tail fixed, its BN statistics included. The settings of stages 5-6 do not touch
    # these stages, so adding them to a finished level resumes these as they are.
    config = cfg.stage_config("device_finetune", "rate_finetune")
    return train_cached_stage(cfg.level_dir / name, config, level, cache, stage, params,
                              level_loss(cfg.loss, level, quantized), cfg.base.seed,
                              f"level {cfg.level} {name}", lambda: level_top1(level, cache, quantized),
                              frozen_modules=() if train_tail else (level.net,), show_progress=show_progress)


class DeviceAndLevel(nn.Module):
    """Stage 5's trainee: the level's own device head and attention, and the level's server side."""

    def __init__(self, device: AecnnBase, level: AecnnLevel):
        super().__init__()
        self.device = device
        self.level = level

    def forward_with_levels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(recovered split tensor, logits, sent channels on the symbol axis before rounding)
        through quantization in the loop."""
        features = self.device.features(x)
        levels = quantization_levels(self.level.select(features), self.level.lo, self.level.hi, self.level.bits)
        recovered = self.level.reconstruct(features, quantized=True)
        return recovered, self.level.tail(recovered), levels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_with_levels(x)[:2]

    def device_state(self) -> dict[str, torch.Tensor]:
        """The tensors the device runs: head and attention (the backbone's tail belongs to the server)."""
        tail = tuple(f"backbone.{p}" for p in self.device.backbone.tail_prefixes(self.device.split))
        return {k: v for k, v in self.device.state_dict().items() if not k.startswith(tail)}


class RateLimited(nn.Module):
    """Stage 6's trainee: stage 5's, with the code-length estimate (its running counts are checkpointed)."""

    def __init__(self, trainee: DeviceAndLevel, rate: RateProxy):
        super().__init__()
        self.trainee = trainee
        self.rate = rate


def train_device_head(cfg: AecnnLevelConfig, model: DeviceAndLevel, teacher: AecnnBase, train_set: ImageSet,
                      test_set: ImageSet, show_progress: bool = True, rate: RateProxy | None = None) -> list[dict]:
    """Stage 5 (head, attention, recovery and tail of one level, end to end) or, with `rate`, stage 6
    (the same with the rate term); resumes a partial run."""
    stage = cfg.device_finetune if rate is None else cfg.rate_finetune
    teacher = teacher.eval().requires_grad_(False)
    server_tail = tuple(f"level.net.{p}" for p in model.level.net.tail_prefixes(cfg.base.split))
    params = [p.requires_grad_(True) for k, p in model.named_parameters()
              if k.startswith(("device.", "level.recovery.") + server_tail)]
    torch.manual_seed(cfg.base.seed + cfg.level)
    steps_per_epoch = math.ceil(len(train_set) / stage.batch_size)
    optimizer, scheduler = make_sgd(params, stage, stage.epochs * steps_per_epoch)
    name = "stage5" if rate is None else "stage6"
    # Stage 5 does not depend on stage 6, so adding stage 6 to a finished level resumes stage 5. Stage 6's
    # rate term counts symbols under the context neighbours, so they are part of what identifies it.
    config = (cfg.stage_config("rate_finetune") if rate is None
              else {**cfg.stage_config(), "context_neighbours": list(cfg.neighbours)})
    out = cfg.level_dir / name
    loop = EpochLoop(out, config, model if rate is None else RateLimited(model, rate), optimizer, scheduler,
                     stage.epochs, steps_per_epoch, cfg.base.seed, f"level {cfg.level} {name}")

    def train_epoch(epoch, generator, on_step) -> float:
        def loss_of(batch) -> tuple[torch.Tensor, int]:
            x, y = batch
            with torch.no_grad():
                target = teacher.features(x)
                teacher_logits = teacher.backbone.tail(target, teacher.split)
            recovered, logits, levels = model.forward_with_levels(x)
            loss = split_loss(cfg.loss, recovered, target, logits, teacher_logits, y)
            if rate is not None:
                excess = F.relu(rate(levels) - stage.rate.target_bits_per_symbol)
                loss = loss + stage.rate.weight / 2 * excess**2
            return loss, len(y)

        batches = iterate_batches(train_set, stage.batch_size, generator, augment=True)
        return optimize_epoch(batches, loss_of, optimizer, scheduler, on_step, stage.precision)

    history, _ = loop.run(train_epoch, lambda: evaluate(model, test_set, logits_of=lambda x: model(x)[1]),
                          resume=(out / STATE_FILE).exists(), show_progress=show_progress)
    return history


def train_level(cfg: AecnnLevelConfig, show_progress: bool = True) -> dict:
    """All stages for one level (1-4, with 1a-1b when `base.prune_aware` is set and 5 with
    `device_finetune`); returns the level card (also written to level.json)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    Path(cfg.base.output_dir).mkdir(parents=True, exist_ok=True)
    check_or_write_base_config(cfg.base, Path(cfg.base.output_dir))
    base = train_attention(cfg.base, show_progress)
    if cfg.keep_channels > base.channels:
        raise CheckpointError(f"keep_channels {cfg.keep_channels} > {base.channels} channels at {cfg.base.split}")
    prune_aware = cfg.base.prune_aware
    teacher = base
    if prune_aware is None:
        order, cache = importance_and_cache(cfg.base, base)
    else:
        ranking = fixed_ranking(cfg.base, base)
        head = train_prune_aware(cfg.base, base, ranking, show_progress)
        order, cache = importance_and_cache(cfg.base, head.base, teacher=base, fixed_order=ranking)
        base = head.base
    torch.manual_seed(cfg.base.seed + cfg.level)
    keep = torch.tensor(order[:cfg.keep_channels])
    level = AecnnLevel(base.backbone, cfg.base.split, keep, cfg.bits, base.channels, cfg.recovery_hidden)
    if prune_aware is not None:
        # Its recovery network and tail; the level's (unused) head copy stays the new head.
        level.load_state_dict({**level.state_dict(), **head.servers[str(cfg.keep_channels)].level_state()})
    # The quantization range comes from the training features of the kept channels.
    sample = cache["train_features"][:20000, keep].float()
    level.lo, level.hi = fit_channel_range(sample, *cfg.range_quantiles)
    level.net.requires_grad_(False)  # stage 3 trains the recovery network only
    # A recovery network from the prune-aware head was trained on quantized input: keep it so.
    stage3 = _train_level_stage(cfg, level, cache, cfg.recovery, "stage3", prune_aware is not None, False,
                                level.recovery.parameters(), show_progress)
    tail_keys = level.level_state().keys()
    tail_params = [p.requires_grad_(True) for k, p in level.named_parameters() if k.startswith("net.") and k in tail_keys]
    stage4 = _train_level_stage(cfg, level, cache, cfg.finetune, "stage4", True, True,
                                list(level.recovery.parameters()) + tail_params, show_progress)
    history = {"stage3": stage3, "stage4": stage4}
    own_device = {}
    if cfg.device_finetune is None:
        level.eval()
        top1 = level_top1(level, cache, quantized=True)
        train_features = cache["train_features"]
    else:
        dataset = load_card(cfg.base.backbone)["dataset"]["name"]
        train_set = load_dataset(dataset, "train").take(cfg.base.train_limit)
        test_set = load_dataset(dataset, "test").take(cfg.base.test_limit)
        model = DeviceAndLevel(copy.deepcopy(base), level)
        history["stage5"] = train_device_head(cfg, model, teacher, train_set, test_set, show_progress)
        if cfg.rate_finetune is not None:
            rate = RateProxy(cfg.keep_channels, cfg.bits, cfg.neighbours, cfg.rate_finetune.rate.count_decay)
            history["stage6"] = train_device_head(cfg, model, teacher, train_set, test_set, show_progress, rate)
            history["stage6_estimated_bits_per_symbol"] = rate.estimate()  # under the counts of its last batches
        model.eval()
        top1 = history["stage6" if cfg.rate_finetune else "stage5"][-1]["test_top1"]
        own_device = {f"device.{k}": v for k, v in model.device_state().items()}
        train_features = map_batches(train_set, lambda x: {"f": model.device.features(x).half()})["f"]
    entropy, code_length = fit_entropy(level.symbols, train_features, cfg.bits, cfg.neighbours)
    save_tensors(cfg.level_dir / LEVEL_WEIGHTS, {**level.level_state(), **own_device,
                                                 **{f"entropy.{k}": v for k, v in entropy.to_tensors().items()}})
    card = {
        "level": cfg.level, "keep_channels": cfg.keep_channels, "bits": cfg.bits, "keep": keep.tolist(),
        "recovery_hidden": cfg.recovery_hidden, "entropy": entropy.metadata(),
        "entropy_bits_per_symbol": code_length, "own_device_head": cfg.device_finetune is not None,
        "test_top1_tensor_path": top1, "history": history, "config": cfg.model_dump(mode="json"),
    }
    atomic_write_json(cfg.level_dir / LEVEL_CARD, card)
    return card

