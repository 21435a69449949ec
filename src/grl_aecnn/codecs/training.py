"""Pieces every split-feature codec trainer shares (AECNN, BottleNet++) and the image-level one
(DeepJSCC) partly uses: SGD stages, the cache of split features with the teacher's logits, the
feature-MSE + distillation + cross-entropy loss, resumable stages over cached features, and fitting
the entropy model on the training set's symbols.

The head is frozen in every split-feature codec, so the split tensor of each training image is
computed once (fp16) and every later stage costs only the codec and tail passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, PositiveInt, model_validator

from grl_aecnn.codecs.base import SplitLevel
from grl_aecnn.config import StrictModel
from grl_aecnn.data import ImageSet, iterate_batches
from grl_aecnn.entropy import DEFAULT_NEIGHBOURS, NEIGHBOURS, EntropyModel, channel_histograms, check_neighbours
from grl_aecnn.errors import CheckpointError
from grl_aecnn.loop import PRECISION_HELP, STATE_FILE, EpochLoop, Precision, optimize_epoch
from grl_aecnn.nets import SplitNet
from grl_aecnn.store import atomic_write_json, read_json, save_tensors
from grl_aecnn.zoo import load_backbone, load_card

CACHE_FILE = "cache.safetensors"
BASE_CONFIG_FILE = "base_config.json"
BACKBONE_WEIGHTS = "backbone.safetensors"
BACKBONE_INFO = "backbone.json"
LEVEL_WEIGHTS = "level.safetensors"
LEVEL_CARD = "level.json"


class SgdStage(StrictModel):
    """One SGD stage with a cosine schedule to zero. lr is per step, batch_size in samples."""

    epochs: PositiveInt
    lr: float = Field(gt=0)
    batch_size: PositiveInt = 128
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    precision: Precision = Field("fp32", description=PRECISION_HELP)


class LossWeights(StrictModel):
    feature_mse: float = Field(1.0, ge=0)
    distill: float = Field(1.0, ge=0, description="KL to the uncompressed model's logits, times T^2")
    cross_entropy: float = Field(0.5, ge=0)
    temperature: float = Field(4.0, gt=0)


class QuantizedLevelConfig(StrictModel):
    """What the level configs of the quantized split-feature codecs share (AECNN, BottleNet++):
    level number, bits, quantization range, loss weights, threads, and where the level's stages live.
    Subclasses add their architecture, a `base` config with an `output_dir`, and their stages."""

    level: int = Field(ge=0, le=255)
    bits: int = Field(ge=1, le=8)
    range_quantiles: tuple[float, float] = Field((0.0, 0.999), description="per-channel range from these quantiles")
    loss: LossWeights = LossWeights()
    context_model: bool = Field(True, description="entropy-code each symbol under the context of its neighbours "
                                                  "(about 30% fewer bytes) instead of i.i.d. per channel")
    context_neighbours: list[str] = Field(list(DEFAULT_NEIGHBOURS), min_length=1,
                                          description=f"the neighbours of the context model, from {list(NEIGHBOURS)}")
    threads: PositiveInt | None = None

    @property
    def neighbours(self) -> tuple[str, ...]:
        """The entropy model's neighbours: none for an i.i.d. model."""
        return tuple(self.context_neighbours) if self.context_model else ()

    def stage_config(self, *exclude: str) -> dict:
        """The resolved config that identifies a training stage's checkpoint: without the entropy
        model's neighbours (fitted after training, so changing them refits it without retraining the
        stages that do not use them) and without `exclude`."""
        return self.model_dump(mode="json", exclude={"context_neighbours", *exclude})

    @model_validator(mode="after")
    def _quantiles_ordered(self) -> QuantizedLevelConfig:
        check_neighbours(self.context_neighbours)
        lo, hi = self.range_quantiles
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"range_quantiles must satisfy 0 <= lo < hi <= 1, got {self.range_quantiles}")
        return self

    @property
    def level_dir(self) -> Path:
        return Path(self.base.output_dir) / f"level{self.level:03d}"


def make_sgd(params, stage: SgdStage, steps: int):
    optimizer = torch.optim.SGD(params, lr=stage.lr, momentum=stage.momentum, nesterov=True,
                                weight_decay=stage.weight_decay)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


def check_or_write_base_config(cfg: BaseModel, out: Path) -> None:
    """Stages shared by several levels live in `out`; refuse to reuse them under another base config."""
    path = out / BASE_CONFIG_FILE
    resolved = cfg.model_dump(mode="json")
    if path.exists():
        if read_json(path) != resolved:
            raise CheckpointError(f"{path}: the shared stages in {out} were made with another base config; "
                                  "use the same `base:` section in every level config, or another output_dir")
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, resolved)


def frozen_backbone(name: str, out: Path) -> SplitNet:
    """The zoo backbone `name` (eval mode, no gradients), its weights kept in `out` for shipping. Every
    level trained in `out` must see the same weights: a retrained zoo backbone is refused."""
    sha = load_card(name)["weights_sha256"]
    info = out / BACKBONE_INFO
    if info.exists() and read_json(info)["weights_sha256"] != sha:
        raise CheckpointError(f"{out}: its levels were trained on other {name} weights than the zoo's now; "
                              "use another output_dir")
    backbone = load_backbone(name).requires_grad_(False)
    if not info.exists():
        save_tensors(out / BACKBONE_WEIGHTS, backbone.state_dict())
        atomic_write_json(info, {"name": name, "weights_sha256": sha})
    return backbone


@torch.no_grad()
def map_batches(data: ImageSet, fn: Callable[[torch.Tensor], dict[str, torch.Tensor]], mirrored: bool = False,
                batch_size: int = 500) -> dict[str, torch.Tensor]:
    """fn on every (optionally mirrored) image of data in order; its per-image outputs concatenated."""
    parts: dict[str, list[torch.Tensor]] = {}
    for x, _ in iterate_batches(data, batch_size):
        for key, value in fn(x.flip(-1) if mirrored else x).items():
            parts.setdefault(key, []).append(value)
    return {key: torch.cat(values) for key, values in parts.items()}


def cache_split_features(fn: Callable[[torch.Tensor], dict[str, torch.Tensor]], train_set: ImageSet,
                         test_set: ImageSet, mirrored: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The feature cache (train/test features in fp16, teacher logits, labels) and fn's full output on the
    un-mirrored training set (for extras such as attention weights). fn(x) returns at least
    `features` (N, C, H, W) and `teacher` (N, classes)."""
    train = map_batches(train_set, fn)
    passes = [train, map_batches(train_set, fn, mirrored=True)] if mirrored else [train]
    test = map_batches(test_set, fn)
    labels = torch.from_numpy(train_set.labels)
    cache = {
        "train_features": torch.cat([p["features"] for p in passes]).half(),
        "train_teacher": torch.cat([p["teacher"] for p in passes]),
        "train_labels": labels.repeat(len(passes)),
        "test_features": test["features"].half(), "test_teacher": test["teacher"],
        "test_labels": torch.from_numpy(test_set.labels),
    }
    return cache, train


def feature_batches(cache: dict, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
    n = len(cache["train_labels"])
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield cache["train_features"][idx].float(), cache["train_teacher"][idx], cache["train_labels"][idx]


def distill(logits: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    logits, teacher = logits.float(), teacher.float()  # log_softmax keeps bf16 under autocast
    return F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(teacher / t, 1), log_target=True,
                    reduction="batchmean") * t * t


def split_loss(w: LossWeights, recovered: torch.Tensor, features: torch.Tensor, logits: torch.Tensor,
               teacher: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Feature MSE at the split + distillation from the uncompressed model + cross-entropy."""
    recovered, features, logits = recovered.float(), features.float(), logits.float()
    return (w.feature_mse * F.mse_loss(recovered, features) + w.distill * distill(logits, teacher, w.temperature)
            + w.cross_entropy * F.cross_entropy(logits, labels))


@torch.no_grad()
def cached_top1(module: torch.nn.Module, logits_of: Callable[[torch.Tensor], torch.Tensor], cache: dict) -> float:
    """Top-1 on the cached test features (tensor path, no bytes): progress only, not the reported figure."""
    was_training = module.training
    module.eval()
    correct = 0
    for start in range(0, len(cache["test_labels"]), 500):
        f = cache["test_features"][start:start + 500].float()
        correct += int((logits_of(f).argmax(1) == cache["test_labels"][start:start + 500]).sum())
    module.train(was_training)
    return correct / len(cache["test_labels"])


def level_top1(level: SplitLevel, cache: dict, quantized: bool) -> float:
    """Top-1 of a level on the cached test features."""
    return cached_top1(level, lambda f: level.tail(level.reconstruct(f, quantized)), cache)


def level_loss(w: LossWeights, level: SplitLevel, quantized: bool) -> Callable[[tuple], torch.Tensor]:
    """The training loss of a level on a cached batch (features, teacher logits, labels)."""
    def loss_of(batch) -> torch.Tensor:
        f, teacher, y = batch
        recovered = level.reconstruct(f, quantized)
        return split_loss(w, recovered, f, level.tail(recovered), teacher, y)

    return loss_of


def train_cached_stage(out: Path, config: dict, module: torch.nn.Module, cache: dict, stage: SgdStage, params,
                       loss_of: Callable[[tuple], torch.Tensor], seed: int, description: str,
                       evaluate: Callable[[], float], frozen_modules: tuple[torch.nn.Module, ...] = (),
                       show_progress: bool = True) -> list[dict]:
    """One resumable stage over the cached training features; loss_of((features, teacher, labels)).
    frozen_modules stay in eval mode, so their BN statistics do not move."""
    steps_per_epoch = math.ceil(len(cache["train_labels"]) / stage.batch_size)
    optimizer, scheduler = make_sgd(params, stage, stage.epochs * steps_per_epoch)
    loop = EpochLoop(out, config, module, optimizer, scheduler, stage.epochs, steps_per_epoch, seed, description)

    def train_epoch(epoch, generator, on_step) -> float:
        for frozen in frozen_modules:
            frozen.eval()
        return optimize_epoch(feature_batches(cache, stage.batch_size, generator),
                              lambda b: (loss_of(b), len(b[2])), optimizer, scheduler, on_step, stage.precision)

    history, _ = loop.run(train_epoch, evaluate, resume=(out / STATE_FILE).exists(), show_progress=show_progress)
    return history


@torch.no_grad()
def fit_entropy(symbols_of: Callable[[torch.Tensor], torch.Tensor], features: torch.Tensor,
                bits: int, neighbours: tuple[str, ...] = ()) -> tuple[EntropyModel, float]:
    """The entropy model (a context model over `neighbours`, i.i.d. without) of the symbols that
    symbols_of makes from the training features, and the mean code length of those symbols under
    it (bits per symbol, smoothing included)."""
    counts = sum(channel_histograms(symbols_of(features[s:s + 2000].float()).numpy(), bits, neighbours)
                 for s in range(0, len(features), 2000))
    model = EntropyModel.from_counts(counts, bits, neighbours)
    p = model.frequencies / model.frequencies.sum(-1, keepdims=True)
    return model, float(-(counts * np.log2(p)).sum() / counts.sum())
