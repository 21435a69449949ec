"""AECNN as a `Codec`: real bytes through the entropy coder and the framed bitstream.

The shipped codec is one safetensors file (`base.*`: fine-tuned backbone and attention;
`level<L>.*`: each level's recovery, range, tail and entropy model) and one JSON card naming the
backbone, split and levels.
"""

from __future__ import annotations

from pathlib import Path

import torch

from grl_aecnn.codecs.aecnn.model import AecnnBase, AecnnLevel
from grl_aecnn.codecs.aecnn.training import BASE_WEIGHTS, LEVEL_CARD, LEVEL_WEIGHTS
from grl_aecnn.entropy import EntropyModel, decode_symbols, encode_tensor_frame, unpack_frame
from grl_aecnn.errors import BitstreamError, CheckpointError, ModelNotFoundError
from grl_aecnn.nets import count_flops, split_shape
from grl_aecnn.store import atomic_write_json, load_module_state, load_tensors, read_json, save_tensors, sha256_file
from grl_aecnn import zoo
from grl_aecnn.zoo import load_backbone

CODEC_ID = "aecnn"


class AecnnCodec:
    """One AECNN compression level. Device: head, attention, pruning, quantization, entropy coding.
    Server: entropy decoding, dequantization, feature recovery, the level's tail."""

    codec_id = CODEC_ID

    def __init__(self, base: AecnnBase, level_module: AecnnLevel, level: int, entropy: EntropyModel):
        self.base = base.eval()
        self.module = level_module.eval()
        self.level = level
        self.entropy = entropy
        self.split = base.split
        _, h, w = split_shape(base.backbone, base.split)
        self.symbol_shape = (len(level_module.keep), h, w)
        image = torch.zeros(1, *base.backbone.input_shape)
        self.device_flops = count_flops(base.features, image)
        self.server_flops = count_flops(level_module.logits_from_symbols, torch.zeros(1, *self.symbol_shape, dtype=torch.uint8))

    @property
    def keep_channels(self) -> int:
        return self.symbol_shape[0]

    @property
    def bits(self) -> int:
        return self.module.bits

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> bytes:
        symbols = self.module.symbols(self.base.features(image[None]))[0]
        return encode_tensor_frame(symbols.numpy(), self.entropy, CODEC_ID, self.level)

    @torch.no_grad()
    def decode(self, data: bytes) -> torch.Tensor:
        frame = unpack_frame(data, expected_codec=CODEC_ID)
        if frame.level != self.level:
            raise BitstreamError(f"frame is AECNN level {frame.level}; this decoder is level {self.level}")
        if frame.shape != self.symbol_shape:
            raise BitstreamError(f"frame declares shape {frame.shape}; level {self.level} sends {self.symbol_shape}")
        symbols = decode_symbols(frame.payload, frame.shape, self.entropy)
        return self.module.logits_from_symbols(torch.from_numpy(symbols)[None])[0]


def _level_entropy(tensors: dict[str, torch.Tensor], prefix: str, metadata: dict) -> EntropyModel:
    try:
        return EntropyModel.from_tensors({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, metadata)
    except ValueError as exc:
        raise CheckpointError(f"entropy model {prefix!r}: {exc}") from exc


def ship_codec(base_dir: str | Path, name: str, zoo_dir: Path | None = None) -> dict:
    """Collect a trained base and every finished level under `base_dir` into one zoo file and card."""
    base_dir, zoo_dir = Path(base_dir), zoo_dir or zoo.ZOO_DIR
    base_config = read_json(base_dir / "base_config.json")
    tensors = {f"base.{k}": v for k, v in load_tensors(base_dir / BASE_WEIGHTS).items()}
    levels = []
    for level_dir in sorted(base_dir.glob("level*/")):
        if not (level_dir / LEVEL_CARD).exists():
            continue
        card = read_json(level_dir / LEVEL_CARD)
        prefix = f"level{card['level']}."
        tensors.update({prefix + k: v for k, v in load_tensors(level_dir / LEVEL_WEIGHTS).items()})
        levels.append({k: card[k] for k in ("level", "keep_channels", "bits", "keep", "recovery_hidden", "entropy",
                                            "entropy_bits_per_symbol", "test_top1_tensor_path")})
    if not levels:
        raise CheckpointError(f"{base_dir}: no finished level (no level*/{LEVEL_CARD})")
    weights = zoo_dir / f"{name}.safetensors"
    save_tensors(weights, tensors)
    card = {
        "name": name, "codec": CODEC_ID, "backbone": base_config["backbone"], "split": base_config["split"],
        "reduction": base_config["reduction"], "base_config": base_config,
        "importance": read_json(base_dir / "importance.json"),
        "levels": sorted(levels, key=lambda c: c["level"]), "weights_sha256": sha256_file(weights),
    }
    atomic_write_json(zoo_dir / f"{name}.json", card)
    return card


def load_codecs(name: str, zoo_dir: Path | None = None) -> list[AecnnCodec]:
    """Every level of a shipped AECNN codec, ordered by level."""
    zoo_dir = zoo_dir or zoo.ZOO_DIR
    card_path, weights = zoo_dir / f"{name}.json", zoo_dir / f"{name}.safetensors"
    if not card_path.exists():
        raise ModelNotFoundError(f"no AECNN codec {name!r} in the zoo ({zoo_dir})")
    card = read_json(card_path)
    if sha256_file(weights) != card["weights_sha256"]:
        raise CheckpointError(f"{weights}: SHA-256 does not match its card")
    tensors = load_tensors(weights)
    base = AecnnBase(load_backbone(card["backbone"], zoo_dir), card["split"], card["reduction"])
    load_module_state(base, {k[5:]: v for k, v in tensors.items() if k.startswith("base.")}, str(weights))
    codecs = []
    for spec in card["levels"]:
        prefix = f"level{spec['level']}."
        module = AecnnLevel(base.backbone, card["split"], torch.tensor(spec["keep"]), spec["bits"], base.channels,
                            spec["recovery_hidden"])
        own = {k[len(prefix):]: v for k, v in tensors.items()
               if k.startswith(prefix) and not k.startswith(prefix + "entropy.")}
        # The level's head copy is never used; fill it from the base so the state is complete.
        full = {**{f"net.{k}": v for k, v in base.backbone.state_dict().items()}, **own}
        load_module_state(module, full, f"{weights} level {spec['level']}")
        codecs.append(AecnnCodec(base, module, spec["level"], _level_entropy(tensors, prefix + "entropy.", spec["entropy"])))
    return codecs
