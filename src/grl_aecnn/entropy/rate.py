"""A differentiable estimate of the code length of quantized features, for a rate term in training.

The coded size of a symbol s under a context model is -log2 p(s | context). Rounding has no useful
gradient, so the estimate relaxes it: a feature at level u (quantization_levels, between symbols j
and j+1) costs (1 - t) * cost(j) + t * cost(j + 1) with t = u - j, which equals the true cost at
every symbol and pulls u towards the cheaper neighbour symbol. Contexts come from the rounded
neighbours (no gradient through them). The probabilities are running symbol counts of the training
batches (exponential decay, add-one smoothing), so the estimate follows the features as they change
and is, at the end, close to the code length of the entropy model fitted afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from grl_aecnn.entropy.models import channel_histograms, check_neighbours, context_count, symbol_contexts


class RateProxy(nn.Module):
    """Estimated bits per symbol of (N, C, H, W) quantization levels; running counts are buffers,
    so they are checkpointed with the module that holds this one."""

    def __init__(self, channels: int, bits: int, neighbours: Sequence[str], decay: float = 0.99):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        self.bits = bits
        self.neighbours = check_neighbours(neighbours)
        self.decay = decay
        self.register_buffer("counts", torch.zeros(channels, context_count(self.neighbours), 2**bits,
                                                   dtype=torch.float64))

    def costs(self) -> torch.Tensor:
        """-log2 p(symbol | channel, context) under the smoothed running counts: (C, contexts, 2^bits)."""
        smoothed = self.counts + 1.0
        return smoothed.sum(-1, keepdim=True).log2() - smoothed.log2()

    def estimate(self) -> float:
        """Mean code length of the counted symbols under their own smoothed counts, bits per symbol."""
        return float((self.counts * self.costs()).sum() / self.counts.sum().clamp(min=1.0))

    def forward(self, levels: torch.Tensor) -> torch.Tensor:
        symbols = levels.detach().round().to(torch.int64).numpy()
        if self.training:  # the counts follow the training batches only
            batch = channel_histograms(symbols, self.bits, self.neighbours).reshape(self.counts.shape)
            self.counts.mul_(self.decay).add_(torch.from_numpy(batch))
        cost = self.costs().float()
        channels = torch.arange(levels.shape[1]).reshape(1, -1, 1, 1)
        contexts = torch.from_numpy(symbol_contexts(symbols, self.neighbours)) if self.neighbours else 0
        rows = cost[channels, contexts].expand(*levels.shape, -1)  # (N, C, H, W, S)
        lower = levels.detach().floor().clamp(max=2**self.bits - 2).to(torch.int64)
        t = levels - lower
        cost_lower = rows.gather(-1, lower.unsqueeze(-1)).squeeze(-1)
        cost_upper = rows.gather(-1, (lower + 1).unsqueeze(-1)).squeeze(-1)
        return ((1 - t) * cost_lower + t * cost_upper).mean()
