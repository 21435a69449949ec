"""AECNN as a `Codec`: real bytes through the entropy coder and the framed bitstream.

The shipped codec is one safetensors file (`base.*`: fine-tuned backbone and attention, the
prune-aware head when the run has one; `level<L>.*`: each level's recovery, range, tail and entropy
model, and `level<L>.device.*` the level's own head and attention where stage 5 trained one) and
one JSON card naming the backbone, split and levels.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from grl_aecnn.codecs.aecnn.model import AecnnBase, AecnnLevel
from grl_aecnn.codecs.aecnn.training import device_base_state
from grl_aecnn.codecs.framed import FramedSymbolCodec
from grl_aecnn.codecs.shipping import (finished_levels, load_entropy, load_split_level, read_shipped, strip_prefix,
                                      with_prefix, write_shipped)
from grl_aecnn.entropy import EntropyModel
from grl_aecnn.errors import CheckpointError
from grl_aecnn.nets import count_flops, split_shape
from grl_aecnn.store import load_module_state, read_json
from grl_aecnn.zoo import load_backbone

CODEC_ID = "aecnn"


class AecnnCodec(FramedSymbolCodec):
    """One AECNN compression level. Device: head, attention, pruning, quantization, entropy coding.
    Server: entropy decoding, dequantization, feature recovery, the level's tail."""

    codec_id = CODEC_ID

    def __init__(self, base: AecnnBase, level_module: AecnnLevel, level: int, entropy: EntropyModel):
        _, h, w = split_shape(base.backbone, base.split)
        super().__init__(level, entropy, (len(level_module.keep), h, w))
        self.base = base.eval()
        self.module = level_module.eval()
        self.split = base.split
        image = torch.zeros(1, *base.backbone.input_shape)
        self.device_flops = count_flops(base.features, image)
        self.server_flops = count_flops(level_module.logits_from_symbols, torch.zeros(1, *self.symbol_shape, dtype=torch.uint8))

    @property
    def keep_channels(self) -> int:
        return self.symbol_shape[0]

    @property
    def bits(self) -> int:
        return self.module.bits

    def symbols_of(self, images: torch.Tensor) -> torch.Tensor:
        return self.module.symbols(self.base.features(images))

    def logits_of(self, symbols: torch.Tensor) -> torch.Tensor:
        return self.module.logits_from_symbols(symbols)


def ship_codec(base_dir: str | Path, name: str, zoo_dir: Path | None = None) -> dict:
    """Collect a trained base and every finished level under `base_dir` into one zoo file and card."""
    base_dir = Path(base_dir)
    base_config = read_json(base_dir / "base_config.json")
    tensors = with_prefix(device_base_state(base_dir), "base.")
    levels = []
    for card, level_tensors in finished_levels(base_dir):
        tensors.update(level_tensors)
        levels.append({k: card[k] for k in ("level", "keep_channels", "bits", "keep", "recovery_hidden", "entropy",
                                            "entropy_bits_per_symbol", "test_top1_tensor_path")}
                      | {"own_device_head": card.get("own_device_head", False)})
    return write_shipped(name, tensors, {
        "codec": CODEC_ID, "backbone": base_config["backbone"], "split": base_config["split"],
        "reduction": base_config["reduction"], "base_config": base_config,
        "importance": read_json(base_dir / "importance.json"), "levels": levels,
    }, zoo_dir)


def load_codecs(name: str, zoo_dir: Path | None = None) -> list[AecnnCodec]:
    """Every level of a shipped AECNN codec, ordered by level."""
    card, tensors = read_shipped(name, CODEC_ID, zoo_dir)
    weights = f"{name}.safetensors"
    base = AecnnBase(load_backbone(card["backbone"], zoo_dir), card["split"], card["reduction"])
    load_module_state(base, strip_prefix(tensors, "base."), weights)
    codecs = []
    for spec in card["levels"]:
        prefix = f"level{spec['level']}."
        module = AecnnLevel(base.backbone, card["split"], torch.tensor(spec["keep"]), spec["bits"], base.channels,
                            spec["recovery_hidden"])
        load_split_level(module, tensors, prefix, base.backbone, f"{weights} level {spec['level']}")
        device = strip_prefix(tensors, prefix + "device.")
        if bool(device) != spec.get("own_device_head", False):
            raise CheckpointError(f"{weights} level {spec['level']}: the card says own_device_head="
                                  f"{spec.get('own_device_head', False)} but the file has {len(device)} device tensors")
        if device:
            # Stage 5's own head and attention; the unused backbone tail is filled from the base.
            level_base = copy.deepcopy(base)
            load_module_state(level_base, {**base.state_dict(), **device}, f"{weights} level {spec['level']} device")
        codecs.append(AecnnCodec(level_base if device else base, module, spec["level"],
                                 load_entropy(tensors, prefix + "entropy.", spec["entropy"])))
    return codecs
