"""Smoke tests of every command with tiny budgets; each asserts what the command produced."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import grl_aecnn
from grl_aecnn.cli import app
from grl_aecnn.zoo import load_card
from tests.conftest import SHARED_DATA, shared_cifar_available

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and grl_aecnn.__version__ in result.output


def test_nets_info_json(tmp_path):
    out = tmp_path / "info.json"
    result = runner.invoke(app, ["nets", "info", "--model", "resnet20", "--json", str(out)])
    assert result.exit_code == 0, result.output
    info = json.loads(out.read_text())
    assert info["model"] == "resnet20"
    assert [s["name"] for s in info["splits"]] == ["stem", "layer1", "layer2", "layer3"]
    assert set(info["splits"][0]) == {"name", "shape", "bytes_fp32", "head_flops", "tail_flops"}
    assert info["splits"][2]["shape"] == [32, 16, 16] and info["splits"][2]["bytes_fp32"] == 32768


def test_unknown_model_is_a_clean_error():
    result = runner.invoke(app, ["nets", "info", "--model", "vgg"])
    assert result.exit_code == 2 and "unknown model" in result.output


def test_train_backbone_stop_and_resume(tiny_cifar, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(f"epochs: 2\nbatch_size: 16\nthreads: 1\nzoo_name: tiny\noutput_dir: {tmp_path / 'run'}\n")
    first = runner.invoke(app, ["train", "backbone", "--config", str(config), "--stop-after", "1"])
    assert first.exit_code == 0, first.output
    assert "--resume" in first.output and not (tmp_path / "run" / "card.json").exists()
    # --device names where it trains, not what: the CPU checkpoint resumes under it
    second = runner.invoke(app, ["train", "backbone", "--config", str(config), "--resume", "--device", "cpu"])
    assert second.exit_code == 0, second.output
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    assert card["epochs"] == 2 and len(card["history"]) == 2


def test_train_backbone_bad_config(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("epochs: zero\n")
    result = runner.invoke(app, ["train", "backbone", "--config", str(config)])
    assert result.exit_code == 2 and "epochs" in result.output
    config.write_text("epochs: 1\n")
    result = runner.invoke(app, ["train", "backbone", "--config", str(config), "--device", "tpu"])
    assert result.exit_code == 2 and "--device must be cpu or cuda" in result.output


def test_zoo_add_ships_a_finished_run_and_refuses_a_bad_name(tiny_cifar, tmp_path, monkeypatch):
    from grl_aecnn import zoo
    from grl_aecnn.nets.training import train_backbone
    from tests.test_training import tiny_config
    run = tmp_path / "run"
    card = train_backbone(tiny_config(run, epochs=1, zoo_name="tiny-resnet20"), show_progress=False)
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path / "zoo")
    (tmp_path / "zoo").mkdir()
    result = runner.invoke(app, ["zoo", "add", str(run)])
    assert result.exit_code == 0 and f"added tiny-resnet20 (top-1 {card['top1']:.4f})" in result.output
    assert [c["name"] for c in zoo.list_models()] == ["tiny-resnet20"]
    (run / "card.json").write_text(json.dumps({**card, "name": "../escape"}))
    result = runner.invoke(app, ["zoo", "add", str(run)])
    assert result.exit_code == 2 and "not a zoo name" in result.output


def test_zoo_list(tmp_path):
    out = tmp_path / "zoo.json"
    result = runner.invoke(app, ["zoo", "list", "--json", str(out)])
    assert result.exit_code == 0 and "resnet20-cifar10" in result.output
    assert "resnet20-cifar10" in [m["name"] for m in json.loads(out.read_text())["models"]]


@pytest.mark.skipif(not shared_cifar_available(), reason="the CIFAR-10 JPEG copy is not beside the checkout")
def test_eval_backbone_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("GRL_AECNN_DATA", str(SHARED_DATA))
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", "backbone", "--model", "resnet20-cifar10", "--limit", "500", "--json", str(out)])
    assert result.exit_code == 0, result.output
    measured = json.loads(out.read_text())
    assert measured["model"] == "resnet20-cifar10" and measured["dataset"] == "cifar10" and measured["n"] == 500
    # exactly the shipped model on the same fixed 500 images (and near its full-set figure)
    from grl_aecnn.data import load_cifar10
    from grl_aecnn.nets.training import evaluate
    from grl_aecnn.zoo import load_backbone
    assert measured["top1"] == evaluate(load_backbone("resnet20-cifar10"), load_cifar10("test").take(500))
    assert abs(measured["top1"] - load_card("resnet20-cifar10")["top1"]) < 0.05


def test_eval_backbone_without_data(isolated_data):
    result = runner.invoke(app, ["eval", "backbone", "--model", "resnet20-cifar10"])
    assert result.exit_code == 2 and "not found" in result.output


def test_data_fetch_finds_offline_copy(tiny_cifar):
    result = runner.invoke(app, ["data", "fetch", "cifar10"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["test_n"] == 40


def test_codec_compare_and_profile_commands(tiny_cifar, tmp_path):
    out = tmp_path / "compare.json"
    result = runner.invoke(app, ["codec", "compare", "--limit", "6", "--json", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["n"] == 6 and {"aecnn", "jpeg", "png", "raw"} <= set(summary["curves"])
    assert all(set(r) >= {"level", "bytes_mean", "top1"} for rows in summary["curves"].values() for r in rows)
    raw, png = summary["curves"]["raw"][0], summary["curves"]["png"][0]
    assert raw["bytes_mean"] == 3087  # 32x32x3 pixels in a frame (layout pinned in test_image_codecs)
    assert png["top1"] == raw["top1"]  # both lossless (the test images are noise: PNG is not smaller here)
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if summary["deepjscc"]:
        assert out.with_suffix(".snr.png").exists()
        assert {"bandwidth_ratio", "snr_db", "top1"} <= set(summary["deepjscc"][0])
    stem = tmp_path / "prof" / "p"
    config = tmp_path / "profile.yaml"
    config.write_text("codecs: [png, jpeg]\nlatency_samples: 2\n")
    result = runner.invoke(app, ["profile", "build", "--config", str(config), "--limit", "5", "--output", str(stem)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["profile", "show", str(stem) + ".json"])
    assert result.exit_code == 0 and "jpeg:q50" in result.output and "5 test samples" in result.output
    replaced = tmp_path / "prof" / "replaced"
    result = runner.invoke(app, ["profile", "build", "--config", str(config), "--codec", "jpeg", "--extend",
                                 str(stem) + ".json", "--replace", "--output", str(replaced)])
    assert result.exit_code == 0, result.output
    names = lambda path: [o["name"] for o in json.loads(path.with_suffix(".json").read_text())["options"]]  # noqa: E731
    assert names(replaced) == names(stem)  # jpeg measured again, in its old place
    result = runner.invoke(app, ["profile", "build", "--config", str(config), "--replace", "--output", str(replaced)])
    assert result.exit_code != 0 and "--replace needs --extend" in result.output
    summary_out = tmp_path / "from-profile.json"
    result = runner.invoke(app, ["codec", "compare", "--profile", str(stem) + ".json", "--json", str(summary_out)])
    assert result.exit_code == 0, result.output
    from_profile = json.loads(summary_out.read_text())
    assert from_profile["n"] == 5 and set(from_profile["curves"]) == {"jpeg", "png"}
    (stem.with_suffix(".npz")).write_bytes(b"garbage")
    result = runner.invoke(app, ["profile", "show", str(stem) + ".json"])
    assert result.exit_code != 0 and "SHA-256" in result.output


def test_demo_and_evaluate_commands(tmp_path):
    result = runner.invoke(app, ["demo", "--slots", "3", "--output", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "demo" / "table.csv").read_text().splitlines()
    cells = [dict(zip(rows[0].split(","), r.split(","))) for r in rows[1:]]
    from grl_aecnn.config import load_config
    from grl_aecnn.experiments.evaluate import ExperimentConfig
    demo = load_config(Path(__file__).resolve().parents[1] / "configs" / "experiments" / "demo.yaml", ExperimentConfig)
    assert [c["policy"] for c in cells] == list(demo.policies) and "greedy-aecnn" in demo.policies
    assert all(0 <= float(c["avg_accuracy"]) <= float(c["reliability"]) <= 1 for c in cells)
    assert (tmp_path / "demo" / "avg_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    config = tmp_path / "exp.yaml"
    config.write_text("name: cli\nfactor: n_md\nvalues: [2, 4]\npolicies: [local, greedy]\nslots: 3\nseeds: [0]\n"
                      "output_dir: results/experiments/not-here\n")
    out = tmp_path / "exp.json"
    result = runner.invoke(app, ["evaluate", "--config", str(config), "--json", str(out), "--workers", "1",
                                 "--output", str(tmp_path / "exp")])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert json.loads((tmp_path / "exp" / "summary.json").read_text()) == summary  # --output wins over output_dir
    assert not Path("results/experiments/not-here").exists()
    assert summary["factor"] == "n_md" and [p["value"] for p in summary["points"]] == [2, 4]
    # every value, policy and seed was simulated: local's figures are the simulator's own
    from grl_aecnn.experiments.simulate import simulate_policy
    from grl_aecnn.mec.scenario import Scenario
    from grl_aecnn.policies.registry import default_profile
    profile, _ = default_profile(None)
    scenario = load_config(Path(__file__).resolve().parents[1] / "configs" / "scenarios" / "default.yaml", Scenario)
    local, _ = simulate_policy(scenario.replaced(n_md=4), profile, "local", 3, 0)
    assert summary["points"][1]["policies"]["local"]["avg_accuracy"] == local["avg_accuracy"]
    result = runner.invoke(app, ["evaluate", "--config", str(config), "--backend", "pigeon"])
    assert result.exit_code != 0 and "backend" in result.output
