"""Uniform scalar quantization of feature tensors with a per-channel range.

Channel convention: a tensor is either one CHW feature map or an NCHW batch, so the channel axis
is always the third dimension from the end (dim 0 of CHW, dim 1 of NCHW). `lo` and `hi` are 1-D
tensors with one entry per channel.

With b bits the range [lo, hi] is split into 2^b - 1 equal steps, so both ends are reconstruction
points: for ReLU features fitted with lo = 0 an exact zero stays an exact zero. Values outside the
range are clamped to it.
"""

from __future__ import annotations

import torch

MIN_BITS = 1
MAX_BITS = 8  # symbols fit in uint8


def channel_axis(x: torch.Tensor) -> int:
    if x.ndim not in (3, 4):
        raise ValueError(f"expected a CHW or NCHW tensor, got shape {tuple(x.shape)}")
    return x.ndim - 3


def check_bits(bits: int) -> None:
    if not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r}")


def fit_channel_range(
    features: torch.Tensor, lower_quantile: float = 0.001, upper_quantile: float = 0.999
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel [lo, hi] from training features (NCHW): robust quantiles, so rare outliers are
    clamped instead of stretching every step."""
    if features.ndim != 4:
        raise ValueError(f"expected NCHW training features, got shape {tuple(features.shape)}")
    if not 0.0 <= lower_quantile < upper_quantile <= 1.0:
        raise ValueError(f"need 0 <= lower_quantile < upper_quantile <= 1, got {lower_quantile}, {upper_quantile}")
    per_channel = features.detach().float().transpose(0, 1).reshape(features.shape[1], -1)
    count = per_channel.shape[1]

    # kthvalue is an exact order statistic and, unlike torch.quantile, has no input size limit.
    def order_statistic(q: float) -> torch.Tensor:
        return per_channel.kthvalue(round(q * (count - 1)) + 1, dim=1).values

    lo, hi = order_statistic(lower_quantile), order_statistic(upper_quantile)
    # A constant channel (e.g. a dead ReLU) still needs a positive step; every value maps to lo.
    hi = torch.maximum(hi, lo + 1e-3 * lo.abs().clamp(min=1.0))
    return lo, hi


def _channel_grid(
    x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bits: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """lo, hi and step reshaped to broadcast against x along its channel axis."""
    check_bits(bits)
    axis = channel_axis(x)
    channels = x.shape[axis]
    if lo.shape != (channels,) or hi.shape != (channels,):
        raise ValueError(
            f"lo and hi must have shape ({channels},) for {channels} channels, "
            f"got {tuple(lo.shape)} and {tuple(hi.shape)}"
        )
    if not bool(torch.all(hi > lo)):
        raise ValueError("every channel needs hi > lo")
    shape = [1] * x.ndim
    shape[axis] = channels
    lo = lo.to(device=x.device, dtype=torch.float32).reshape(shape)
    hi = hi.to(device=x.device, dtype=torch.float32).reshape(shape)
    return lo, hi, (hi - lo) / (2**bits - 1)


def _clamp_and_round(
    x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, step: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """x clamped to its channel range, and the index of its nearest level (as float)."""
    clamped = torch.clamp(x.float(), lo, hi)
    return clamped, torch.round((clamped - lo) / step)


def quantize(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bits: int) -> torch.Tensor:
    """Symbols in 0..2^bits-1 (uint8), same shape as x."""
    lo, hi, step = _channel_grid(x, lo, hi, bits)
    return _clamp_and_round(x, lo, hi, step)[1].to(torch.uint8)


def dequantize(symbols: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bits: int) -> torch.Tensor:
    """Reconstruction lo + symbol * step (float32), same shape as symbols."""
    lo, _, step = _channel_grid(symbols, lo, hi, bits)
    if symbols.dtype.is_floating_point or symbols.dtype.is_complex:
        raise ValueError(f"symbols must be an integer tensor, got {symbols.dtype}")
    if symbols.numel() and (int(symbols.min()) < 0 or int(symbols.max()) >= 2**bits):
        raise ValueError(f"symbols must lie in 0..{2**bits - 1} for {bits} bits")
    return lo + symbols.float() * step


def quantize_ste(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bits: int) -> torch.Tensor:
    """Dequantized values for training: the forward pass equals dequantize(quantize(x)), the
    gradient (straight-through estimator) is the identity inside [lo, hi] and zero outside, where
    the clamp holds the value."""
    lo, hi, step = _channel_grid(x, lo, hi, bits)
    clamped, levels = _clamp_and_round(x, lo, hi, step)
    return clamped + (lo + levels * step - clamped).detach()


def quantization_levels(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bits: int) -> torch.Tensor:
    """x on the symbol axis, not rounded: (clamp(x) - lo) / step in [0, 2^bits - 1], differentiable
    inside the range. round() of it is quantize(x)."""
    lo, hi, step = _channel_grid(x, lo, hi, bits)
    return (torch.clamp(x.float(), lo, hi) - lo) / step
