from __future__ import annotations

import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grl_aecnn.entropy import (
    DEFAULT_NEIGHBOURS,
    NEIGHBOURS,
    CODEC_NUMBERS,
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


def leb128(value: int) -> bytes:
    """Unsigned LEB128, written independently of the module's encoder."""
    groups = [value & 0x7F]
    while value := value >> 7:
        groups.append(value & 0x7F)
    return bytes([g | 0x80 for g in groups[:-1]] + [groups[-1]])


def sealed(body: bytes) -> bytes:
    """Append a correct CRC, so a test reaches the check it means to hit."""
    return body + struct.pack("<I", zlib.crc32(body))


def raw_frame(
    *,
    magic: bytes = b"GA",
    version: int = FORMAT_VERSION,
    codec: int = CODEC_NUMBERS[CODEC],
    level: int = 1,
    dims: tuple[int, ...] = (2, 3, 4),
    payload: bytes = b"abcd",
    ndim: int | None = None,
    dims_bytes: bytes | None = None,
    length_bytes: bytes | None = None,
) -> bytes:
    """A frame built field by field, bypassing pack_frame's checks; dims_bytes and length_bytes,
    if given, replace the encoded dims and payload length verbatim."""
    return sealed(
        magic
        + bytes([version, codec, level, len(dims) if ndim is None else ndim])
        + (b"".join(leb128(d) for d in dims) if dims_bytes is None else dims_bytes)
        + (leb128(len(payload)) if length_bytes is None else length_bytes)
        + payload
    )


shapes = st.one_of(
    st.lists(st.integers(1, 255), min_size=1, max_size=3),  # dims of one and two varint bytes
    st.lists(st.integers(1, 8), min_size=1, max_size=8),  # every ndim; 8**8 is exactly MAX_ELEMENTS
).map(tuple)


@settings(max_examples=200, deadline=None)
@given(
    codec=st.sampled_from(sorted(CODEC_NUMBERS)),
    level=st.integers(0, 255),
    shape=shapes,
    payload=st.binary(max_size=300),
)
def test_pack_then_unpack_round_trips(codec, level, shape, payload):
    data = pack_frame(codec, level, shape, payload)
    assert unpack_frame(data) == Frame(codec, level, shape, payload)
    assert unpack_frame(data, expected_codec=codec).payload == payload
    assert data == raw_frame(codec=CODEC_NUMBERS[codec], level=level, dims=shape, payload=payload)


def test_the_codec_registry_is_fixed_and_one_to_one():
    assert dict(CODEC_NUMBERS) == {"aecnn": 1, "bottlenetpp": 2, "deepjscc": 3, "raw": 4, "png": 5, "jpeg": 6}
    with pytest.raises(TypeError):
        CODEC_NUMBERS["new"] = 7  # type: ignore[index]


def test_raw_frame_helper_matches_pack_frame():
    assert raw_frame() == pack_frame(CODEC, 1, (2, 3, 4), b"abcd")


def test_frame_layout_is_as_documented():
    data = pack_frame("deepjscc", 9, (3, 258), b"\x10\x20")
    # magic, version 1, codec 3, level 9, ndim 2, dims 3 and 258 = 0x82 0x02, payload length 2
    header = b"GA" + b"\x01" + b"\x03" + b"\x09" + b"\x02" + b"\x03\x82\x02" + b"\x02"
    assert data[:-4] == header + b"\x10\x20"
    assert data[-4:] == struct.pack("<I", zlib.crc32(data[:-4]))


def test_a_small_tensor_frame_has_14_bytes_of_overhead():
    payload = bytes(range(60))
    data = pack_frame("aecnn", 3, (4, 16, 16), payload)
    assert len(data) - len(payload) == 14
    assert data[:10] == bytes.fromhex("47 41 01 01 03 03 04 10 10 3c")  # the docstring's example
    assert data[10:-4] == payload


@pytest.mark.parametrize(
    ("value", "size"),
    [(1, 1), (127, 1), (128, 2), (16383, 2), (16384, 3), (65535, 3)],
)
def test_varint_fields_take_the_documented_number_of_bytes(value, size):
    dim_frame = pack_frame("raw", 0, (value,), b"")
    assert len(dim_frame) == 6 + size + 1 + 4 and unpack_frame(dim_frame).shape == (value,)
    payload = bytes(value)
    length_frame = pack_frame("raw", 0, (1,), payload)
    assert len(length_frame) == 6 + 1 + size + value + 4 and unpack_frame(length_frame).payload == payload


def flip_payload_bit(data: bytes) -> bytes:
    corrupted = bytearray(data)
    corrupted[-6] ^= 0x04
    return bytes(corrupted)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too short"),
        (raw_frame()[:11], "too short"),
        (raw_frame()[:-1], "truncated"),
        (raw_frame(payload=b"x" * 40)[:30], "truncated.*40-byte payload"),
        # ends inside the dims: the CRC's 4 bytes may not hold header
        (raw_frame(dims=(300,) * 8, payload=b"")[:21], "truncated.*header.*varint at offset 16"),
        # ends inside the two-byte payload length (200 = 0xc8 0x01 at offset 9)
        (raw_frame(payload=b"x" * 200)[:14], "truncated.*header.*varint at offset 9"),
        (raw_frame() + b"\x00", "trailing bytes"),
        (raw_frame(magic=b"GB"), "bad magic"),
        (raw_frame(magic=b"GR"), "bad magic"),
        (raw_frame(version=0), "unsupported format version 0"),
        (raw_frame(version=2), "unsupported format version 2"),
        (flip_payload_bit(raw_frame()), "CRC mismatch"),
        (raw_frame()[:-4] + b"\x00\x00\x00\x00", "CRC mismatch"),
        (raw_frame(codec=0), "unknown codec number 0"),
        (raw_frame(codec=7), "unknown codec number 7"),
        (raw_frame(codec=255), "unknown codec number 255"),
        (raw_frame(dims=()), "absurd shape: ndim 0"),
        (raw_frame(dims=(1,) * 9), "absurd shape: ndim 9"),
        (raw_frame(dims=(4, 0, 4)), "absurd shape"),
        (raw_frame(dims=(65536,)), "absurd shape.*1..65535"),
        (raw_frame(dims=(0xFFFF, 0xFFFF)), "absurd shape.*more than"),
        (raw_frame(ndim=1, dims_bytes=b"\x80" * 5 + b"\x01"), "overlong varint at offset 6"),
        (raw_frame(length_bytes=b"\x84\x80\x80\x80\x80\x00"), "overlong varint at offset 9"),
        (raw_frame(length_bytes=b"\xff\xff\xff\xff\x1f"), "varint at offset 9 is 8589934591, more than 2\\*\\*32"),
        (raw_frame(length_bytes=b"\x84\x00"), "non-minimal varint at offset 9"),
        (raw_frame(ndim=1, dims_bytes=b"\x82\x00"), "non-minimal varint at offset 6"),
        (raw_frame(length_bytes=b"\xff\xff\xff\xff\x0f"), "truncated.*4294967295-byte payload"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_malformation_raises_bitstream_error_naming_it(data, reason):
    with pytest.raises(BitstreamError, match=reason):
        unpack_frame(data)


def test_a_frame_of_another_codec_is_foreign():
    with pytest.raises(BitstreamError, match="foreign codec id 'bottlenetpp', expected 'aecnn'"):
        unpack_frame(raw_frame(codec=CODEC_NUMBERS["bottlenetpp"]), expected_codec=CODEC)
    assert unpack_frame(raw_frame(codec=CODEC_NUMBERS["bottlenetpp"])).codec_id == "bottlenetpp"


def test_a_corrupted_codec_number_reads_as_corruption_not_as_another_codec():
    corrupted = bytearray(raw_frame())
    corrupted[3] = CODEC_NUMBERS["jpeg"]
    with pytest.raises(BitstreamError, match="CRC mismatch"):
        unpack_frame(bytes(corrupted), expected_codec=CODEC)


def test_expecting_an_unregistered_codec_raises_value_error():
    with pytest.raises(ValueError, match="registered ones are aecnn, bottlenetpp"):
        unpack_frame(raw_frame(), expected_codec="other")


@pytest.mark.parametrize(
    ("codec", "level", "shape", "payload"),
    [
        ("", 0, (1,), b""),
        ("other", 0, (1,), b""),
        ("AECNN", 0, (1,), b""),
        ("é", 0, (1,), b""),
        ("aecnn", 256, (1,), b""),
        ("aecnn", -1, (1,), b""),
        ("aecnn", 0, (), b""),
        ("aecnn", 0, (1,) * 9, b""),
        ("aecnn", 0, (1, 0), b""),
        ("aecnn", 0, (70000,), b""),
        ("aecnn", 0, (4096, 4097), b""),
    ],
)
def test_packing_unrepresentable_fields_raises_value_error(codec, level, shape, payload):
    with pytest.raises(ValueError):
        pack_frame(codec, level, shape, payload)


def test_packing_an_unregistered_codec_lists_the_registered_ones():
    with pytest.raises(ValueError, match="'bench' is not registered.*aecnn, bottlenetpp, deepjscc, jpeg, png, raw"):
        pack_frame("bench", 0, (1,), b"")


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
        decode_tensor_frame(data, model, expected_codec="bottlenetpp")
    with pytest.raises(BitstreamError, match="does not fit the entropy model"):
        decode_tensor_frame(data, small_model(rng, channels=3, bits=3))
    with pytest.raises(BitstreamError, match="does not fit the entropy model"):
        decode_tensor_frame(pack_frame(CODEC, 2, (4, 30), unpack_frame(data).payload), model)
    assert np.array_equal(decode_tensor_frame(data, model, CODEC, 2, (4, 6, 5)), symbols)
    # A decoder that knows its level and shape refuses other frames before decoding anything, so a
    # tiny frame declaring a huge shape costs nothing.
    huge = pack_frame(CODEC, 2, (4, 2048, 2048), unpack_frame(data).payload)
    for frame, expected in [(data, (1, (4, 6, 5))), (data, (2, (4, 5, 6))), (huge, (2, (4, 6, 5)))]:
        with pytest.raises(BitstreamError, match="this decoder expects level"):
            decode_tensor_frame(frame, model, CODEC, *expected)


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
    # Context models (a decode loop per symbol): above/left, and every neighbour.
    for channels, bits, height, width, neighbours in [(4, 2, 8, 8, DEFAULT_NEIGHBOURS), (3, 3, 6, 6, DEFAULT_NEIGHBOURS),
                                                      (4, 2, 8, 8, tuple(NEIGHBOURS))]:
        training = np.minimum(rng.geometric(0.4, size=(20, channels, height, width)) - 1, 2**bits - 1)
        model = EntropyModel.fit(training, bits, neighbours=neighbours)
        cases.append((model, encode_tensor_frame(training[0], model, CODEC, level=bits)))

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
