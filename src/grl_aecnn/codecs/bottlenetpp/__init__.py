"""BottleNet++ (Shao & Zhang 2020): a learned bottleneck (conv encoder and decoder) at the split point."""

from grl_aecnn.codecs.bottlenetpp.codec import BottleNetCodec, load_codecs, ship_codec

__all__ = ["BottleNetCodec", "load_codecs", "ship_codec"]
