"""DeepJSCC as a `Codec`. Its real cost is channel uses (k complex symbols per image), not bytes:
on the air it is analog, the symbols go out as they are and the channel adds its noise.

`encode_symbols` / `transmit` / `decode_symbols` are that analog path. The Codec protocol's bytes
path exists for a digital runtime that carries the symbols over a lossless link: the symbols as
float16 I/Q pairs (little-endian, I then Q per symbol) in a frame of codec number 3 with shape
(k, 2), 4 bytes per channel use. A frame with a non-finite value raises BitstreamError.

The shipped codec is one safetensors file (`backbone.*`: the frozen backbone the ratios were
trained against; `level<L>.*`: each ratio's encoder and decoder) and one JSON card.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from grl_aecnn.codecs.channel import transmit
from grl_aecnn.codecs.deepjscc.model import DeepJscc
from grl_aecnn.codecs.shipping import finished_levels, read_shipped, strip_prefix, with_prefix, write_shipped
from grl_aecnn.codecs.training import BACKBONE_INFO, BACKBONE_WEIGHTS
from grl_aecnn.data import NORMALIZATION
from grl_aecnn.entropy import pack_frame, unpack_frame
from grl_aecnn.errors import BitstreamError
from grl_aecnn.nets import SplitNet, count_flops
from grl_aecnn.store import load_module_state, load_tensors, read_json
from grl_aecnn.zoo import load_backbone, load_card

CODEC_ID = "deepjscc"
_WIRE = np.dtype("<f2")


class DeepJsccCodec:
    """One bandwidth ratio. Device: encoder and power normalization. Server: decoder, full backbone."""

    codec_id = CODEC_ID
    split = None

    def __init__(self, backbone: SplitNet, model: DeepJscc, level: int, channel: str):
        self.backbone = backbone.eval()
        self.model = model.eval()
        self.level = level
        self.channel = channel  # the channel the ratio was trained for
        self.image_shape = backbone.input_shape
        self.symbols = int(np.prod(model.code_shape(self.image_shape))) // 2
        self.bandwidth_ratio = self.symbols / int(np.prod(self.image_shape))
        self.device_flops = count_flops(self.encode_symbols, torch.zeros(self.image_shape))
        self.server_flops = count_flops(self.decode_symbols, torch.zeros(self.symbols, dtype=torch.complex64))

    @torch.no_grad()
    def encode_symbols(self, image: torch.Tensor) -> torch.Tensor:
        """Normalized image (C, H, W) or batch (N, C, H, W) -> complex symbols (k,) or (N, k), mean |s|^2 = 1."""
        batch = image if image.ndim == 4 else image[None]
        symbols = self.model.symbols(batch)
        return symbols if image.ndim == 4 else symbols[0]

    @torch.no_grad()
    def reconstruct(self, received: torch.Tensor) -> torch.Tensor:
        """Received symbols (k,) or (N, k) -> images in [0, 1]."""
        batch = received if received.ndim == 2 else received[None]
        pixels = self.model.reconstruct(batch, self.image_shape)
        return pixels if received.ndim == 2 else pixels[0]

    @torch.no_grad()
    def decode_symbols(self, received: torch.Tensor) -> torch.Tensor:
        """Received symbols (k,) or (N, k) -> logits (classes,) or (N, classes)."""
        batch = received if received.ndim == 2 else received[None]
        logits = self.backbone(self.model.normalize(self.model.reconstruct(batch, self.image_shape)))
        return logits if received.ndim == 2 else logits[0]

    def transmit(self, symbols: torch.Tensor, snr_db: float, generator: torch.Generator | None = None) -> torch.Tensor:
        return transmit(symbols, snr_db, self.channel, generator)

    def frame(self, symbols: torch.Tensor) -> bytes:
        """The frame carrying complex symbols (k,) as float16 I/Q."""
        pairs = torch.view_as_real(symbols).numpy().astype(_WIRE)
        return pack_frame(CODEC_ID, self.level, pairs.shape, pairs.tobytes())

    def encode_batch(self, images: torch.Tensor) -> list[bytes]:
        return [self.frame(s) for s in self.encode_symbols(images)]

    def encode(self, image: torch.Tensor) -> bytes:
        return self.encode_batch(image[None])[0]

    def frame_symbols(self, data: bytes) -> torch.Tensor:
        frame = unpack_frame(data, CODEC_ID, self.level, (self.symbols, 2))
        if len(frame.payload) != self.symbols * 2 * _WIRE.itemsize:
            raise BitstreamError(f"payload of {len(frame.payload)} bytes, expected {self.symbols * 2 * _WIRE.itemsize} "
                                 "(float16 I/Q)")
        pairs = np.frombuffer(frame.payload, dtype=_WIRE).astype(np.float32).reshape(self.symbols, 2)
        if not np.isfinite(pairs).all():
            raise BitstreamError("payload holds a non-finite symbol")
        return torch.view_as_complex(torch.from_numpy(pairs))

    def decode_batch(self, data: list[bytes]) -> torch.Tensor:
        return self.decode_symbols(torch.stack([self.frame_symbols(d) for d in data]))

    def decode(self, data: bytes) -> torch.Tensor:
        return self.decode_batch([data])[0]


def ship_codec(base_dir: str | Path, name: str, zoo_dir: Path | None = None) -> dict:
    """Collect the frozen backbone and every finished ratio under `base_dir` into one zoo file and card."""
    base_dir = Path(base_dir)
    tensors = with_prefix(load_tensors(base_dir / BACKBONE_WEIGHTS), "backbone.")
    levels = []
    for card, level_tensors in finished_levels(base_dir):
        tensors.update(level_tensors)
        levels.append({k: card[k] for k in ("level", "code_channels", "width", "symbols", "bandwidth_ratio", "channel",
                                            "snr_train_db", "test_top1_top_snr", "init_from") if k in card})
    # frozen_backbone saw to it that every level in base_dir was trained on these backbone weights.
    backbone = read_json(base_dir / BACKBONE_INFO)
    return write_shipped(name, tensors, {"codec": CODEC_ID, "backbone": backbone["name"],
                                         "backbone_weights_sha256": backbone["weights_sha256"], "levels": levels}, zoo_dir)


def load_codecs(name: str, zoo_dir: Path | None = None) -> list[DeepJsccCodec]:
    """Every bandwidth ratio of a shipped DeepJSCC codec, ordered by level."""
    card, tensors = read_shipped(name, CODEC_ID, zoo_dir)
    weights = f"{name}.safetensors"
    backbone = load_backbone(card["backbone"], zoo_dir)
    load_module_state(backbone, strip_prefix(tensors, "backbone."), weights)
    mean, std = NORMALIZATION[load_card(card["backbone"], zoo_dir)["dataset"]["name"]]
    codecs = []
    for spec in card["levels"]:
        model = DeepJscc(spec["code_channels"], spec["width"], mean, std, in_channels=backbone.input_shape[0])
        load_module_state(model, strip_prefix(tensors, f"level{spec['level']}."), f"{weights} level {spec['level']}")
        codecs.append(DeepJsccCodec(backbone, model, spec["level"], spec["channel"]))
    return codecs
