"""A framed, versioned container for one coded tensor.

Layout (all integers little-endian), format version 1:

    offset  size      field
    0       4         magic b"GRLA"
    4       1         format version (u8) = 1
    5       1         codec id length n (u8), 1..MAX_CODEC_ID_BYTES
    6       n         codec id, ASCII [A-Za-z0-9._-]
    6+n     1         level (u8)
    7+n     1         ndim (u8), 1..MAX_NDIM
    8+n     2*ndim    dims (u16 each, >= 1; product <= MAX_ELEMENTS)
    8+n+2d  4         payload length p (u32)
    12+n+2d p         payload
    ...     4         CRC-32 (zlib.crc32) of every byte before it

unpack_frame checks the fields in the order they are read, so a reason names the first thing that
is wrong; the element bound stops a corrupted header from asking the decoder for a huge tensor.
The CRC is checked before the codec id is compared, so a corrupted name reads as corruption, not
as another codec.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from grl_aecnn.errors import BitstreamError

MAGIC = b"GRLA"
FORMAT_VERSION = 1
MAX_CODEC_ID_BYTES = 32
MAX_NDIM = 8
MAX_DIM = 0xFFFF
MAX_ELEMENTS = 2**24
CODEC_ID_PATTERN = re.compile(rb"[A-Za-z0-9._-]+")

_PREFIX = struct.Struct("<4sBB")  # magic, version, codec id length
_LEVEL_NDIM = struct.Struct("<BB")
_U32 = struct.Struct("<I")
MIN_FRAME_BYTES = _PREFIX.size + 1 + _LEVEL_NDIM.size + 2 + 2 * _U32.size  # 1-byte id, 1 dim, no payload


@dataclass(frozen=True)
class Frame:
    codec_id: str
    level: int
    shape: tuple[int, ...]
    payload: bytes


def _check_shape(shape: tuple[int, ...]) -> str | None:
    """Why the shape is unacceptable, or None."""
    if not 1 <= len(shape) <= MAX_NDIM:
        return f"ndim {len(shape)} outside 1..{MAX_NDIM}"
    if any(not 1 <= d <= MAX_DIM for d in shape):
        return f"dims {shape} must lie in 1..{MAX_DIM}"
    if math.prod(shape) > MAX_ELEMENTS:
        return f"shape {shape} has {math.prod(shape)} elements, more than the {MAX_ELEMENTS} allowed"
    return None


def pack_frame(codec_id: str, level: int, shape: Sequence[int], payload: bytes) -> bytes:
    """A complete frame; ValueError if a field cannot be represented."""
    name = codec_id.encode("ascii", errors="replace")
    if len(name) > MAX_CODEC_ID_BYTES or not CODEC_ID_PATTERN.fullmatch(name):
        raise ValueError(f"codec id {codec_id!r} must be 1..{MAX_CODEC_ID_BYTES} characters of [A-Za-z0-9._-]")
    if not 0 <= level <= 0xFF:
        raise ValueError(f"level {level} outside 0..255")
    shape = tuple(int(d) for d in shape)
    if problem := _check_shape(shape):
        raise ValueError(problem)
    if len(payload) > 0xFFFFFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a u32 length")
    body = b"".join(
        (
            _PREFIX.pack(MAGIC, FORMAT_VERSION, len(name)),
            name,
            _LEVEL_NDIM.pack(level, len(shape)),
            struct.pack(f"<{len(shape)}H", *shape),
            _U32.pack(len(payload)),
            payload,
        )
    )
    return body + _U32.pack(zlib.crc32(body))


def unpack_frame(data: bytes, expected_codec: str | None = None) -> Frame:
    """Parse and verify a frame; BitstreamError naming the problem if it is malformed, or if
    expected_codec is given and the frame is of another codec."""
    data = bytes(data)
    if len(data) < MIN_FRAME_BYTES:
        raise BitstreamError(f"too short: {len(data)} bytes, a frame has at least {MIN_FRAME_BYTES}")
    magic, version, name_length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise BitstreamError(f"bad magic {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise BitstreamError(f"unsupported format version {version}, this reader knows {FORMAT_VERSION}")
    if not 1 <= name_length <= MAX_CODEC_ID_BYTES:
        raise BitstreamError(f"codec id length {name_length} outside 1..{MAX_CODEC_ID_BYTES}")
    offset = _PREFIX.size
    # Everything up to the payload must be present before it is read; the payload is checked below.
    if len(data) < offset + name_length + _LEVEL_NDIM.size:
        raise BitstreamError(f"truncated: {len(data)} bytes end inside the header")
    name = data[offset : offset + name_length]
    if not CODEC_ID_PATTERN.fullmatch(name):
        raise BitstreamError(f"codec id {name!r} is not [A-Za-z0-9._-] ASCII")
    offset += name_length
    level, ndim = _LEVEL_NDIM.unpack_from(data, offset)
    offset += _LEVEL_NDIM.size
    if not 1 <= ndim <= MAX_NDIM:
        raise BitstreamError(f"absurd shape: ndim {ndim} outside 1..{MAX_NDIM}")
    if len(data) < offset + 2 * ndim + _U32.size:
        raise BitstreamError(f"truncated: {len(data)} bytes end inside the header")
    shape = struct.unpack_from(f"<{ndim}H", data, offset)
    offset += 2 * ndim
    if problem := _check_shape(shape):
        raise BitstreamError(f"absurd shape: {problem}")
    (payload_length,) = _U32.unpack_from(data, offset)
    offset += _U32.size
    frame_length = offset + payload_length + _U32.size
    if len(data) < frame_length:
        raise BitstreamError(
            f"truncated: the header declares a {payload_length}-byte payload, "
            f"the data ends {frame_length - len(data)} bytes short of the frame"
        )
    if len(data) > frame_length:
        raise BitstreamError(
            f"trailing bytes: {len(data) - frame_length} after the {frame_length}-byte frame its header declares"
        )
    (stored_crc,) = _U32.unpack_from(data, frame_length - _U32.size)
    computed_crc = zlib.crc32(memoryview(data)[: frame_length - _U32.size])
    if stored_crc != computed_crc:
        raise BitstreamError(f"CRC mismatch: stored {stored_crc:08x}, computed {computed_crc:08x}")
    codec_id = name.decode("ascii")
    if expected_codec is not None and codec_id != expected_codec:
        raise BitstreamError(f"foreign codec id {codec_id!r}, expected {expected_codec!r}")
    return Frame(codec_id, level, shape, data[offset : offset + payload_length])
