"""AECNN: channel-attention pruning, quantization, entropy coding and feature recovery."""

from grl_aecnn.codecs.aecnn.codec import AecnnCodec, load_codecs, ship_codec

__all__ = ["AecnnCodec", "load_codecs", "ship_codec"]
