"""A classifier as an ordered list of stages whose boundaries are the split points.

head(x, split) runs the stages up to and including `split` on the mobile device; tail(z, split)
runs the rest and the classifier on the edge server. forward(x) is the same sequence of calls, so
tail(head(x, s), s) equals forward(x) bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from grl_aecnn.errors import SplitPointError


class SplitNet(nn.Module):
    def __init__(self, stages: dict[str, nn.Module], classifier: nn.Module, input_shape: tuple[int, int, int]):
        super().__init__()
        self.stages = nn.ModuleDict(stages)
        self.classifier = classifier
        self.input_shape = input_shape

    @property
    def split_names(self) -> tuple[str, ...]:
        return tuple(self.stages.keys())

    def _index(self, split: str) -> int:
        try:
            return self.split_names.index(split)
        except ValueError:
            raise SplitPointError(f"unknown split point {split!r}; this model has {list(self.split_names)}") from None

    def _run(self, x: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
        for name in names:
            x = self.stages[name](x)
        return x

    def head(self, x: torch.Tensor, split: str) -> torch.Tensor:
        return self._run(x, self.split_names[: self._index(split) + 1])

    def tail(self, z: torch.Tensor, split: str) -> torch.Tensor:
        return self.classifier(self._run(z, self.split_names[self._index(split) + 1 :]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self._run(x, self.split_names))

    def tail_prefixes(self, split: str) -> tuple[str, ...]:
        """State-dict key prefixes of the modules `tail(z, split)` runs."""
        return tuple(f"stages.{s}." for s in self.split_names[self._index(split) + 1:]) + ("classifier.",)


@dataclass(frozen=True)
class SplitInfo:
    name: str
    shape: tuple[int, ...]
    bytes_fp32: int
    head_flops: int
    tail_flops: int

    def to_json(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}


def split_shape(model: SplitNet, split: str) -> tuple[int, ...]:
    """Shape (C, H, W) of the tensor at `split` for one input image; leaves the model's mode and BN statistics alone."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        shape = tuple(model.head(torch.zeros(1, *model.input_shape), split).shape[1:])
    model.train(was_training)
    return shape


def count_flops(fn, *args) -> int:
    """FLOPs of one call, as torch's FlopCounterMode counts them (a multiply-add is 2 FLOPs)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args)
    return int(counter.get_total_flops())


def split_table(model: SplitNet) -> list[SplitInfo]:
    """Per split point: the intermediate tensor of one image, its float32 size, head and tail FLOPs."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, *model.input_shape)
    rows = []
    for split in model.split_names:
        with torch.no_grad():
            z = model.head(x, split)
        rows.append(SplitInfo(
            name=split,
            shape=tuple(z.shape[1:]),
            bytes_fp32=z[0].numel() * 4,
            head_flops=count_flops(model.head, x, split),
            tail_flops=count_flops(model.tail, z, split),
        ))
    model.train(was_training)
    return rows
