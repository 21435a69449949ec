"""Trained models shipped inside the package: safetensors weights with a JSON model card each.

Every function takes an optional zoo folder; by default the package's own (`ZOO_DIR`).

Cards are written by training (`card.json`) and copied in with `grl-aecnn zoo add RUN_DIR`; on load,
the weights' SHA-256 must match the card.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from grl_aecnn.errors import CheckpointError, ModelNotFoundError
from grl_aecnn.nets import SplitNet, build_model
from grl_aecnn.store import (atomic_write_bytes, atomic_write_json, load_module_state, load_verified_tensors,
                             read_json, read_verified_bytes)

# Zoo names become file names: letters, digits, '.', '_', '-', no path separators.
ZOO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

ZOO_DIR = Path(__file__).parent / "weights"


def list_models(zoo_dir: Path | None = None) -> list[dict]:
    """Every shipped card, sorted by name."""
    zoo_dir = zoo_dir or ZOO_DIR
    cards = []
    for path in zoo_dir.glob("*.json"):
        card = read_json(path)
        # Option profiles live beside the models; they carry no card name, so they go by file name.
        cards.append(card if "name" in card else {**card, "name": path.stem})
    return sorted(cards, key=lambda c: c["name"])


def load_card(name: str, zoo_dir: Path | None = None) -> dict:
    zoo_dir = zoo_dir or ZOO_DIR
    path = zoo_dir / f"{name}.json"
    if not path.exists():
        known = [c["name"] for c in list_models(zoo_dir)]
        raise ModelNotFoundError(f"no model {name!r} in the zoo ({zoo_dir}); shipped: {known}")
    return read_json(path)


def load_backbone(name: str, zoo_dir: Path | None = None) -> SplitNet:
    """The shipped backbone `name`, in eval mode, its weights checked against the card."""
    zoo_dir = zoo_dir or ZOO_DIR
    card = load_card(name, zoo_dir)
    weights = zoo_dir / f"{name}.safetensors"
    if not weights.exists():
        raise CheckpointError(f"{weights}: weights listed in the zoo card are missing")
    tensors = load_verified_tensors(weights, card.get("weights_sha256"), "its card")
    model = build_model(card["model"], num_classes=card["num_classes"], in_channels=card["in_channels"],
                        image_size=card["image_size"])
    load_module_state(model, tensors, str(weights))
    return model.eval()


def add_to_zoo(run_dir: str | os.PathLike, zoo_dir: Path | None = None) -> dict:
    """Copy a finished training run (model.safetensors + card.json) into the zoo under its card's name."""
    zoo_dir = zoo_dir or ZOO_DIR
    run_dir = Path(run_dir)
    card = read_json(run_dir / "card.json")
    name = card.get("name")
    if not isinstance(name, str) or not ZOO_NAME.fullmatch(name) or name.startswith("profile-"):
        raise CheckpointError(f"{run_dir / 'card.json'}: name {name!r} is not a zoo name "
                              f"(letters, digits, '.', '_', '-'; 'profile-' is kept for option profiles)")
    data = read_verified_bytes(run_dir / "model.safetensors", card.get("weights_sha256"), str(run_dir / "card.json"))
    atomic_write_bytes(zoo_dir / f"{name}.safetensors", data)
    atomic_write_json(zoo_dir / f"{name}.json", card)
    return card
