"""Per-channel categorical probability models over the 2^b quantization symbols.

A model is an integer table: for each channel (and, in a context model, for each context), one
frequency per symbol, every frequency >= 1 and each row summing to exactly 2^PRECISION_BITS.

Two kinds share the class. An i.i.d. model has a (C, 2^b) table: every symbol of a channel is
coded under the same distribution. A context model has a (C, contexts, 2^b) table: a symbol is
coded under the row picked by the states of some of its causal neighbours (NEIGHBOURS: above,
left, above-left, above-right, the same position in the previous channel, two rows above), each neighbour
"outside the tensor" or its symbol clipped to 0..3. Post-ReLU split features come in spatial
blobs, so the neighbours predict well: on the AECNN levels the above/left context model codes the
same symbols in about 30% fewer bits, the first five neighbours save another 6%, and two rows above
another 2% where a table of 5^6 rows per channel is affordable (docs/aecnn.md).
Integers (not floats) are what is stored and what
the coder is built from, so the coded bytes depend only on this table and never on how a machine
rounds a float. Every frequency is at least 1, so any symbol stays encodable, even one never seen
in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
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
# The neighbours a context can use, as (channel, row, column) offsets. Each precedes the symbol in
# the coding order (channel by channel, raster order inside a channel), so a decoder knows its state.
NEIGHBOURS = MappingProxyType({"above": (0, -1, 0), "left": (0, 0, -1), "above_left": (0, -1, -1),
                               "above_right": (0, -1, 1), "previous_channel": (-1, 0, 0),
                               "above_above": (0, -2, 0)})
# The context of the first context models (format 1 without a "neighbours" entry).
DEFAULT_NEIGHBOURS = ("above", "left")


def check_neighbours(neighbours: Sequence[str]) -> tuple[str, ...]:
    neighbours = tuple(neighbours)
    unknown = [n for n in neighbours if n not in NEIGHBOURS]
    if unknown or len(set(neighbours)) != len(neighbours):
        raise ValueError(f"neighbours must be distinct names from {list(NEIGHBOURS)}, got {list(neighbours)}")
    return neighbours


def context_count(neighbours: Sequence[str]) -> int:
    """Rows per channel of a model over these neighbours (1: i.i.d.)."""
    return NEIGHBOUR_STATES ** len(neighbours)


def symbol_contexts(symbols: np.ndarray, neighbours: Sequence[str] = DEFAULT_NEIGHBOURS) -> np.ndarray:
    """The context index of every symbol of a (..., C, H, W) integer array: the neighbours' states
    as the digits of a base-NEIGHBOUR_STATES number, the first neighbour most significant; state 0
    means outside the tensor."""
    state = 1 + np.minimum(np.asarray(symbols, dtype=np.int64), NEIGHBOUR_STATES - 2)
    contexts = np.zeros_like(state)
    for name in check_neighbours(neighbours):
        shifted = np.zeros_like(state)
        target, source = [Ellipsis], [Ellipsis]
        for size, offset in zip(state.shape[-3:], NEIGHBOURS[name], strict=True):
            # shifted[i] = state[i + offset] wherever i + offset lies inside the tensor
            target.append(slice(max(0, -offset), size - max(0, offset)))
            source.append(slice(max(0, offset), size - max(0, -offset)))
        shifted[tuple(target)] = state[tuple(source)]
        contexts = contexts * NEIGHBOUR_STATES + shifted
    return contexts


def channel_histograms(symbols: np.ndarray | torch.Tensor, bits: int, neighbours: Sequence[str] = ()) -> np.ndarray:
    """Symbol counts per channel from symbols of shape (N, C, H, W): shape (C, 2^bits) int64, or
    (C, context_count(neighbours), 2^bits) per context of the given neighbours.

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
    contexts = context_count(check_neighbours(neighbours))
    # One bincount over (channel, context, symbol) triples instead of Python loops.
    index = np.arange(channels, dtype=np.int64).reshape(1, channels, 1, 1) * contexts
    if neighbours:
        index = index + symbol_contexts(symbols, neighbours)
    flat = (index * num_symbols + symbols.astype(np.int64)).ravel()
    counts = np.bincount(flat, minlength=channels * contexts * num_symbols)
    return counts.reshape(channels, contexts, num_symbols) if neighbours else counts.reshape(channels, num_symbols)


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
    """Frequencies of shape (channels, 2^bits) (i.i.d., no neighbours) or (channels,
    context_count(neighbours), 2^bits) (context model), int32, each >= 1, rows summing to
    2^PRECISION_BITS. `neighbours` defaults to none for a 2-D table and DEFAULT_NEIGHBOURS for a 3-D one.

    Compared and hashed by identity (eq=False): the coder caches its per-channel coding models per
    instance. Compare tables with np.array_equal."""

    bits: int
    frequencies: np.ndarray
    neighbours: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_bits(self.bits)
        table = np.asarray(self.frequencies)
        if not np.issubdtype(table.dtype, np.integer):
            raise ValueError(f"frequencies must be integers, got {table.dtype}")
        neighbours = self.neighbours
        if neighbours is None:
            neighbours = DEFAULT_NEIGHBOURS if table.ndim == 3 else ()
        neighbours = check_neighbours(neighbours)
        expected = (2**self.bits,) if not neighbours else (context_count(neighbours), 2**self.bits)
        if table.ndim != 1 + len(expected) or table.shape[0] < 1 or table.shape[1:] != expected:
            raise ValueError(f"frequencies for neighbours {list(neighbours)} must have shape "
                             f"(channels >= 1, {', '.join(map(str, expected))}), got {table.shape}")
        if table.min() < 1:
            raise ValueError("every frequency must be >= 1, so that every symbol stays encodable")
        sums = table.astype(np.int64).sum(axis=-1).reshape(table.shape[0], -1)
        if np.any(sums != 2**PRECISION_BITS):
            bad = int(np.flatnonzero((sums != 2**PRECISION_BITS).any(axis=1))[0])
            raise ValueError(f"channel {bad} frequencies sum to {sums[bad].tolist()}, not 2^{PRECISION_BITS}")
        table = table.astype(np.int32)  # always a private copy, then frozen
        table.setflags(write=False)
        object.__setattr__(self, "frequencies", table)
        object.__setattr__(self, "neighbours", neighbours)

    @property
    def num_channels(self) -> int:
        return self.frequencies.shape[0]

    @property
    def num_symbols(self) -> int:
        return self.frequencies.shape[-1]

    @property
    def contexts(self) -> int:
        """Rows per channel: 1 for an i.i.d. model."""
        return context_count(self.neighbours)

    def rows(self) -> np.ndarray:
        """The table as (channels, contexts, 2^bits) for either kind."""
        return self.frequencies.reshape(self.num_channels, self.contexts, self.num_symbols)

    @classmethod
    def from_counts(cls, counts: np.ndarray, bits: int, neighbours: Sequence[str] | None = None) -> EntropyModel:
        """Model from symbol counts (C, 2^bits) or (C, contexts, 2^bits) of channel_histograms with the
        same neighbours (default: as for the constructor), with add-one smoothing."""
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
        return cls(bits, _scale_to_precision(smoothed), None if neighbours is None else tuple(neighbours))

    @classmethod
    def fit(cls, symbols: np.ndarray | torch.Tensor, bits: int, neighbours: Sequence[str] = ()) -> EntropyModel:
        """Model (a context model over `neighbours`, i.i.d. without) from training symbols (N, C, H, W)."""
        return cls.from_counts(channel_histograms(symbols, bits, neighbours), bits, neighbours)

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
            **({"neighbours": list(self.neighbours)} if self.neighbours else {}),
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
        neighbours = metadata.get("neighbours")
        if neighbours is not None and not (isinstance(neighbours, list) and all(isinstance(n, str) for n in neighbours)):
            raise ValueError(f"entropy model metadata 'neighbours' must be a list of names, got {neighbours!r}")
        model = cls(bits, frequencies.numpy(), None if neighbours is None else tuple(neighbours))
        if metadata.get("channels") != model.num_channels:
            raise ValueError(
                f"entropy model metadata says {metadata.get('channels')!r} channels, the table has {model.num_channels}"
            )
        # Models written before context models existed carry no "contexts": they are i.i.d.; context
        # models written before other neighbours existed carry no "neighbours": they use DEFAULT_NEIGHBOURS.
        if metadata.get("contexts", 1) != model.contexts:
            raise ValueError(
                f"entropy model metadata says {metadata.get('contexts')!r} contexts, the table has {model.contexts}"
            )
        return model
