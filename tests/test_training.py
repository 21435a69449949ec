import json

import pytest
import torch

from grl_aecnn.config import load_config
from grl_aecnn.errors import CheckpointError, ConfigError
from grl_aecnn.nets.training import BackboneTrainConfig, train_backbone
from grl_aecnn.store import load_tensors


def tiny_config(out, **overrides) -> BackboneTrainConfig:
    values = dict(model="resnet20", epochs=2, batch_size=16, eval_every=1, output_dir=str(out), threads=1)
    return BackboneTrainConfig(**{**values, **overrides})


def test_interrupted_and_resumed_equals_uninterrupted(tiny_cifar, tmp_path):
    straight = train_backbone(tiny_config(tmp_path / "a"), show_progress=False)
    assert train_backbone(tiny_config(tmp_path / "b"), stop_after=1, show_progress=False) is None
    state = json.loads((tmp_path / "b" / "state.json").read_text())
    assert state["epochs_done"] == 1
    resumed = train_backbone(tiny_config(tmp_path / "b"), resume=True, show_progress=False)
    a, b = load_tensors(tmp_path / "a" / "model.safetensors"), load_tensors(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in straight["history"]] == [h["train_loss"] for h in resumed["history"]]
    # Only the latest checkpoint is kept.
    assert sorted(p.name for p in (tmp_path / "b").glob("checkpoint-*")) == ["checkpoint-epoch0002.safetensors"]


def test_bf16_training_resumes_exactly_and_learns_as_fp32_does(tiny_cifar, tmp_path):
    bf16 = tiny_config(tmp_path / "bf16", precision="bf16")
    straight = train_backbone(bf16, show_progress=False)
    assert train_backbone(bf16.model_copy(update={"output_dir": str(tmp_path / "b")}), stop_after=1,
                          show_progress=False) is None
    resumed = train_backbone(bf16.model_copy(update={"output_dir": str(tmp_path / "b")}), resume=True,
                             show_progress=False)
    a, b = load_tensors(tmp_path / "bf16" / "model.safetensors"), load_tensors(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    fp32 = train_backbone(tiny_config(tmp_path / "fp32"), show_progress=False)
    losses = [[h["train_loss"] for h in run["history"]] for run in (straight, fp32)]
    assert losses[0] != losses[1]  # the forward pass really ran in bf16
    assert losses[0] == pytest.approx(losses[1], rel=0.05)
    assert resumed["config"]["precision"] == "bf16"


def test_model_card(tiny_cifar, tmp_path):
    card = train_backbone(tiny_config(tmp_path / "run", epochs=1), show_progress=False)
    saved = json.loads((tmp_path / "run" / "card.json").read_text())
    assert saved == card
    assert card["dataset"]["train_n"] == 80 and card["dataset"]["test_n"] == 40
    assert card["dataset"]["test_checksum"].startswith("sha256:")
    assert card["epochs"] == 1 and card["config"]["seed"] == 0
    # the card's top-1 is the saved weights' on the test split
    from grl_aecnn.data import load_cifar10
    from grl_aecnn.nets.training import build_for_dataset, evaluate
    from grl_aecnn.store import load_module_state
    test = load_cifar10("test")
    model = build_for_dataset("resnet20", test)
    load_module_state(model, load_tensors(tmp_path / "run" / "model.safetensors"), "model")
    assert card["top1"] == evaluate(model, test)
    assert card["package_version"] and card["wall_time_s"] > 0


def test_warm_start_continues_from_a_finished_run(tiny_cifar, tmp_path):
    first = train_backbone(tiny_config(tmp_path / "first", epochs=1), show_progress=False)
    start = load_tensors(tmp_path / "first" / "model.safetensors")
    # Zero learning rate everywhere: the second run must keep the first run's weights exactly.
    frozen = dict(optimizer={"lr_max": 1e-12, "weight_decay": 0.0}, schedule={"div_factor": 2.0, "final_div_factor": 2.0})
    second = train_backbone(tiny_config(tmp_path / "second", epochs=1, init_from=str(tmp_path / "first"), **frozen),
                            show_progress=False)
    end = load_tensors(tmp_path / "second" / "model.safetensors")
    conv = "stem.0.weight" if "stem.0.weight" in start else next(k for k in start if k.endswith("weight"))
    assert torch.allclose(start[conv], end[conv], atol=1e-6)
    assert second["init_from"]["weights_sha256"] == first["weights_sha256"]
    assert second["total_epochs"] == 2 and second["epochs"] == 1


def test_warm_start_refuses_an_unfinished_or_altered_run(tiny_cifar, tmp_path):
    with pytest.raises(CheckpointError, match="finished run"):
        train_backbone(tiny_config(tmp_path / "b", init_from=str(tmp_path / "missing")), show_progress=False)
    train_backbone(tiny_config(tmp_path / "a", epochs=1), show_progress=False)
    weights = tmp_path / "a" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(CheckpointError, match="SHA-256"):
        train_backbone(tiny_config(tmp_path / "c", init_from=str(tmp_path / "a")), show_progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a machine without CUDA gives")
def test_cuda_without_a_gpu_is_a_config_error(tiny_cifar, tmp_path):
    with pytest.raises(ConfigError, match="no CUDA device"):
        train_backbone(tiny_config(tmp_path / "run", device="cuda"), show_progress=False)
    assert not (tmp_path / "run").exists()


def test_seed_and_cutout_change_the_weights(tiny_cifar, tmp_path):
    runs = {"s0": {}, "s1": {"seed": 1}, "cutout": {"cutout": 16}}
    for name, overrides in runs.items():
        train_backbone(tiny_config(tmp_path / name, epochs=1, **overrides), show_progress=False)
    base = load_tensors(tmp_path / "s0" / "model.safetensors")["classifier.2.weight"]
    for name in ("s1", "cutout"):
        assert not torch.equal(base, load_tensors(tmp_path / name / "model.safetensors")["classifier.2.weight"])


def test_refuses_to_overwrite_or_resume_with_another_config(tiny_cifar, tmp_path):
    train_backbone(tiny_config(tmp_path / "run"), stop_after=1, show_progress=False)
    with pytest.raises(CheckpointError, match="--resume"):
        train_backbone(tiny_config(tmp_path / "run"), show_progress=False)
    with pytest.raises(CheckpointError, match="different config"):
        train_backbone(tiny_config(tmp_path / "run", seed=5), resume=True, show_progress=False)
    # The thread count changes speed only: a run may resume under another one.
    resumed = train_backbone(tiny_config(tmp_path / "run", threads=2), resume=True, show_progress=False)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train_backbone(tiny_config(tmp_path / "empty"), resume=True, show_progress=False)


def test_corrupt_checkpoint_is_detected(tiny_cifar, tmp_path):
    train_backbone(tiny_config(tmp_path / "run"), stop_after=1, show_progress=False)
    weights = next((tmp_path / "run").glob("checkpoint-*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-100] + b"\0" * 100)
    with pytest.raises(CheckpointError, match="SHA-256"):
        train_backbone(tiny_config(tmp_path / "run"), resume=True, show_progress=False)


def test_config_validation(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("model: resnet32\nepochs: 3\noptimizer:\n  lr_max: 0.1\n")
    cfg = load_config(good, BackboneTrainConfig)
    assert cfg.model == "resnet32" and cfg.epochs == 3 and cfg.optimizer.lr_max == 0.1 and cfg.batch_size == 128
    for text, problem in [
        ("epochs: -1\n", "epochs"),
        ("cutout: -4\n", "cutout"),
        ("epoch: 3\n", "epoch"),  # a typo is an error, not a silent default
        ("optimizer:\n  lr_max: 0\n", "optimizer.lr_max"),
        ("- just a list\n", "mapping"),
        ("model: [unclosed\n", "not valid YAML"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=problem.replace(".", r"\.")):
            load_config(bad, BackboneTrainConfig)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml", BackboneTrainConfig)


def test_shipped_backbone_configs_validate():
    from pathlib import Path
    configs = sorted(Path(__file__).resolve().parents[1].joinpath("configs", "backbones").glob("*.yaml"))
    assert configs
    for path in configs:
        load_config(path, BackboneTrainConfig)
