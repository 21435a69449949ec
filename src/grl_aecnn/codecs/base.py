"""The one protocol every codec implements: device side `encode`, server side `decode`.

A codec object is one operating point (one compression level of one method on one backbone). The
device side takes a normalized image (C, H, W) and returns the bytes that go on the air; the server
side takes those bytes and returns class logits. `split` names the backbone stage after which the
device stops (None when the device sends the image itself); FLOPs are per image, counted by
torch's FlopCounterMode. The batch methods give the same results as the one-image methods up to
float rounding (they exist because servers and profile builds batch).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Codec(Protocol):
    codec_id: str
    level: int
    split: str | None
    device_flops: int
    server_flops: int

    def encode(self, image: torch.Tensor) -> bytes:
        """Device side: one normalized image (C, H, W) -> the transmitted bytes."""
        ...

    def decode(self, data: bytes) -> torch.Tensor:
        """Server side: bytes -> logits (num_classes,). Raises BitstreamError on bad input."""
        ...

    def encode_batch(self, images: torch.Tensor) -> list[bytes]:
        """`encode` of each image of a batch (B, C, H, W), computed together."""
        ...

    def decode_batch(self, data: list[bytes]) -> torch.Tensor:
        """`decode` of each bitstream, computed together: logits (B, num_classes)."""
        ...


class SplitLevel(nn.Module):
    """What AECNN and BottleNet++ levels share: a module between the head and the tail of its own copy
    `net` of the backbone, cut at `split`. Subclasses set `net` and `split` and define `reconstruct`."""

    net: nn.Module
    split: str

    def reconstruct(self, features: torch.Tensor, quantized: bool) -> torch.Tensor:
        """Training path: split features -> the features the tail receives (quantized or not)."""
        raise NotImplementedError

    def tail(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.tail(features, self.split)

    def level_state(self) -> dict[str, torch.Tensor]:
        """The parameters that belong to this level: its own modules and buffers, and the tail of `net`
        (the head is the backbone's, shared by every level)."""
        prefixes = tuple(f"net.{p}" for p in self.net.tail_prefixes(self.split))
        return {k: v for k, v in self.state_dict().items() if not k.startswith("net.") or k.startswith(prefixes)}
