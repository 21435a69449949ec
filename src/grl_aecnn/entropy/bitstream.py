"""A framed, versioned container for one coded tensor, kept small: at the highest compression
levels a whole coded image is 30-130 bytes, so every header byte counts.

Layout, format version 1 (fixed-width integers are u8 or little-endian u32; "varint" is unsigned
LEB128, described below):

    offset  size      field
    0       2         magic b"GA"
    2       1         format version (u8) = 1
    3       1         codec number (u8), a value of CODEC_NUMBERS
    4       1         level (u8)
    5       1         ndim d (u8), 1..MAX_NDIM
    6       1..3 each d dims, one varint each (1..MAX_DIM; product <= MAX_ELEMENTS)
    h       1..5      payload length p (varint, <= 2**32 - 1)
    h+v     p         payload
    h+v+p   4         CRC-32 (zlib.crc32, u32 little-endian) of every byte before it

A varint holds 7 bits per byte, least significant group first; every byte but the last has its
high bit (0x80) set. 0..127 take one byte, 128..16383 two, up to 2**21 - 1 three (so a dim of at
most MAX_DIM takes 1..3 bytes), up to 2**32 - 1 five. The writer emits the shortest encoding; the
reader rejects a varint of more than 5 bytes, one whose value exceeds 2**32 - 1, and a non-minimal
one (a last byte of 0x00 after the first), so each frame has exactly one encoding.

Example: pack_frame("aecnn", 3, (4, 16, 16), payload) with a 60-byte payload is

    47 41  01  01  03  03  04 10 10  3c  <60 payload bytes>  <CRC-32, 4 bytes>
    "GA"   v1  aecnn lvl ndim dims   p=60

that is 10 header bytes and 4 CRC bytes: 14 bytes of overhead. With every dim and the payload
length below 128 the overhead is 11 + ndim bytes.

The codec number comes from CODEC_NUMBERS; Frame.codec_id is the registered name. A number is
never reused for another codec once frames carrying it exist.

unpack_frame checks the fields in the order they are read, so a reason names the first thing that
is wrong; the header may not run into the last 4 bytes (the CRC), and the element bound stops a
corrupted header from asking the decoder for a huge tensor. The CRC is checked before the codec
is compared with the expected one, so a corrupted codec number that lands on another registered
codec reads as corruption, not as another codec.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

from grl_aecnn.errors import BitstreamError

MAGIC = b"GA"
FORMAT_VERSION = 1
MAX_NDIM = 8
MAX_DIM = 0xFFFF
MAX_ELEMENTS = 2**24
MAX_PAYLOAD_BYTES = 2**32 - 1

# Codec id -> the u8 stored in a frame. Append only: a number, once used, keeps its codec.
CODEC_NUMBERS = MappingProxyType({"aecnn": 1, "bottlenetpp": 2, "deepjscc": 3, "raw": 4, "png": 5, "jpeg": 6})
_CODEC_NAMES = {number: name for name, number in CODEC_NUMBERS.items()}

_FIXED = struct.Struct("<2sBBBB")  # magic, version, codec number, level, ndim
_CRC = struct.Struct("<I")
_MAX_VARINT_BYTES = 5
_MAX_VARINT = 2**32 - 1
MIN_FRAME_BYTES = _FIXED.size + 1 + 1 + _CRC.size  # one 1-byte dim, a 1-byte payload length, no payload


@dataclass(frozen=True)
class Frame:
    codec_id: str
    level: int
    shape: tuple[int, ...]
    payload: bytes


def _encode_varint(value: int) -> bytes:
    """The shortest unsigned LEB128 encoding of 0 <= value <= 2**32 - 1."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _decode_varint(data: bytes, offset: int, end: int) -> tuple[int, int]:
    """The varint at data[offset:] that must end before data[end], and the offset after it."""
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        if offset + i >= end:
            raise BitstreamError(
                f"truncated: {len(data)} bytes end inside the header (a varint at offset {offset} "
                "runs into the CRC)"
            )
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            if byte == 0 and i > 0:
                raise BitstreamError(f"non-minimal varint at offset {offset}")
            if value > _MAX_VARINT:
                raise BitstreamError(f"varint at offset {offset} is {value}, more than 2**32 - 1")
            return value, offset + i + 1
    raise BitstreamError(f"overlong varint at offset {offset}: more than {_MAX_VARINT_BYTES} bytes")


def _check_shape(shape: tuple[int, ...]) -> str | None:
    """Why the shape is unacceptable, or None."""
    if not 1 <= len(shape) <= MAX_NDIM:
        return f"ndim {len(shape)} outside 1..{MAX_NDIM}"
    if any(not 1 <= d <= MAX_DIM for d in shape):
        return f"dims {shape} must lie in 1..{MAX_DIM}"
    if math.prod(shape) > MAX_ELEMENTS:
        return f"shape {shape} has {math.prod(shape)} elements, more than the {MAX_ELEMENTS} allowed"
    return None


def _codec_number(codec_id: str, role: str) -> int:
    try:
        return CODEC_NUMBERS[codec_id]
    except (KeyError, TypeError):
        registered = ", ".join(sorted(CODEC_NUMBERS))
        raise ValueError(f"{role} {codec_id!r} is not registered; the registered ones are {registered}") from None


def pack_frame(codec_id: str, level: int, shape: Sequence[int], payload: bytes) -> bytes:
    """A complete frame; ValueError if the codec is not in CODEC_NUMBERS or a field cannot be represented."""
    number = _codec_number(codec_id, "codec id")
    if not 0 <= level <= 0xFF:
        raise ValueError(f"level {level} outside 0..255")
    shape = tuple(int(d) for d in shape)
    if problem := _check_shape(shape):
        raise ValueError(problem)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes is more than the {MAX_PAYLOAD_BYTES} a frame holds")
    body = b"".join(
        (
            _FIXED.pack(MAGIC, FORMAT_VERSION, number, level, len(shape)),
            *(_encode_varint(d) for d in shape),
            _encode_varint(len(payload)),
            payload,
        )
    )
    return body + _CRC.pack(zlib.crc32(body))


def unpack_frame(data: bytes, expected_codec: str | None = None, expected_level: int | None = None,
                 expected_shape: tuple[int, ...] | None = None) -> Frame:
    """Parse and verify a frame; BitstreamError naming the problem if it is malformed, or if it is of
    another codec, level or shape than the expected ones given (a decoder checks these before it
    spends any work on the payload). ValueError if expected_codec is not in CODEC_NUMBERS (no frame
    could match it)."""
    if expected_codec is not None:
        _codec_number(expected_codec, "expected codec")
    data = bytes(data)
    if len(data) < MIN_FRAME_BYTES:
        raise BitstreamError(f"too short: {len(data)} bytes, a frame has at least {MIN_FRAME_BYTES}")
    magic, version, number, level, ndim = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise BitstreamError(f"bad magic {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise BitstreamError(f"unsupported format version {version}, this reader knows {FORMAT_VERSION}")
    if number not in _CODEC_NAMES:
        raise BitstreamError(f"unknown codec number {number}")
    if not 1 <= ndim <= MAX_NDIM:
        raise BitstreamError(f"absurd shape: ndim {ndim} outside 1..{MAX_NDIM}")
    # The header must end before the CRC; the payload is checked against the declared length below.
    header_end = len(data) - _CRC.size
    offset = _FIXED.size
    dims = []
    for _ in range(ndim):
        dim, offset = _decode_varint(data, offset, header_end)
        dims.append(dim)
    shape = tuple(dims)
    if problem := _check_shape(shape):
        raise BitstreamError(f"absurd shape: {problem}")
    payload_length, offset = _decode_varint(data, offset, header_end)
    frame_length = offset + payload_length + _CRC.size
    if len(data) < frame_length:
        raise BitstreamError(
            f"truncated: the header declares a {payload_length}-byte payload, "
            f"the data ends {frame_length - len(data)} bytes short of the frame"
        )
    if len(data) > frame_length:
        raise BitstreamError(
            f"trailing bytes: {len(data) - frame_length} after the {frame_length}-byte frame its header declares"
        )
    (stored_crc,) = _CRC.unpack_from(data, frame_length - _CRC.size)
    computed_crc = zlib.crc32(memoryview(data)[: frame_length - _CRC.size])
    if stored_crc != computed_crc:
        raise BitstreamError(f"CRC mismatch: stored {stored_crc:08x}, computed {computed_crc:08x}")
    codec_id = _CODEC_NAMES[number]
    if expected_codec is not None and codec_id != expected_codec:
        raise BitstreamError(f"foreign codec id {codec_id!r}, expected {expected_codec!r}")
    if (expected_level is not None and level != expected_level) or (
            expected_shape is not None and shape != tuple(expected_shape)):
        raise BitstreamError(f"frame is {codec_id} level {level} shape {shape}; this decoder expects "
                             f"level {expected_level} shape {expected_shape}")
    return Frame(codec_id, level, shape, data[offset : offset + payload_length])
