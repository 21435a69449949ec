"""Entropy stage: quantization, per-channel probability models, ANS coding and framing.

Entropy-coded codecs use the pair encode_tensor_frame / decode_tensor_frame; the parts are exported
for codecs with other payloads (unpack_frame with the expected codec, level and shape).
"""

from __future__ import annotations

import numpy as np
import torch

from grl_aecnn.entropy.bitstream import CODEC_NUMBERS, FORMAT_VERSION, MAX_ELEMENTS, Frame, pack_frame, unpack_frame
from grl_aecnn.entropy.coder import decode_symbols, encode_symbols
from grl_aecnn.entropy.models import (DEFAULT_NEIGHBOURS, NEIGHBOURS, PRECISION_BITS, EntropyModel,
                                      channel_histograms, check_neighbours)
from grl_aecnn.entropy.quantize import dequantize, fit_channel_range, quantization_levels, quantize, quantize_ste
from grl_aecnn.entropy.rate import RateProxy

__all__ = [
    "CODEC_NUMBERS",
    "DEFAULT_NEIGHBOURS",
    "FORMAT_VERSION",
    "MAX_ELEMENTS",
    "NEIGHBOURS",
    "PRECISION_BITS",
    "EntropyModel",
    "Frame",
    "RateProxy",
    "channel_histograms",
    "check_neighbours",
    "decode_symbols",
    "decode_tensor_frame",
    "dequantize",
    "encode_symbols",
    "encode_tensor_frame",
    "fit_channel_range",
    "pack_frame",
    "quantization_levels",
    "quantize",
    "quantize_ste",
    "unpack_frame",
]


def encode_tensor_frame(symbols: np.ndarray | torch.Tensor, model: EntropyModel, codec_id: str, level: int) -> bytes:
    """A complete frame holding quantized symbols of shape (C, H, W) coded under model."""
    symbols = np.asarray(symbols)
    return pack_frame(codec_id, level, symbols.shape, encode_symbols(symbols, model))


def decode_tensor_frame(data: bytes, model: EntropyModel, expected_codec: str | None = None,
                        expected_level: int | None = None, expected_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The (C, H, W) uint8 symbols of a frame made by encode_tensor_frame.

    BitstreamError if the frame is malformed, of another codec, level or shape than the expected ones
    given, declares a shape whose channel count differs from the model's, or its payload does not decode."""
    frame = unpack_frame(data, expected_codec, expected_level, expected_shape)
    return decode_symbols(frame.payload, frame.shape, model)
