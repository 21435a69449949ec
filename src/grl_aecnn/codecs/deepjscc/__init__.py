"""DeepJSCC (Bourtsoulatze, Kurka, Gunduz 2019): the image itself coded straight into channel symbols."""

from grl_aecnn.codecs.channel import transmit
from grl_aecnn.codecs.deepjscc.codec import DeepJsccCodec, load_codecs, ship_codec
from grl_aecnn.codecs.deepjscc.evaluate import SNR_GRID_DB, evaluate_channels, evaluate_snr_grid

__all__ = ["SNR_GRID_DB", "DeepJsccCodec", "evaluate_channels", "evaluate_snr_grid", "load_codecs", "ship_codec", "transmit"]
