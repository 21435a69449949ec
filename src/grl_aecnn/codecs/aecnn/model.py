"""AECNN modules: channel attention on the device, feature recovery on the server.

Data flow for one compression level (k kept channels, b bits):

    device:  x -> backbone.head(x, split) -> ChannelAttention -> keep k channels -> quantize(b) -> symbols
    server:  symbols -> dequantize -> FeatureRecovery (k -> C channels) -> level tail -> logits

The attention module is fine-tuned with the backbone (stage 1) and shared by all levels; each level
has its own kept-channel set, quantization range, recovery network and fine-tuned tail. With the
prune-aware stage (`PruneAwareHead`), the shared head is then trained further to concentrate the
content in the top-ranked channels, for every level's kept count at once; stage 5 may then give a
level its own copy of head and attention, trained for that level alone.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from grl_aecnn.codecs.base import SplitLevel
from grl_aecnn.entropy import dequantize, fit_channel_range, quantize, quantize_ste
from grl_aecnn.nets import SplitNet, split_shape


class ChannelAttention(nn.Module):
    """CBAM-style channel attention: a shared MLP on global average and max pooling, then sigmoid."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))

    def weights(self, z: torch.Tensor) -> torch.Tensor:
        """Per-channel weights in (0, 1), shape (N, C)."""
        pooled = self.mlp(z.mean((2, 3), keepdim=True)) + self.mlp(z.amax((2, 3), keepdim=True))
        return torch.sigmoid(pooled).flatten(1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.weights(z)[:, :, None, None]


class FeatureRecovery(nn.Module):
    """Rebuilds all C channels from the k received ones.

    The received channels are put back in place and a small CNN adds its estimate of everything
    (the missing channels and a correction of the quantized ones). Its last convolution starts at
    zero, so training starts from the plain zero-filled tensor.
    """

    def __init__(self, keep: torch.Tensor, channels: int, hidden: int = 32):
        super().__init__()
        self.register_buffer("keep", keep.clone().long())
        self.channels = channels
        k = len(keep)
        self.body = nn.Sequential(
            nn.Conv2d(k, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, received: torch.Tensor) -> torch.Tensor:
        n, _, h, w = received.shape
        placed = received.new_zeros(n, self.channels, h, w)
        placed[:, self.keep] = received
        return placed + self.body(received)


class AecnnLevel(SplitLevel):
    """One compression level: kept channels, quantization range and bits, recovery network, tail."""

    def __init__(self, backbone: SplitNet, split: str, keep: torch.Tensor, bits: int, channels: int, hidden: int):
        super().__init__()
        self.split = split
        self.bits = bits
        self.recovery = FeatureRecovery(keep, channels, hidden)
        self.register_buffer("lo", torch.zeros(len(keep)))
        self.register_buffer("hi", torch.ones(len(keep)))
        # Only the tail of this copy is used; its head weights stay as shared by the base model.
        self.net = copy.deepcopy(backbone)

    @property
    def keep(self) -> torch.Tensor:
        return self.recovery.keep

    def select(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, self.keep]

    def symbols(self, features: torch.Tensor) -> torch.Tensor:
        """Device side: attention-weighted split features (N, C, H, W) -> uint8 symbols (N, k, H, W)."""
        return quantize(self.select(features), self.lo, self.hi, self.bits)

    def logits_from_symbols(self, symbols: torch.Tensor) -> torch.Tensor:
        """Server side: symbols -> logits."""
        return self.tail(self.recovery(dequantize(symbols, self.lo, self.hi, self.bits)))

    def reconstruct(self, features: torch.Tensor, quantized: bool) -> torch.Tensor:
        """Training path: pruning, optional straight-through quantization, recovery of all channels."""
        kept = self.select(features)
        if quantized:
            kept = quantize_ste(kept, self.lo, self.hi, self.bits)
        return self.recovery(kept)



class AecnnBase(nn.Module):
    """The backbone with channel attention at the split: shared by every level (stage 1)."""

    def __init__(self, backbone: SplitNet, split: str, reduction: int = 4):
        super().__init__()
        self.backbone = backbone
        self.split = split
        self.attention = ChannelAttention(split_shape(backbone, split)[0], reduction)

    @property
    def channels(self) -> int:
        return self.attention.mlp[-1].out_channels

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Device side, before pruning: attention-weighted split tensor (N, C, H, W)."""
        return self.attention(self.backbone.head(x, self.split))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.tail(self.features(x), self.split)


class PruneAwareHead(nn.Module):
    """The shared device head trained so that the top-k channels of a fixed ranking carry the content.

    `base` holds the head and attention being trained. The server side is one `AecnnLevel` per kept
    count k (recovery network and its own copy of the stage-1 tail), receiving channels order[:k], so
    the kept sets are nested and every tail's batch-norm statistics come from its own k only (one
    shared tail would average them over the masked batches). Quantization runs in the loop on a
    per-channel range taken from the batch while training and from its running average (`lo`, `hi`,
    like batch-norm statistics) in eval mode.
    """

    def __init__(self, base: AecnnBase, order: list[int], keep_counts: list[int], bits: int, hidden: int,
                 range_quantiles: tuple[float, float], range_momentum: float = 0.1):
        super().__init__()
        self.base = base
        self.bits = bits
        self.range_quantiles = range_quantiles
        self.range_momentum = range_momentum
        self.servers = nn.ModuleDict({
            str(k): AecnnLevel(base.backbone, base.split, torch.tensor(order[:k]), bits, base.channels, hidden)
            for k in keep_counts})
        for server in self.servers.values():
            # Only the tail of each copy is used and learns; the device head is `base`.
            for name, param in server.net.named_parameters():
                param.requires_grad_(name.startswith(server.net.tail_prefixes(base.split)))
        self.register_buffer("lo", torch.zeros(base.channels))
        self.register_buffer("hi", torch.ones(base.channels))

    def forward(self, x: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(recovered split tensor, logits) with only the top-`keep` channels sent."""
        features = self.base.features(x)
        if self.training:
            lo, hi = fit_channel_range(features, *self.range_quantiles)
            self.lo.lerp_(lo, self.range_momentum)
            self.hi.lerp_(hi, self.range_momentum)
        else:
            lo, hi = self.lo, self.hi
        server = self.servers[str(keep)]
        kept = quantize_ste(features[:, server.keep], lo[server.keep], hi[server.keep], self.bits)
        recovered = server.recovery(kept)
        return recovered, server.tail(recovered)
