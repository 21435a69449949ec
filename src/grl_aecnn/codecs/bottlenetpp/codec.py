"""BottleNet++ as a `Codec`: the same entropy stage and framed bitstream as AECNN, codec number 2.

The shipped codec is one safetensors file (`backbone.*`: the frozen backbone the rates were trained
on, so the codec stays self-consistent when the zoo's backbone is retrained; `level<L>.*`: each
rate's encoder, decoder, range, tail and entropy model) and one JSON card.
"""

from __future__ import annotations

from pathlib import Path

import torch

from grl_aecnn.codecs.bottlenetpp.model import BottleNetLevel
from grl_aecnn.codecs.bottlenetpp.training import CACHE_INFO
from grl_aecnn.codecs.framed import FramedSymbolCodec
from grl_aecnn.codecs.training import BACKBONE_WEIGHTS
from grl_aecnn.codecs.shipping import (finished_levels, load_entropy, load_split_level, read_shipped, strip_prefix,
                                      with_prefix, write_shipped)
from grl_aecnn.entropy import EntropyModel
from grl_aecnn.nets import SplitNet, count_flops, split_shape
from grl_aecnn.store import load_module_state, load_tensors, read_json
from grl_aecnn.zoo import load_backbone

CODEC_ID = "bottlenetpp"


class BottleNetCodec(FramedSymbolCodec):
    """One BottleNet++ rate. Device: head, encoder, quantization, entropy coding.
    Server: entropy decoding, dequantization, decoder, the rate's tail."""

    codec_id = CODEC_ID

    def __init__(self, backbone: SplitNet, module: BottleNetLevel, level: int, entropy: EntropyModel):
        self.backbone = backbone.eval()
        self.module = module.eval()
        self.split = module.split
        with torch.no_grad():
            shape = tuple(module.encoder(torch.zeros(1, *split_shape(backbone, self.split))).shape[1:])
        super().__init__(level, entropy, shape)
        image = torch.zeros(1, *backbone.input_shape)
        self.device_flops = count_flops(self.symbols_of, image)
        self.server_flops = count_flops(self.logits_of, torch.zeros(1, *self.symbol_shape, dtype=torch.uint8))

    @property
    def bits(self) -> int:
        return self.module.bits

    def symbols_of(self, images: torch.Tensor) -> torch.Tensor:
        return self.module.symbols(self.backbone.head(images, self.split))

    def logits_of(self, symbols: torch.Tensor) -> torch.Tensor:
        return self.module.logits_from_symbols(symbols)


def ship_codec(base_dir: str | Path, name: str, zoo_dir: Path | None = None) -> dict:
    """Collect the frozen backbone and every finished rate under `base_dir` into one zoo file and card."""
    base_dir = Path(base_dir)
    base_config = read_json(base_dir / "base_config.json")
    tensors = with_prefix(load_tensors(base_dir / BACKBONE_WEIGHTS), "backbone.")
    levels = []
    for card, level_tensors in finished_levels(base_dir):
        tensors.update(level_tensors)
        levels.append({k: card[k] for k in ("level", "code_channels", "stride", "bits", "symbol_shape", "entropy",
                                            "entropy_bits_per_symbol", "test_top1_tensor_path")})
    return write_shipped(name, tensors, {
        "codec": CODEC_ID, "backbone": base_config["backbone"], "split": base_config["split"],
        "base_config": base_config, "cache": read_json(base_dir / CACHE_INFO), "levels": levels,
    }, zoo_dir)


def load_codecs(name: str, zoo_dir: Path | None = None) -> list[BottleNetCodec]:
    """Every rate of a shipped BottleNet++ codec, ordered by level."""
    card, tensors = read_shipped(name, CODEC_ID, zoo_dir)
    weights = f"{name}.safetensors"
    # The zoo supplies the architecture; the weights are the ones the rates were trained on.
    backbone = load_backbone(card["backbone"], zoo_dir)
    load_module_state(backbone, strip_prefix(tensors, "backbone."), weights)
    channels = split_shape(backbone, card["split"])[0]
    codecs = []
    for spec in card["levels"]:
        prefix = f"level{spec['level']}."
        module = BottleNetLevel(backbone, card["split"], channels, spec["code_channels"], spec["stride"], spec["bits"])
        load_split_level(module, tensors, prefix, backbone, f"{weights} level {spec['level']}")
        codecs.append(BottleNetCodec(backbone, module, spec["level"], load_entropy(tensors, prefix + "entropy.", spec["entropy"])))
    return codecs
