"""BottleNet++ (Shao & Zhang 2020) at a split point of a frozen backbone.

Data flow for one rate (c channels, spatial stride s, b bits):

    device:  x -> backbone.head(x, split) -> encoder (conv stride s, BN, sigmoid) -> quantize(b) -> symbols
    server:  symbols -> dequantize -> decoder (transposed conv, BN, ReLU, conv, BN, ReLU) -> rate's tail -> logits

The sigmoid bounds the code to (0, 1) as in the paper, which suits both the channel noise during
training and a fixed-size quantizer. During training a channel layer (AWGN or binary erasure) sits
between encoder and decoder, as in the paper's end-to-end training; the deployed link is digital and
lossless (entropy-coded, CRC-checked frame), so the fine-tuning stage replaces it with quantization.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from grl_aecnn.codecs.base import SplitLevel
from grl_aecnn.codecs.channel import awgn, erase
from grl_aecnn.entropy import dequantize, quantize, quantize_ste
from grl_aecnn.nets import SplitNet


class BottleneckEncoder(nn.Module):
    def __init__(self, channels: int, code_channels: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, code_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(code_channels), nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


class BottleneckDecoder(nn.Module):
    """Back to the split tensor's shape; post-ReLU like the backbone's features at a stage boundary."""

    def __init__(self, code_channels: int, channels: int, stride: int):
        super().__init__()
        upsample = (nn.ConvTranspose2d(code_channels, channels, 3, stride=stride, padding=1, output_padding=stride - 1,
                                       bias=False) if stride > 1 else nn.Conv2d(code_channels, channels, 3, padding=1,
                                                                                 bias=False))
        self.body = nn.Sequential(
            upsample, nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
        )

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.body(code)


class NoisyChannel(nn.Module):
    """The training-time channel: AWGN at snr_db against the code's mean power, or binary erasure."""

    def __init__(self, kind: str, snr_db: float, erasure: float):
        super().__init__()
        self.kind, self.snr_db, self.erasure = kind, snr_db, erasure

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        if not self.training or self.kind == "none":
            return code
        if self.kind == "awgn":
            return awgn(code, self.snr_db)
        return erase(code, self.erasure)


class BottleNetLevel(SplitLevel):
    """One rate: encoder, quantization range and bits, decoder, and the rate's own copy of the tail."""

    def __init__(self, backbone: SplitNet, split: str, channels: int, code_channels: int, stride: int, bits: int,
                 channel: NoisyChannel | None = None):
        super().__init__()
        self.split = split
        self.bits = bits
        self.encoder = BottleneckEncoder(channels, code_channels, stride)
        self.channel = channel or NoisyChannel("none", 0.0, 0.0)
        self.decoder = BottleneckDecoder(code_channels, channels, stride)
        # The sigmoid's range until the training codes give a tighter one per channel.
        self.register_buffer("lo", torch.zeros(code_channels))
        self.register_buffer("hi", torch.ones(code_channels))
        # Only the tail of this copy is trained; the head stays the shipped backbone's.
        self.net = copy.deepcopy(backbone)

    def symbols(self, features: torch.Tensor) -> torch.Tensor:
        """Device side: split features (N, C, H, W) -> uint8 symbols (N, c, H/s, W/s)."""
        return quantize(self.encoder(features), self.lo, self.hi, self.bits)

    def logits_from_symbols(self, symbols: torch.Tensor) -> torch.Tensor:
        """Server side: symbols -> logits."""
        return self.tail(self.decoder(dequantize(symbols, self.lo, self.hi, self.bits)))

    def reconstruct(self, features: torch.Tensor, quantized: bool) -> torch.Tensor:
        """Training path: encoder, then the noisy channel (stage 1) or straight-through quantization (stage 2)."""
        code = self.encoder(features)
        code = quantize_ste(code, self.lo, self.hi, self.bits) if quantized else self.channel(code)
        return self.decoder(code)

