"""Noisy channel layers of the learned baselines (BottleNet++ trains through one, DeepJSCC is
defined by one). Every function takes a batch (N, ...), real or complex, and an SNR in dB: one
number, or one per sample (N,) when training over an SNR range. Noise is drawn from `generator`,
so an evaluation at a given seed sees the same noise on every machine.

SNR is mean signal power over noise power. For real values the noise power is per value; for
complex symbols it is per symbol, split equally over I and Q (circularly symmetric).
"""

from __future__ import annotations

import torch

CHANNELS = ("awgn", "rayleigh")


def _per_sample(value: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """value as a float tensor broadcastable against x: a scalar, or one entry per sample."""
    value = torch.as_tensor(value, dtype=torch.float32)
    return value.reshape(-1, *([1] * (x.ndim - 1))) if value.ndim else value


def _noise(x: torch.Tensor, power: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    # torch's complex randn has E|n|^2 = 1 with I and Q independent, so one line serves both kinds.
    return torch.randn(x.shape, generator=generator, dtype=x.dtype) * power.sqrt()


def awgn(x: torch.Tensor, snr_db: torch.Tensor | float, generator: torch.Generator | None = None,
         signal_power: torch.Tensor | float | None = None) -> torch.Tensor:
    """x plus white Gaussian noise; signal_power defaults to each sample's mean power."""
    if signal_power is None:
        signal_power = x.abs().square().flatten(1).mean(1)
    power = _per_sample(signal_power, x) / 10 ** (_per_sample(snr_db, x) / 10)
    return x + _noise(x, power, generator)


def rayleigh(x: torch.Tensor, snr_db: torch.Tensor | float, generator: torch.Generator | None = None,
             signal_power: torch.Tensor | float | None = None) -> torch.Tensor:
    """Slow (block) Rayleigh fading: one CN(0, 1) gain per sample for all its symbols, then AWGN. The
    receiver gets no channel state (as in Bourtsoulatze et al.), so the decoder must cope with it."""
    if not x.is_complex():
        raise ValueError("Rayleigh fading acts on complex symbols")
    gain = torch.randn((x.shape[0],) + (1,) * (x.ndim - 1), generator=generator, dtype=x.dtype)
    if signal_power is None:
        signal_power = x.abs().square().flatten(1).mean(1)
    # The SNR is the average one, over the fading: E|h|^2 = 1.
    return awgn(gain * x, snr_db, generator, signal_power)


def erase(x: torch.Tensor, probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary erasure: each value is lost (the receiver sees zero) with the given probability."""
    return x * (torch.rand(x.shape, generator=generator) >= probability).to(x.dtype)


def transmit(symbols: torch.Tensor, snr_db: torch.Tensor | float, channel: str,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Complex symbols (N, k) or (k,) through `channel` ("awgn" or "rayleigh") at the given SNR,
    relative to unit mean symbol power (the power constraint of the transmitter)."""
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}, got {channel!r}")
    batch = symbols if symbols.ndim == 2 else symbols[None]
    received = (awgn if channel == "awgn" else rayleigh)(batch, snr_db, generator, signal_power=1.0)
    return received if symbols.ndim == 2 else received[0]
