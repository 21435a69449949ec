"""The staged retrain (staging/README.md): what is committed in the zoo overlay staging/zoo loads
through GRL_AECNN_ZOO with its weights intact, and a staged backbone meets the issue-2 target."""

from pathlib import Path

import pytest

from grl_aecnn import zoo
from grl_aecnn.profile import load_profile
from grl_aecnn.store import load_verified_tensors, read_json

STAGED_ZOO = Path(__file__).parents[1] / "staging" / "zoo"
CARDS = sorted(STAGED_ZOO.glob("*.json"))


@pytest.mark.parametrize("card_path", CARDS, ids=[p.stem for p in CARDS])
def test_staged_models_load_through_the_overlay_with_their_weights_intact(card_path, monkeypatch):
    card = read_json(card_path)
    if card.get("format") == "grl-aecnn-option-profile":
        assert load_profile(card_path).model == card["model"]  # checks the npz against the JSON
        return
    load_verified_tensors(card_path.with_suffix(".safetensors"), card["weights_sha256"], str(card_path))
    monkeypatch.setenv("GRL_AECNN_ZOO", str(STAGED_ZOO))
    assert zoo.card_path(card["name"]) == card_path
    if "codec" not in card and card.get("kind") != "policy":  # a backbone
        assert card["top1"] >= 0.90 and card["dataset"]["test_n"] == 10_000
        assert zoo.load_backbone(card["name"]) is not None
