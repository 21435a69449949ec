"""The code-length estimate behind stage 5's rate term (entropy.rate)."""

import numpy as np
import pytest
import torch

from grl_aecnn.entropy import DEFAULT_NEIGHBOURS, EntropyModel, RateProxy, quantization_levels, quantize
from grl_aecnn.entropy.models import channel_histograms


def test_levels_round_to_the_symbols_and_stay_in_range():
    x = torch.tensor([[[[-1.0, 0.0, 0.34]], [[0.5, 0.99, 7.0]]]])
    lo, hi = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 2.0])
    levels = quantization_levels(x, lo, hi, 2)
    assert torch.equal(levels.round().to(torch.uint8), quantize(x, lo, hi, 2))
    assert float(levels.min()) == 0.0 and float(levels.max()) == 3.0


@pytest.mark.parametrize("neighbours", [(), DEFAULT_NEIGHBOURS])
def test_at_symbols_the_estimate_is_the_code_length_under_the_batch_counts(neighbours):
    rng = np.random.default_rng(0)
    symbols = np.minimum(rng.geometric(0.6, size=(16, 3, 6, 6)) - 1, 3)
    proxy = RateProxy(3, 2, neighbours, decay=0.0)  # the counts are this batch's
    estimate = float(proxy(torch.from_numpy(symbols).float()))
    counts = channel_histograms(symbols, 2, neighbours)
    smoothed = counts + 1.0
    p = smoothed / smoothed.sum(-1, keepdims=True)
    assert estimate == pytest.approx(float(-(counts * np.log2(p)).sum() / counts.sum()), rel=1e-5)
    assert proxy.estimate() == pytest.approx(estimate, rel=1e-5)
    # ... which is close to the code length of the fitted entropy model (the same counts, 24-bit integers).
    model = EntropyModel.fit(symbols, 2, neighbours)
    q = model.frequencies / model.frequencies.sum(-1, keepdims=True)
    assert estimate == pytest.approx(float(-(counts * np.log2(q)).sum() / counts.sum()), rel=1e-3)


def test_the_gradient_pulls_towards_the_cheaper_symbol_and_eval_leaves_the_counts():
    proxy = RateProxy(1, 2, ())
    common = torch.zeros(1, 1, 8, 8)
    common[0, 0, 0, :2] = 1.0  # symbol 1 is rare, symbol 0 common
    proxy(common)
    counts = proxy.counts.clone()
    proxy.eval()
    between = torch.full((1, 1, 1, 1), 0.5, requires_grad=True)
    proxy(between).backward()
    assert float(between.grad) > 0  # increasing the level moves towards the rare, dearer symbol
    assert torch.equal(proxy.counts, counts)
    with pytest.raises(ValueError, match="decay"):
        RateProxy(1, 2, (), decay=1.0)
