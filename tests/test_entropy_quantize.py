from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grl_aecnn.entropy import dequantize, fit_channel_range, quantize, quantize_ste


def step_of(lo: torch.Tensor, hi: torch.Tensor, bits: int) -> torch.Tensor:
    return (hi - lo) / (2**bits - 1)


def per_channel(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """(C,) reshaped to broadcast along the channel axis of a CHW (ndim 3) or NCHW (ndim 4) tensor."""
    return v.reshape((-1, 1, 1) if ndim == 3 else (1, -1, 1, 1))


@settings(max_examples=150, deadline=None)
@given(
    bits=st.integers(1, 8),
    batched=st.booleans(),
    channels=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_symbols_in_range_and_error_at_most_half_a_step(bits, batched, channels, seed):
    gen = torch.Generator().manual_seed(seed)
    lo = torch.randn(channels, generator=gen) * 3
    hi = lo + torch.rand(channels, generator=gen) * 10 + 1e-2
    shape = (2, channels, 3, 5) if batched else (channels, 3, 5)
    u = torch.rand(shape, generator=gen)
    x = per_channel(lo, len(shape)) + u * per_channel(hi - lo, len(shape))  # inside [lo, hi]

    symbols = quantize(x, lo, hi, bits)
    assert symbols.dtype == torch.uint8 and symbols.shape == x.shape
    assert int(symbols.max()) <= 2**bits - 1
    error = (dequantize(symbols, lo, hi, bits) - x).abs()
    half_step = per_channel(step_of(lo, hi, bits), len(shape)) / 2
    assert torch.all(error <= half_step * (1 + 1e-5) + 1e-6)


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 8), seed=st.integers(0, 2**31 - 1))
def test_values_outside_the_range_clamp_to_its_ends(bits, seed):
    gen = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 5.0])
    far = torch.rand(2, 4, 4, generator=gen) * 100 + 1
    below = quantize(per_channel(lo, 3) - far, lo, hi, bits)
    above = quantize(per_channel(hi, 3) + far, lo, hi, bits)
    assert torch.all(below == 0) and torch.all(above == 2**bits - 1)
    assert torch.equal(dequantize(below, lo, hi, bits), per_channel(lo, 3).expand(2, 4, 4))
    assert torch.allclose(dequantize(above, lo, hi, bits), per_channel(hi, 3).expand(2, 4, 4))


def test_range_ends_are_reconstructed_exactly():
    lo, hi = torch.tensor([0.0, -2.0]), torch.tensor([6.0, 3.0])
    x = torch.stack([torch.tensor([[0.0, 6.0]]), torch.tensor([[-2.0, 3.0]])])  # (2, 1, 2)
    for bits in range(1, 9):
        assert torch.equal(dequantize(quantize(x, lo, hi, bits), lo, hi, bits), x)


def test_channel_axis_is_dim0_of_chw_and_dim1_of_nchw():
    lo = torch.tensor([0.0, 10.0, 100.0])
    hi = torch.tensor([1.0, 20.0, 200.0])
    chw = per_channel(lo, 3) + torch.rand(3, 4, 4) * per_channel(hi - lo, 3)
    batch = torch.stack([chw, chw.flip(-1)])
    assert torch.equal(quantize(batch, lo, hi, 5)[0], quantize(chw, lo, hi, 5))
    # Each channel uses its own range: mid-range values land on the middle symbol in every channel.
    middle = per_channel((lo + hi) / 2, 3).expand(3, 2, 2)
    assert torch.all(quantize(middle, lo, hi, 2) == 2)


def test_ste_forward_is_the_quantized_value_and_gradient_is_identity_inside():
    lo, hi = torch.tensor([0.0, -1.0]), torch.tensor([4.0, 1.0])
    inside = torch.tensor([[[0.3, 1.7, 3.9]], [[-0.95, 0.1, 0.6]]])
    outside = torch.tensor([[[-5.0, 4.5, 9.0]], [[-1.5, 1.01, 7.0]]])
    x = torch.cat([inside, outside], dim=2).requires_grad_()
    y = quantize_ste(x, lo, hi, 3)
    assert torch.equal(y.detach(), dequantize(quantize(x.detach(), lo, hi, 3), lo, hi, 3))
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    assert torch.equal(x.grad[..., :3], weights[..., :3])
    assert torch.all(x.grad[..., 3:] == 0)


def test_ste_works_on_batches_and_keeps_the_graph():
    lo, hi = torch.zeros(4), torch.ones(4)
    x = torch.rand(3, 4, 2, 2, requires_grad=True)
    quantize_ste(x, lo, hi, 2).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_fit_channel_range_is_robust_to_outliers_and_handles_constant_channels():
    features = torch.rand(1000, 2, 4, 4)
    features[0, 0, 0, 0] = 1e6  # one outlier in channel 0
    features[:, 1] = 0.0  # a dead channel
    lo, hi = fit_channel_range(features)
    assert 0.0 <= lo[0] < 0.01 and 0.99 < hi[0] <= 1.0
    assert lo[1] == 0.0 and hi[1] > lo[1]
    assert torch.all(quantize(features, lo, hi, 8)[:, 1] == 0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: quantize(torch.zeros(1, 2, 2), torch.zeros(1), torch.ones(1), 0),
        lambda: quantize(torch.zeros(1, 2, 2), torch.zeros(1), torch.ones(1), 9),
        lambda: quantize(torch.zeros(2, 2, 2), torch.zeros(1), torch.ones(1), 4),
        lambda: quantize(torch.zeros(1, 2, 2), torch.ones(1), torch.ones(1), 4),
        lambda: quantize(torch.zeros(2, 2), torch.zeros(2), torch.ones(2), 4),
        lambda: dequantize(torch.full((1, 2, 2), 16, dtype=torch.uint8), torch.zeros(1), torch.ones(1), 4),
        lambda: dequantize(torch.zeros(1, 2, 2), torch.zeros(1), torch.ones(1), 4),
        lambda: fit_channel_range(torch.zeros(2, 2, 2)),
        lambda: fit_channel_range(torch.zeros(2, 2, 2, 2), 0.9, 0.1),
    ],
    ids=[
        "bits0",
        "bits9",
        "range-shape",
        "hi-not-above-lo",
        "2d",
        "symbol-too-big",
        "float-symbols",
        "fit-3d",
        "fit-quantiles",
    ],
)
def test_invalid_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()
