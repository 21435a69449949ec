"""DeepJSCC training, each stage checkpointed and resumable.

  1. Encoder and decoder trained end to end through the channel, the SNR drawn per image uniformly
     from `snr_train_db`, on augmented training images; loss: pixel MSE (the paper's objective).
  2. Optional (`task`): the same with a task term added, distillation from the frozen backbone's
     logits on the clean image to its logits on the reconstruction, so the decoder spends its
     capacity on what the classifier reads. The backbone itself is never trained.

`init_from` starts from a shipped DeepJSCC codec's level of the same number instead of random
weights (more task epochs on a finished model without redoing its MSE epochs, or a wider model that
starts out computing exactly the parent's function); the parent is recorded in the level card and
carried into the shipped card.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, model_validator

from grl_aecnn.codecs.channel import transmit
from grl_aecnn.codecs.deepjscc.codec import load_codecs
from grl_aecnn.codecs.deepjscc.model import DeepJscc
from grl_aecnn.codecs.training import LEVEL_CARD, LEVEL_WEIGHTS, distill, frozen_backbone
from grl_aecnn.config import StrictModel
from grl_aecnn.data import ImageSet, iterate_batches, load_dataset
from grl_aecnn.errors import CheckpointError
from grl_aecnn.loop import PRECISION_HELP, STATE_FILE, EpochLoop, Precision, optimize_epoch
from grl_aecnn.nets import SplitNet
from grl_aecnn.store import atomic_write_json, save_tensors
from grl_aecnn.zoo import load_card


class AdamStage(StrictModel):
    """One Adam stage (the paper trains with Adam) with a cosine schedule to zero."""

    epochs: PositiveInt
    lr: float = Field(1e-3, gt=0)
    batch_size: PositiveInt = 64
    precision: Precision = Field("fp32", description=PRECISION_HELP)


class DeepJsccLoss(StrictModel):
    mse: float = Field(1.0, ge=0, description="pixel MSE in [0, 1] units")
    distill: float = Field(0.01, ge=0, description="stage 2: KL from the backbone on the clean image, times T^2")
    temperature: float = Field(4.0, gt=0)


class DeepJsccConfig(StrictModel):
    """One bandwidth ratio: k/n = code_channels / 96 for 32x32x3 images."""

    codec: str = Field("deepjscc", pattern="^deepjscc$")
    level: int = Field(ge=0, le=255)
    code_channels: int = Field(ge=2, description="channels of the encoder output; must be even")
    width: PositiveInt = Field(32, description="filters of the inner layers (the first has half)")
    backbone: str = Field("resnet20-cifar10", description="zoo name of the backbone that classifies the reconstruction")
    channel: Literal["awgn", "rayleigh"] = "awgn"
    snr_train_db: tuple[float, float] = (0.0, 20.0)
    train: AdamStage | None = Field(AdamStage(epochs=5), description="stage 1; None only with init_from")
    task: AdamStage | None = AdamStage(epochs=1, lr=2e-4)
    init_from: str | None = Field(None, description="warm start: the zoo name of a shipped DeepJSCC codec whose level "
                                                    "of this number (same code_channels, width at most this width: a "
                                                    "narrower parent is widened exactly) starts training")
    init_from_other_backbone: bool = Field(
        False, description="allow init_from a codec trained against other weights of `backbone` (a retrain on a "
                           "new backbone; the card records both); by default such a parent is refused")
    loss: DeepJsccLoss = DeepJsccLoss()
    seed: int = 0
    train_limit: PositiveInt | None = None
    test_limit: PositiveInt | None = Field(2000, description="test images for the per-epoch top-1 (progress only)")
    threads: PositiveInt | None = None
    output_dir: str = "runs/codecs/deepjscc-resnet20-cifar10"

    @model_validator(mode="after")
    def _check(self) -> DeepJsccConfig:
        if self.code_channels % 2:
            raise ValueError(f"code_channels must be even (I and Q pairs), got {self.code_channels}")
        lo, hi = self.snr_train_db
        if lo > hi:
            raise ValueError(f"snr_train_db must be (low, high) with low <= high, got {self.snr_train_db}")
        if self.train is None and self.init_from is None:
            raise ValueError("train: None skips stage 1, which only a warm start (init_from) may do")
        if self.train is None and self.task is None:
            raise ValueError("no stage to train: set train, task or both")
        return self

    @property
    def level_dir(self) -> Path:
        return Path(self.output_dir) / f"level{self.level:03d}"


def image_shape(data: ImageSet) -> tuple[int, int, int]:
    """(C, H, W) of the images of data (stored NHWC)."""
    _, h, w, c = data.images.shape
    return c, h, w


def build_model(cfg: DeepJsccConfig, data: ImageSet) -> DeepJscc:
    return DeepJscc(cfg.code_channels, cfg.width, data.mean, data.std, in_channels=image_shape(data)[0])


@torch.no_grad()
def channel_top1(model: DeepJscc, backbone: SplitNet, data: ImageSet, snr_db: float, channel: str, seed: int) -> float:
    """Top-1 of the backbone on reconstructions after the channel at one SNR, seeded noise."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    correct = 0
    for x, y in iterate_batches(data, 500):
        received = transmit(model.symbols(x), snr_db, channel, generator)
        logits = backbone(model.normalize(model.reconstruct(received, image_shape(data))))
        correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    return correct / len(data)


def warm_start(model: DeepJscc, cfg: DeepJsccConfig) -> dict:
    """Load level `cfg.level` of the shipped codec `cfg.init_from` into model; return its provenance.
    The parent must have been trained against the same backbone weights that this run uses."""
    card = load_card(cfg.init_from)
    if card.get("codec") != "deepjscc":
        raise CheckpointError(f"init_from {cfg.init_from!r}: is a {card.get('codec')!r} codec, not deepjscc")
    backbone_sha256 = load_card(cfg.backbone)["weights_sha256"]
    if card["backbone_weights_sha256"] != backbone_sha256 and not cfg.init_from_other_backbone:
        raise CheckpointError(f"init_from {cfg.init_from!r}: trained against other {card['backbone']} weights than "
                              f"the zoo's {cfg.backbone} (init_from_other_backbone: true to continue it on these)")
    spec = next((level for level in card["levels"] if level["level"] == cfg.level), None)
    if spec is None or spec["code_channels"] != cfg.code_channels or spec["width"] > cfg.width:
        raise CheckpointError(f"init_from {cfg.init_from!r}: has no level {cfg.level} with code_channels "
                              f"{cfg.code_channels} and width at most {cfg.width}")
    parent = next(codec for codec in load_codecs(cfg.init_from) if codec.level == cfg.level)
    if spec["width"] < cfg.width:
        model.load_narrower(parent.model)
    else:
        model.load_state_dict(parent.model.state_dict())
    return {"codec": cfg.init_from, "weights_sha256": card["weights_sha256"],
            "backbone_weights_sha256": card["backbone_weights_sha256"], **spec}


def _stage(cfg: DeepJsccConfig, model: DeepJscc, backbone: SplitNet, train_set: ImageSet, test_set: ImageSet,
           stage: AdamStage, name: str, task: bool, show_progress: bool) -> list[dict]:
    steps_per_epoch = math.ceil(len(train_set) / stage.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=stage.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=stage.epochs * steps_per_epoch)
    out = cfg.level_dir / name
    loop = EpochLoop(out, cfg.model_dump(mode="json"), model, optimizer, scheduler, stage.epochs, steps_per_epoch,
                     cfg.seed, f"deepjscc {cfg.level} {name}")
    lo, hi = cfg.snr_train_db
    shape = image_shape(train_set)

    def train_epoch(epoch, generator, on_step) -> float:
        def loss_of(batch) -> tuple[torch.Tensor, int]:
            x, _ = batch
            snr = lo + (hi - lo) * torch.rand(len(x), generator=generator)
            received = transmit(model.symbols(x), snr, cfg.channel, generator)
            pixels = model.reconstruct(received, shape)
            loss = cfg.loss.mse * F.mse_loss(pixels, model.pixels(x))
            if task:
                with torch.no_grad():
                    teacher = backbone(x)
                loss = loss + cfg.loss.distill * distill(backbone(model.normalize(pixels)), teacher,
                                                         cfg.loss.temperature)
            return loss, len(x)

        batches = iterate_batches(train_set, stage.batch_size, generator, augment=True)
        return optimize_epoch(batches, loss_of, optimizer, scheduler, on_step, stage.precision)

    # Progress: top-1 at the top of the training SNR range, where the ratio's quality shows.
    history, _ = loop.run(train_epoch, lambda: channel_top1(model, backbone, test_set, hi, cfg.channel, cfg.seed),
                          resume=(out / STATE_FILE).exists(), show_progress=show_progress)
    return history


def train_level(cfg: DeepJsccConfig, show_progress: bool = True) -> dict:
    """Stages 1-2 for one bandwidth ratio; returns the level card (also written to level.json)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    backbone = frozen_backbone(cfg.backbone, Path(cfg.output_dir))
    dataset = load_card(cfg.backbone)["dataset"]["name"]
    train_set = load_dataset(dataset, "train").take(cfg.train_limit)
    test_set = load_dataset(dataset, "test").take(cfg.test_limit)
    torch.manual_seed(cfg.seed + cfg.level)
    model = build_model(cfg, train_set)
    parent = warm_start(model, cfg) if cfg.init_from else None
    history = {}
    if cfg.train is not None:
        history["stage1"] = _stage(cfg, model, backbone, train_set, test_set, cfg.train, "stage1", False, show_progress)
    if cfg.task is not None:
        history["stage2"] = _stage(cfg, model, backbone, train_set, test_set, cfg.task, "stage2", True, show_progress)
    model.eval()
    n = math.prod(image_shape(train_set))
    symbols = math.prod(model.code_shape(image_shape(train_set))) // 2
    save_tensors(cfg.level_dir / LEVEL_WEIGHTS, model.state_dict())
    card = {
        "level": cfg.level, "code_channels": cfg.code_channels, "width": cfg.width, "symbols": symbols,
        "bandwidth_ratio": symbols / n, "channel": cfg.channel, "snr_train_db": list(cfg.snr_train_db),
        "test_top1_top_snr": history["stage2" if cfg.task else "stage1"][-1]["test_top1"], "history": history,
        "config": cfg.model_dump(mode="json"), **({"init_from": parent} if parent else {}),
    }
    atomic_write_json(cfg.level_dir / LEVEL_CARD, card)
    return card
