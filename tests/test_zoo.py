import json

import pytest
import torch

from grl_aecnn.data import load_cifar10
from grl_aecnn.errors import CheckpointError, ModelNotFoundError
from grl_aecnn.nets.training import evaluate
from grl_aecnn.zoo import add_to_zoo, list_models, load_backbone, load_card
from tests.conftest import SHARED_DATA, shared_cifar_available
from tests.test_training import tiny_config
from grl_aecnn.nets.training import train_backbone


@pytest.fixture
def private_zoo(tiny_cifar, tmp_path):
    run = tmp_path / "run"
    train_backbone(tiny_config(run, epochs=1, zoo_name="tiny-resnet20"), show_progress=False)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    add_to_zoo(run, zoo)
    return zoo


def test_add_list_and_load(private_zoo):
    assert [c["name"] for c in list_models(private_zoo)] == ["tiny-resnet20"]
    model = load_backbone("tiny-resnet20", private_zoo)
    assert not model.training and model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_unknown_model_lists_what_is_shipped(private_zoo):
    with pytest.raises(ModelNotFoundError, match="tiny-resnet20"):
        load_card("resnet1000-imagenet", private_zoo)


def test_tampered_weights_are_refused(private_zoo):
    weights = private_zoo / "tiny-resnet20.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_backbone("tiny-resnet20", private_zoo)


def test_added_files_are_readable_and_a_card_without_its_hash_is_refused(private_zoo):
    # Atomic writes go through a private temp file; the result must still carry the umask's mode.
    assert (private_zoo / "tiny-resnet20.safetensors").stat().st_mode & 0o044 == 0o044
    card_path = private_zoo / "tiny-resnet20.json"
    card = json.loads(card_path.read_text())
    del card["weights_sha256"]
    card_path.write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_backbone("tiny-resnet20", private_zoo)


@pytest.mark.parametrize("name", ["../escape", "a/b", "", "profile-resnet20-cifar10", 7])
def test_add_refuses_a_name_that_is_not_a_zoo_file_name(private_zoo, tmp_path, name):
    run = tmp_path / "run"
    card = json.loads((run / "card.json").read_text())
    (run / "card.json").write_text(json.dumps({**card, "name": name}))
    with pytest.raises(CheckpointError, match="not a zoo name"):
        add_to_zoo(run, private_zoo)
    assert sorted(p.name for p in private_zoo.iterdir()) == ["tiny-resnet20.json", "tiny-resnet20.safetensors"]


def test_an_overlay_zoo_shadows_the_package_zoo_and_receives_new_models(private_zoo, tmp_path, monkeypatch):
    """GRL_AECNN_ZOO: looked up before the package's zoo, written by `zoo add` and `codec ship`; the
    package's files stay as they are."""
    from grl_aecnn import zoo
    from grl_aecnn.cli import app
    from grl_aecnn.codecs.shipping import read_shipped, write_shipped
    from grl_aecnn.policies.registry import weights_id
    from typer.testing import CliRunner

    package = tmp_path / "package"
    package.mkdir()
    for f in private_zoo.iterdir():
        (package / f.name).write_bytes(f.read_bytes())
    (package / "droo-default.json").write_text(json.dumps({"weights_sha256": "a" * 64, "shape": {"n_md": 10, "n_es": 3}}))
    monkeypatch.setattr(zoo, "ZOO_DIR", package)
    before = {f.name: f.read_bytes() for f in package.iterdir()}
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    monkeypatch.setenv("GRL_AECNN_ZOO", str(overlay))
    # A retrained model of the same name goes to the overlay and shadows the package's.
    run = tmp_path / "run"
    card = json.loads((run / "card.json").read_text())
    (run / "card.json").write_text(json.dumps({**card, "top1": 0.5}))
    result = CliRunner().invoke(app, ["zoo", "add", str(run)])
    assert result.exit_code == 0, result.output
    assert sorted(f.name for f in overlay.iterdir()) == ["tiny-resnet20.json", "tiny-resnet20.safetensors"]
    assert load_card("tiny-resnet20")["top1"] == 0.5 and load_backbone("tiny-resnet20") is not None
    assert [c["name"] for c in list_models()] == ["droo-default", "tiny-resnet20"]
    assert next(c for c in list_models() if c["name"] == "tiny-resnet20")["top1"] == 0.5
    # Codecs ship into the overlay; the package's policy cards are still found, an overlay one shadows them.
    write_shipped("aecnn-tiny", {"w": torch.zeros(2)}, {"codec": "aecnn"})
    assert read_shipped("aecnn-tiny", "aecnn")[0]["name"] == "aecnn-tiny" and (overlay / "aecnn-tiny.json").exists()
    assert weights_id("droo") == "a" * 64
    (overlay / "droo-default.json").write_text(json.dumps({"weights_sha256": "b" * 64, "shape": {"n_md": 10, "n_es": 3}}))
    assert weights_id("droo") == "b" * 64
    assert {f.name: f.read_bytes() for f in package.iterdir()} == before
    # Without the variable, the package's zoo alone.
    monkeypatch.delenv("GRL_AECNN_ZOO")
    assert load_card("tiny-resnet20")["top1"] == card["top1"] and weights_id("droo") == "a" * 64
    with pytest.raises(ModelNotFoundError, match="aecnn-tiny"):
        read_shipped("aecnn-tiny", "aecnn")


def test_shipped_resnet20_card():
    card = load_card("resnet20-cifar10")
    assert card["model"] == "resnet20" and card["dataset"]["name"] == "cifar10"
    assert card["dataset"]["test_n"] == 10000 and card["dataset"]["train_n"] == 50000
    assert card["top1"] >= 0.85


def test_shipped_resnet20_meets_the_090_target():
    assert load_card("resnet20-cifar10")["top1"] >= 0.90


@pytest.mark.skipif(not shared_cifar_available(), reason="the CIFAR-10 JPEG copy is not beside the checkout")
def test_shipped_resnet20_reaches_its_card_on_the_full_test_set(monkeypatch):
    monkeypatch.setenv("GRL_AECNN_DATA", str(SHARED_DATA))
    card = load_card("resnet20-cifar10")
    test_set = load_cifar10("test")
    assert test_set.checksum == card["dataset"]["test_checksum"]
    top1 = evaluate(load_backbone("resnet20-cifar10"), test_set)
    assert top1 == pytest.approx(card["top1"], abs=1e-9)
