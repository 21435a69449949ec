from __future__ import annotations

import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grl_aecnn.entropy import (
    FORMAT_VERSION,
    EntropyModel,
    Frame,
    decode_tensor_frame,
    encode_tensor_frame,
    pack_frame,
    unpack_frame,
)
from grl_aecnn.errors import BitstreamError

CODEC = "aecnn"


def sealed(body: bytes) -> bytes:
    """Append a correct CRC, so a test reaches the check it means to hit."""
    return body + struct.pack("<I", zlib.crc32(body))


def raw_frame(
    *,
    magic: bytes = b"GRLA",
    version: int = FORMAT_VERSION,
    codec: bytes = CODEC.encode(),
    level: int = 1,
    dims: tuple[int, ...] = (2, 3, 4),
    payload: bytes = b"abcd",
) -> bytes:
    """A frame built field by field, bypassing pack_frame's checks."""
    return sealed(
        magic
        + bytes([version, len(codec)])
        + codec
        + bytes([level, len(dims)])
        + struct.pack(f"<{len(dims)}H", *dims)
        + struct.pack("<I", len(payload))
        + payload
    )


@settings(max_examples=100, deadline=None)
@given(
    codec=st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", min_size=1, max_size=32),
    level=st.integers(0, 255),
    shape=st.lists(st.integers(1, 64), min_size=1, max_size=4).map(tuple),
    payload=st.binary(max_size=200),
)
def test_pack_then_unpack_round_trips(codec, level, shape, payload):
    data = pack_frame(codec, level, shape, payload)
    assert unpack_frame(data) == Frame(codec, level, shape, payload)
    assert unpack_frame(data, expected_codec=codec).payload == payload


def test_raw_frame_helper_matches_pack_frame():
    assert raw_frame() == pack_frame(CODEC, 1, (2, 3, 4), b"abcd")


def test_frame_layout_is_as_documented():
    data = pack_frame("ab", 9, (3, 258), b"\x10\x20")
    header = b"GRLA" + b"\x01" + b"\x02ab" + b"\x09" + b"\x02" + b"\x03\x00\x02\x01" + b"\x02\x00\x00\x00"
    assert data[:-4] == header + b"\x10\x20"
    assert data[-4:] == struct.pack("<I", zlib.crc32(data[:-4]))


def flip_payload_bit(data: bytes) -> bytes:
    corrupted = bytearray(data)
    corrupted[-6] ^= 0x04
    return bytes(corrupted)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too short"),
        (raw_frame()[:10], "too short"),
        (raw_frame()[:-1], "truncated"),
        (raw_frame(payload=b"x" * 40)[:30], "truncated"),
        (raw_frame(codec=b"x" * 20)[:24], "truncated"),  # ends inside the header
        (raw_frame() + b"\x00", "trailing bytes"),
        (raw_frame(magic=b"GRLB"), "bad magic"),
        (raw_frame(version=2), "unsupported format version 2"),
        (flip_payload_bit(raw_frame()), "CRC mismatch"),
        (raw_frame()[:-4] + b"\x00\x00\x00\x00", "CRC mismatch"),
        (raw_frame(codec=b""), "codec id length 0"),
        (raw_frame(codec=b"x" * 33), "codec id length 33"),
        (raw_frame(codec=b"a\xffb"), "codec id"),
        (raw_frame(codec=b"a b"), "codec id"),
        (raw_frame(dims=()), "absurd shape: ndim 0"),
        (raw_frame(dims=(1,) * 9), "absurd shape: ndim 9"),
        (raw_frame(dims=(4, 0, 4)), "absurd shape"),
        (raw_frame(dims=(0xFFFF, 0xFFFF)), "absurd shape.*more than"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_malformation_raises_bitstream_error_naming_it(data, reason):
    with pytest.raises(BitstreamError, match=reason):
        unpack_frame(data)


def test_a_frame_of_another_codec_is_foreign():
    with pytest.raises(BitstreamError, match="foreign codec id 'other'"):
        unpack_frame(raw_frame(codec=b"other"), expected_codec=CODEC)


@pytest.mark.parametrize(
    ("codec", "level", "shape", "payload"),
    [
        ("", 0, (1,), b""),
        ("x" * 33, 0, (1,), b""),
        ("a b", 0, (1,), b""),
        ("é", 0, (1,), b""),
        ("ok", 256, (1,), b""),
        ("ok", -1, (1,), b""),
        ("ok", 0, (), b""),
        ("ok", 0, (1, 0), b""),
        ("ok", 0, (70000,), b""),
        ("ok", 0, (4096, 4097), b""),
    ],
)
def test_packing_unrepresentable_fields_raises_value_error(codec, level, shape, payload):
    with pytest.raises(ValueError):
        pack_frame(codec, level, shape, payload)


def small_model(rng: np.random.Generator, channels: int, bits: int) -> EntropyModel:
    peaked = np.minimum(np.maximum(rng.laplace(0, 2.0**bits / 8, size=(16, channels, 6, 6)), 0).round(), 2**bits - 1)
    return EntropyModel.fit(peaked.astype(np.uint8), bits)


def test_tensor_frames_round_trip_and_check_the_model():
    rng = np.random.default_rng(0)
    model = small_model(rng, channels=4, bits=3)
    symbols = rng.integers(0, 8, size=(4, 6, 5), dtype=np.uint8)
    data = encode_tensor_frame(symbols, model, CODEC, level=2)
    assert np.array_equal(decode_tensor_frame(data, model, expected_codec=CODEC), symbols)
    assert unpack_frame(data).level == 2
    with pytest.raises(BitstreamError, match="foreign codec"):
        decode_tensor_frame(data, model, expected_codec="other")
    with pytest.raises(BitstreamError, match="does not fit the entropy model"):
        decode_tensor_frame(data, small_model(rng, channels=3, bits=3))
    with pytest.raises(BitstreamError, match="does not fit the entropy model"):
        decode_tensor_frame(pack_frame(CODEC, 2, (4, 30), unpack_frame(data).payload), model)


def mutate(rng: np.random.Generator, data: bytes) -> bytes:
    """One random corruption: bit flips, byte overwrites, a truncation or an insertion."""
    corrupted = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:
        for _ in range(rng.integers(1, 4)):
            corrupted[rng.integers(len(corrupted))] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        start = int(rng.integers(len(corrupted)))
        patch = rng.integers(0, 256, size=rng.integers(1, 5), dtype=np.uint8).tobytes()
        corrupted[start : start + len(patch)] = patch[: len(corrupted) - start]
    elif kind == 2:
        del corrupted[rng.integers(len(corrupted)) :]
    else:
        position = int(rng.integers(len(corrupted) + 1))
        corrupted[position:position] = rng.integers(0, 256, size=rng.integers(1, 9), dtype=np.uint8).tobytes()
    return bytes(corrupted)


def test_fuzzed_frames_raise_bitstream_error_or_decode_to_the_declared_shape():
    """10,000 mutations of valid frames through the whole decode path. A quarter keep a valid
    frame around a mutated payload, so the ANS decoder itself sees garbage, not only the CRC."""
    rng = np.random.default_rng(12345)
    cases = []
    for channels, bits, height, width in [(4, 2, 8, 8), (8, 4, 6, 6), (2, 8, 5, 7), (16, 1, 4, 4)]:
        model = small_model(rng, channels, bits)
        symbols = np.minimum(rng.geometric(0.4, size=(channels, height, width)) - 1, 2**bits - 1)
        cases.append((model, encode_tensor_frame(symbols, model, CODEC, level=bits)))

    outcomes = {"rejected": 0, "decoded": 0}
    slowest = 0.0
    for _ in range(10_000):
        model, frame = cases[rng.integers(len(cases))]
        if rng.random() < 0.25:
            original = unpack_frame(frame)
            corrupted = pack_frame(CODEC, original.level, original.shape, mutate(rng, original.payload))
        else:
            corrupted = mutate(rng, frame)
        # CPU time, not wall time: on a loaded machine a wall-clock bound would fail for waiting,
        # while what must not happen is the decoder itself working for long.
        started = time.process_time()
        try:
            symbols = decode_tensor_frame(corrupted, model, expected_codec=CODEC)
        except BitstreamError:
            outcomes["rejected"] += 1
        else:
            outcomes["decoded"] += 1
            assert symbols.shape == unpack_frame(corrupted).shape
            assert symbols.dtype == np.uint8 and int(symbols.max()) < model.num_symbols
        slowest = max(slowest, time.process_time() - started)
    assert slowest < 1.0, f"slowest case took {slowest:.3f} s of CPU time"
    assert outcomes["rejected"] > 9000, outcomes
