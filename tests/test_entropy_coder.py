"""Coder tests. Regenerate the golden file (only on purpose, e.g. after a format change) with
`python tests/test_entropy_coder.py`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grl_aecnn.entropy import EntropyModel, decode_symbols, encode_symbols, encode_tensor_frame
from grl_aecnn.entropy.models import DEFAULT_NEIGHBOURS, NEIGHBOURS, context_count
from grl_aecnn.errors import BitstreamError

GOLDEN = Path(__file__).parent / "golden" / "entropy_golden.json"
CONTEXTS = context_count(DEFAULT_NEIGHBOURS)
# The neighbours of the shipped five-neighbour levels (the golden record pins them and the sixth).
FIVE_NEIGHBOURS = ("above", "left", "above_left", "above_right", "previous_channel")
CONTEXT_KINDS = {"fitted": (), "context": DEFAULT_NEIGHBOURS, "every-neighbour": tuple(NEIGHBOURS)}


def laplacian_symbols(rng: np.random.Generator, shape: tuple[int, ...], bits: int, scale: float) -> np.ndarray:
    """ReLU'd Laplacian features quantized to `bits`: mostly zeros and small symbols, like split tensors."""
    return np.minimum(np.maximum(rng.laplace(0.0, scale, size=shape), 0).round(), 2**bits - 1).astype(np.uint8)


@settings(max_examples=120, deadline=None)
@given(
    bits=st.integers(1, 8),
    shape=st.tuples(st.integers(1, 4), st.integers(1, 7), st.integers(1, 7)),
    model_kind=st.sampled_from(["fitted", "context", "every-neighbour", "random", "one-hot"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_decode_inverts_encode(bits, shape, model_kind, seed):
    rng = np.random.default_rng(seed)
    num_symbols = 2**bits
    if model_kind in CONTEXT_KINDS:
        model = EntropyModel.fit(laplacian_symbols(rng, (8, *shape), bits, scale=2.0**bits / 8), bits,
                                 neighbours=CONTEXT_KINDS[model_kind])
    elif model_kind == "random":
        model = EntropyModel.from_counts(rng.integers(0, 1000, size=(shape[0], num_symbols)), bits)
    else:  # all training mass on one symbol: the others sit at the minimum frequency
        counts = np.zeros((shape[0], num_symbols), dtype=np.int64)
        counts[:, rng.integers(num_symbols)] = 10**9
        model = EntropyModel.from_counts(counts, bits)
    # Symbols from anywhere in the alphabet, not only where the model expects them.
    symbols = rng.integers(0, num_symbols, size=shape, dtype=np.uint8)
    decoded = decode_symbols(encode_symbols(symbols, model), shape, model)
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, symbols)


def geometric_symbols(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """4-bit symbols with P(s) ~ 2^-(s+1), from integer draws only, so no float rounding (which
    can differ between machines) reaches the golden data."""
    thresholds = np.cumsum(2 ** np.arange(19, 4, -1))
    return np.searchsorted(thresholds, rng.integers(0, 2**20, size=shape), side="right").astype(np.uint8)


def golden_case() -> tuple[EntropyModel, np.ndarray]:
    rng = np.random.default_rng(20240611)
    model = EntropyModel.fit(geometric_symbols(rng, (64, 8, 8, 8)), bits=4)
    return model, geometric_symbols(rng, (8, 8, 8))


def golden_record() -> dict[str, object]:
    model, symbols = golden_case()
    payload = encode_symbols(symbols, model)
    context_model = EntropyModel.fit(geometric_symbols(np.random.default_rng(20240611), (64, 8, 8, 8)), bits=4,
                                     neighbours=DEFAULT_NEIGHBOURS)
    context_payload = encode_symbols(symbols, context_model)
    wide = {}
    for name, neighbours in (("five_neighbour", FIVE_NEIGHBOURS), ("six_neighbour", (*FIVE_NEIGHBOURS, "above_above"))):
        wide_model = EntropyModel.fit(geometric_symbols(np.random.default_rng(20240611), (64, 8, 8, 8)), bits=4,
                                      neighbours=neighbours)
        wide_payload = encode_symbols(symbols, wide_model)
        wide |= {f"{name}_payload_bytes": len(wide_payload),
                 f"{name}_payload_sha256": hashlib.sha256(wide_payload).hexdigest()}
    return {
        **wide,
        "context_frequencies_sha256": hashlib.sha256(context_model.frequencies.astype("<i4").tobytes()).hexdigest(),
        "context_payload_bytes": len(context_payload),
        "context_payload_sha256": hashlib.sha256(context_payload).hexdigest(),
        "frequencies_sha256": hashlib.sha256(model.frequencies.astype("<i4").tobytes()).hexdigest(),
        "symbols_sha256": hashlib.sha256(symbols.tobytes()).hexdigest(),
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "frame_sha256": hashlib.sha256(encode_tensor_frame(symbols, model, "aecnn", 7)).hexdigest(),
    }


def test_coded_bytes_match_the_golden_record():
    """Model fitting, ANS coding and framing are bit-exact and stable across machines and versions."""
    assert golden_record() == json.loads(GOLDEN.read_text())


def test_peaked_distributions_take_fewer_bytes_than_uniform_ones():
    rng = np.random.default_rng(3)
    bits, shape = 4, (8, 16, 16)
    peaked_model = EntropyModel.fit(laplacian_symbols(rng, (32, *shape), bits, scale=1.0), bits)
    uniform_model = EntropyModel.fit(rng.integers(0, 16, size=(32, *shape)), bits)
    peaked = len(encode_symbols(laplacian_symbols(rng, shape, bits, scale=1.0), peaked_model))
    uniform = len(encode_symbols(rng.integers(0, 16, size=shape), uniform_model))
    raw = np.prod(shape) * bits // 8
    assert peaked < 0.5 * uniform
    assert uniform <= raw * 1.01 + 8  # no real expansion beyond the raw size for incompressible data


def test_coded_size_is_close_to_the_model_cross_entropy():
    rng = np.random.default_rng(4)
    bits, shape = 3, (4, 16, 16)
    model = EntropyModel.fit(laplacian_symbols(rng, (64, *shape), bits, scale=1.5), bits)
    symbols = laplacian_symbols(rng, shape, bits, scale=1.5)
    probabilities = model.frequencies / model.frequencies.sum(axis=1, keepdims=True)
    ideal_bits = -np.log2(np.take_along_axis(probabilities, symbols.reshape(4, -1).astype(np.int64), axis=1)).sum()
    assert len(encode_symbols(symbols, model)) * 8 <= ideal_bits * 1.01 + 64


def blob_symbols(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """2-bit symbols in spatial blobs, like post-ReLU split features: a random walk along rows."""
    walk = np.cumsum(rng.choice([-1, 0, 0, 0, 1], size=shape), axis=-1)
    return np.clip(walk, 0, 3).astype(np.uint8)


def test_a_context_model_codes_spatially_correlated_symbols_in_fewer_bytes():
    rng = np.random.default_rng(6)
    train, test = blob_symbols(rng, (64, 4, 16, 16)), blob_symbols(rng, (4, 16, 16))
    iid = EntropyModel.fit(train, bits=2)
    context = EntropyModel.fit(train, bits=2, neighbours=DEFAULT_NEIGHBOURS)
    assert context.contexts == CONTEXTS and iid.contexts == 1
    assert len(encode_symbols(test, context)) < 0.8 * len(encode_symbols(test, iid))
    assert np.array_equal(decode_symbols(encode_symbols(test, context), test.shape, context), test)


def test_a_context_payload_under_the_iid_model_is_rejected_or_differs():
    rng = np.random.default_rng(7)
    train, test = blob_symbols(rng, (64, 2, 8, 8)), blob_symbols(rng, (2, 8, 8))
    context = EntropyModel.fit(train, bits=2, neighbours=DEFAULT_NEIGHBOURS)
    payload = encode_symbols(test, context)
    try:
        decoded = decode_symbols(payload, test.shape, EntropyModel.fit(train, bits=2))
    except BitstreamError:
        return
    assert not np.array_equal(decoded, test)


@pytest.mark.parametrize(
    ("payload", "shape", "reason"),
    [
        (b"\x01\x02\x03", (2, 2, 2), "32-bit words"),
        (b"\x01\x00\x00\x00\x00\x00\x00\x00", (2, 2, 2), "ANS"),  # ends in a zero word
        (b"\xff" * 64, (2, 2, 2), "does not end"),
        (b"\x01\x00\x00\x00", (3, 2, 2), "does not fit"),
        (b"\x01\x00\x00\x00", (2, 4), "does not fit"),
        (b"\x01\x00\x00\x00", (2, 0, 4), "does not fit"),
    ],
)
def test_undecodable_payloads_raise_bitstream_error(payload, shape, reason):
    model = EntropyModel.from_counts(np.ones((2, 4), dtype=np.int64), bits=2)
    with pytest.raises(BitstreamError, match=reason):
        decode_symbols(payload, shape, model)


def test_a_payload_decoded_with_the_wrong_shape_is_rejected():
    rng = np.random.default_rng(5)
    model = EntropyModel.from_counts(rng.integers(1, 100, size=(2, 16)), bits=4)
    payload = encode_symbols(rng.integers(0, 16, size=(2, 8, 8)), model)
    with pytest.raises(BitstreamError):
        decode_symbols(payload, (2, 4, 8), model)


@pytest.mark.parametrize(
    "symbols",
    [
        np.zeros((3, 2, 2), dtype=np.uint8),
        np.full((2, 2, 2), 4),
        np.zeros((2, 2, 2), dtype=np.float32),
        np.zeros((2, 0, 2), dtype=np.uint8),
        np.zeros((2, 4), dtype=np.uint8),
    ],
    ids=["channels", "symbol-too-big", "float", "empty", "2d"],
)
def test_encoding_invalid_symbols_raises_value_error(symbols):
    model = EntropyModel.from_counts(np.ones((2, 4), dtype=np.int64), bits=2)
    with pytest.raises(ValueError):
        encode_symbols(symbols, model)


if __name__ == "__main__":
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(golden_record(), indent=2) + "\n")
    print(f"wrote {GOLDEN}")
