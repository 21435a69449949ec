"""Shipping a trained codec into the zoo and loading it back: one safetensors file (shared tensors
and `level<L>.*` per level) and one JSON card whose `weights_sha256` is checked on load."""

from __future__ import annotations

from pathlib import Path

import torch

from grl_aecnn import zoo
from grl_aecnn.codecs.training import LEVEL_CARD, LEVEL_WEIGHTS
from grl_aecnn.entropy import EntropyModel
from grl_aecnn.errors import CheckpointError, ModelNotFoundError
from grl_aecnn.store import (atomic_write_json, load_module_state, load_tensors, load_verified_tensors, read_json,
                             save_tensors, sha256_file)


def with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in tensors.items()}


def strip_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under prefix, with it removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_split_level(level: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str,
                     backbone: torch.nn.Module, source: str) -> None:
    """Load a level's own tensors (under `prefix`, less its entropy model and any device head). Its copy
    of the backbone's head is never used; it is filled from `backbone` so the state is complete."""
    own = {k: v for k, v in strip_prefix(tensors, prefix).items() if not k.startswith(("entropy.", "device."))}
    load_module_state(level, {**with_prefix(backbone.state_dict(), "net."), **own}, source)


def finished_levels(base_dir: Path) -> list[tuple[dict, dict[str, torch.Tensor]]]:
    """(level card, `level<L>.`-prefixed tensors) of every finished level under base_dir, by level."""
    levels = []
    for level_dir in sorted(base_dir.glob("level*/")):
        if (level_dir / LEVEL_CARD).exists():
            card = read_json(level_dir / LEVEL_CARD)
            levels.append((card, with_prefix(load_tensors(level_dir / LEVEL_WEIGHTS), f"level{card['level']}.")))
    if not levels:
        raise CheckpointError(f"{base_dir}: no finished level (no level*/{LEVEL_CARD})")
    return sorted(levels, key=lambda item: item[0]["level"])


def write_shipped(name: str, tensors: dict[str, torch.Tensor], card: dict, zoo_dir: Path | None = None) -> dict:
    """Write `<name>.safetensors` and `<name>.json` (card plus name and weights_sha256); returns the card."""
    zoo_dir = zoo.zoo_folders(zoo_dir)[0]
    weights = zoo_dir / f"{name}.safetensors"
    save_tensors(weights, tensors)
    card = {"name": name, **card, "weights_sha256": sha256_file(weights)}
    atomic_write_json(zoo_dir / f"{name}.json", card)
    return card


def read_shipped(name: str, codec_id: str, zoo_dir: Path | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Card and tensors of a shipped codec, the weights checked against the card."""
    card_path = zoo.zoo_file(f"{name}.json", zoo_dir)
    weights = card_path.with_suffix(".safetensors")
    if not card_path.exists():
        folders = ", ".join(str(f) for f in zoo.zoo_folders(zoo_dir))
        raise ModelNotFoundError(f"no {codec_id} codec {name!r} in the zoo ({folders})")
    card = read_json(card_path)
    if card.get("codec") != codec_id:
        raise CheckpointError(f"{card_path}: is a {card.get('codec')!r} codec, not {codec_id!r}")
    return card, load_verified_tensors(weights, card.get("weights_sha256"), str(card_path))


def load_entropy(tensors: dict[str, torch.Tensor], prefix: str, metadata: dict) -> EntropyModel:
    try:
        return EntropyModel.from_tensors(strip_prefix(tensors, prefix), metadata)
    except ValueError as exc:
        raise CheckpointError(f"entropy model {prefix!r}: {exc}") from exc
