"""Trained models shipped inside the package: safetensors weights with a JSON model card each.

Every function takes an optional zoo folder. By default models are looked up in the folder named by
the environment variable GRL_AECNN_ZOO, when set, and then in the package's own (`ZOO_DIR`): a
user's models, or a staged set of retrained ones (docs/reproduce.md), shadow the shipped ones of the
same name without touching the installed package; `zoo add` and `codec ship` write to the first folder.

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
ZOO_ENV = "GRL_AECNN_ZOO"


def zoo_folders(zoo_dir: Path | None = None) -> list[Path]:
    """Where models are looked up, first match wins: `zoo_dir` alone when given, else $GRL_AECNN_ZOO
    (when set) before the package's zoo. The first folder is where new models are written."""
    if zoo_dir is not None:
        return [Path(zoo_dir)]
    overlay = os.environ.get(ZOO_ENV)
    return ([Path(overlay)] if overlay else []) + [ZOO_DIR]


def zoo_file(file_name: str, zoo_dir: Path | None = None) -> Path:
    """`file_name` in the first zoo folder that has it; in the first folder when none has it."""
    folders = zoo_folders(zoo_dir)
    return next((folder / file_name for folder in folders if (folder / file_name).exists()), folders[0] / file_name)


def zoo_glob(pattern: str, zoo_dir: Path | None = None) -> list[Path]:
    """The files matching `pattern` over the zoo folders, a name in an earlier folder shadowing the
    same name in a later one; sorted by file name."""
    found: dict[str, Path] = {}
    for folder in zoo_folders(zoo_dir):
        for path in folder.glob(pattern):
            found.setdefault(path.name, path)
    return [found[name] for name in sorted(found)]


def list_models(zoo_dir: Path | None = None) -> list[dict]:
    """Every card in the zoo folders (the first folder's where a name is in several), sorted by name."""
    cards = []
    for path in zoo_glob("*.json", zoo_dir):
        card = read_json(path)
        # Option profiles live beside the models; they carry no card name, so they go by file name.
        cards.append(card if "name" in card else {**card, "name": path.stem})
    return sorted(cards, key=lambda c: c["name"])


def card_path(name: str, zoo_dir: Path | None = None) -> Path:
    """The card of model `name` (its weights lie beside it); ModelNotFoundError when no folder has it."""
    path = zoo_file(f"{name}.json", zoo_dir)
    if not path.exists():
        known = [c["name"] for c in list_models(zoo_dir)]
        folders = ", ".join(str(f) for f in zoo_folders(zoo_dir))
        raise ModelNotFoundError(f"no model {name!r} in the zoo ({folders}); shipped: {known}")
    return path


def load_card(name: str, zoo_dir: Path | None = None) -> dict:
    return read_json(card_path(name, zoo_dir))


def load_backbone(name: str, zoo_dir: Path | None = None) -> SplitNet:
    """The shipped backbone `name`, in eval mode, its weights checked against the card."""
    path = card_path(name, zoo_dir)
    card = read_json(path)
    weights = path.with_suffix(".safetensors")
    if not weights.exists():
        raise CheckpointError(f"{weights}: weights listed in the zoo card are missing")
    tensors = load_verified_tensors(weights, card.get("weights_sha256"), "its card")
    model = build_model(card["model"], num_classes=card["num_classes"], in_channels=card["in_channels"],
                        image_size=card["image_size"])
    load_module_state(model, tensors, str(weights))
    return model.eval()


def add_to_zoo(run_dir: str | os.PathLike, zoo_dir: Path | None = None) -> dict:
    """Copy a finished training run (model.safetensors + card.json) into the zoo (its first folder)
    under its card's name."""
    zoo_dir = zoo_folders(zoo_dir)[0]
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
