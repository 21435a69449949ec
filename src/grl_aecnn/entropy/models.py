"""Per-channel categorical probability models over the 2^b quantization symbols.

A model is an integer table: for each channel (and, in a context model, for each context), one
frequency per symbol, every frequency >= 1 and each row summing to exactly 2^PRECISION_BITS.

Two kinds share the class. An i.i.d. model has a (C, 2^b) table: every symbol of a channel is
coded under the same distribution. A context model has a (C, CONTEXTS, 2^b) table: a symbol is
coded under the row picked by its two causal neighbours in raster order, the one above and the one
to the left (each "outside the tensor" or its symbol clipped to 0..3). Post-ReLU split features
come in spatial blobs, so the neighbours predict well: on the AECNN levels the context model codes
the same symbols in about 30% fewer bits (docs/aecnn.md). Integers (not floats) are what is stored and what
the coder is built from, so the coded bytes depend only on this table and never on how a machine
rounds a float. Every frequency is at least 1, so any symbol stays encodable, even one never seen
in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from grl_aecnn.entropy.quantize import check_bits

# constriction's categorical models work at 24-bit precision; tables at the same precision lose
# nothing when the coder takes them over.
PRECISION_BITS = 24
MODEL_FORMAT = "grl_aecnn.entropy.categorical/1"
FREQUENCIES_KEY = "frequencies"
# Bounds sample counts so count * 2^PRECISION_BITS stays inside int64 when scaling.
MAX_SAMPLES_PER_CHANNEL = 2**62 // 2**PRECISION_BITS
# A neighbour is in one of NEIGHBOUR_STATES states: outside the tensor, or its symbol clipped to
# 0..NEIGHBOUR_STATES-2 (small symbols carry the spatial structure; the rare large ones share a state).
NEIGHBOUR_STATES = 5
CONTEXTS = NEIGHBOUR_STATES**2  # (above, left)


def symbol_contexts(symbols: np.ndarray) -> np.ndarray:
    """The context index of every symbol of a (..., H, W) integer array: state(above) *
    NEIGHBOUR_STATES + state(left), state 0 meaning outside the tensor. Only causal neighbours in
    raster order are used, so a decoder knows each context before it decodes the symbol."""
    state = 1 + np.minimum(np.asarray(symbols, dtype=np.int64), NEIGHBOUR_STATES - 2)
    above = np.zeros_like(state)
    above[..., 1:, :] = state[..., :-1, :]
    left = np.zeros_like(state)
    left[..., :, 1:] = state[..., :, :-1]
    return above * NEIGHBOUR_STATES + left


def channel_histograms(symbols: np.ndarray | torch.Tensor, bits: int, context: bool = False) -> np.ndarray:
    """Symbol counts per channel from symbols of shape (N, C, H, W): shape (C, 2^bits) int64, or
    (C, CONTEXTS, 2^bits) per context with `context`.

    Histograms of several batches add up, so large training sets can be counted in pieces."""
    check_bits(bits)
    symbols = np.asarray(symbols)
    if symbols.ndim != 4:
        raise ValueError(f"expected symbols of shape (N, C, H, W), got {symbols.shape}")
    if not np.issubdtype(symbols.dtype, np.integer):
        raise ValueError(f"symbols must be integers, got {symbols.dtype}")
    num_symbols = 2**bits
    if symbols.size and (symbols.min() < 0 or symbols.max() >= num_symbols):
        raise ValueError(f"symbols must lie in 0..{num_symbols - 1} for {bits} bits")
    channels = symbols.shape[1]
    contexts = CONTEXTS if context else 1
    # One bincount over (channel, context, symbol) triples instead of Python loops.
    index = np.arange(channels, dtype=np.int64).reshape(1, channels, 1, 1) * contexts
    if context:
        index = index + symbol_contexts(symbols)
    flat = (index * num_symbols + symbols.astype(np.int64)).ravel()
    counts = np.bincount(flat, minlength=channels * contexts * num_symbols)
    return counts.reshape(channels, contexts, num_symbols) if context else counts.reshape(channels, num_symbols)


def _scale_to_precision(counts: np.ndarray) -> np.ndarray:
    """Integer frequencies >= 1 summing to 2^PRECISION_BITS per row, proportional to counts.

    Pure integer arithmetic (floor shares, then largest remainders, ties to the lower symbol),
    so every machine derives the same table from the same counts."""
    if counts.ndim == 3:
        return _scale_to_precision(counts.reshape(-1, counts.shape[-1])).reshape(counts.shape)
    total = 2**PRECISION_BITS
    num_symbols = counts.shape[1]
    free = total - num_symbols  # what is left after the guaranteed 1 per symbol
    row_sums = counts.sum(axis=1, keepdims=True)
    shares, remainders = np.divmod(counts * free, row_sums)
    frequencies = 1 + shares
    shortfall = total - frequencies.sum(axis=1)
    order = np.argsort(-remainders, axis=1, kind="stable")
    for row, missing in enumerate(shortfall):
        frequencies[row, order[row, :missing]] += 1
    return frequencies.astype(np.int32)


@dataclass(frozen=True, eq=False)
class EntropyModel:
    """Frequencies of shape (channels, 2^bits) (i.i.d.) or (channels, CONTEXTS, 2^bits) (context
    model), int32, each >= 1, rows summing to 2^PRECISION_BITS.

    Compared and hashed by identity (eq=False): the coder caches its per-channel coding models per
    instance. Compare tables with np.array_equal."""

    bits: int
    frequencies: np.ndarray

    def __post_init__(self) -> None:
        check_bits(self.bits)
        table = np.asarray(self.frequencies)
        if not np.issubdtype(table.dtype, np.integer):
            raise ValueError(f"frequencies must be integers, got {table.dtype}")
        shape_ok = table.ndim in (2, 3) and table.shape[0] >= 1 and table.shape[-1] == 2**self.bits
        if not shape_ok or (table.ndim == 3 and table.shape[1] != CONTEXTS):
            raise ValueError(f"frequencies must have shape (channels >= 1, {2**self.bits}) or "
                             f"(channels >= 1, {CONTEXTS}, {2**self.bits}), got {table.shape}")
        if table.min() < 1:
            raise ValueError("every frequency must be >= 1, so that every symbol stays encodable")
        sums = table.astype(np.int64).sum(axis=-1).reshape(table.shape[0], -1)
        if np.any(sums != 2**PRECISION_BITS):
            bad = int(np.flatnonzero((sums != 2**PRECISION_BITS).any(axis=1))[0])
            raise ValueError(f"channel {bad} frequencies sum to {sums[bad].tolist()}, not 2^{PRECISION_BITS}")
        table = table.astype(np.int32)  # always a private copy, then frozen
        table.setflags(write=False)
        object.__setattr__(self, "frequencies", table)

    @property
    def num_channels(self) -> int:
        return self.frequencies.shape[0]

    @property
    def num_symbols(self) -> int:
        return self.frequencies.shape[-1]

    @property
    def contexts(self) -> int:
        """1 for an i.i.d. model, CONTEXTS for a context model."""
        return self.frequencies.shape[1] if self.frequencies.ndim == 3 else 1

    def rows(self) -> np.ndarray:
        """The table as (channels, contexts, 2^bits) for either kind."""
        return self.frequencies.reshape(self.num_channels, self.contexts, self.num_symbols)

    @classmethod
    def from_counts(cls, counts: np.ndarray, bits: int) -> EntropyModel:
        """Model from symbol counts (C, 2^bits) or (C, CONTEXTS, 2^bits), with add-one smoothing."""
        check_bits(bits)
        counts = np.asarray(counts)
        if counts.ndim not in (2, 3) or counts.shape[-1] != 2**bits or not np.issubdtype(counts.dtype, np.integer):
            raise ValueError(
                f"counts must be integers of shape (channels, [contexts,] {2**bits}), got {counts.dtype} {counts.shape}"
            )
        if counts.size and counts.min() < 0:
            raise ValueError("counts must be >= 0")
        smoothed = counts.astype(np.int64) + 1
        if smoothed.sum(axis=-1).max(initial=0) > MAX_SAMPLES_PER_CHANNEL:
            raise ValueError(f"more than {MAX_SAMPLES_PER_CHANNEL} samples in one channel")
        return cls(bits, _scale_to_precision(smoothed))

    @classmethod
    def fit(cls, symbols: np.ndarray | torch.Tensor, bits: int, context: bool = False) -> EntropyModel:
        """Model (a context model with `context`) from training symbols of shape (N, C, H, W)."""
        return cls.from_counts(channel_histograms(symbols, bits, context), bits)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors for safetensors; pair them with metadata()."""
        return {FREQUENCIES_KEY: torch.from_numpy(self.frequencies.copy())}

    def metadata(self) -> dict[str, Any]:
        """Small JSON-serializable description, checked against the tensors on load."""
        return {
            "format": MODEL_FORMAT,
            "bits": self.bits,
            "precision_bits": PRECISION_BITS,
            "channels": self.num_channels,
            "contexts": self.contexts,
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> EntropyModel:
        """Inverse of to_tensors/metadata; ValueError naming the problem if they do not describe
        a valid model."""
        if metadata.get("format") != MODEL_FORMAT:
            raise ValueError(f"entropy model format is {metadata.get('format')!r}, expected {MODEL_FORMAT!r}")
        if metadata.get("precision_bits") != PRECISION_BITS:
            raise ValueError(
                f"entropy model precision is {metadata.get('precision_bits')!r} bits, expected {PRECISION_BITS}"
            )
        if FREQUENCIES_KEY not in tensors:
            raise ValueError(f"entropy model tensors lack {FREQUENCIES_KEY!r} (have {sorted(tensors)})")
        frequencies = tensors[FREQUENCIES_KEY]
        if frequencies.dtype != torch.int32:
            raise ValueError(f"entropy model frequencies must be int32, got {frequencies.dtype}")
        bits = metadata.get("bits")
        if not isinstance(bits, int):
            raise ValueError(f"entropy model metadata 'bits' must be an integer, got {bits!r}")
        model = cls(bits, frequencies.numpy())
        if metadata.get("channels") != model.num_channels:
            raise ValueError(
                f"entropy model metadata says {metadata.get('channels')!r} channels, the table has {model.num_channels}"
            )
        # Models written before context models existed carry no "contexts": they are i.i.d.
        if metadata.get("contexts", 1) != model.contexts:
            raise ValueError(
                f"entropy model metadata says {metadata.get('contexts')!r} contexts, the table has {model.contexts}"
            )
        return model
