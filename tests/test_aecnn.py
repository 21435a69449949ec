"""AECNN end to end on a tiny dataset: stages 1-4, shipping, loading, real bytes, bad bitstreams; the
prune-aware head (fixed ranking, nested masks, frozen tail, resume)."""

import copy
import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from grl_aecnn import zoo
from grl_aecnn.cli import app
from grl_aecnn.codecs.aecnn.codec import load_codecs, ship_codec
from grl_aecnn.codecs.aecnn.model import ChannelAttention, FeatureRecovery, PruneAwareHead
from grl_aecnn.codecs.aecnn.training import (AecnnBaseConfig, AecnnLevelConfig, PruneAwareStage, RateConstraint,
                                            RateStage, SgdStage, train_level)
from grl_aecnn.codecs.base import Codec
from grl_aecnn.data import load_cifar10, to_tensor
from grl_aecnn.entropy import unpack_frame
from grl_aecnn.errors import BitstreamError, CheckpointError
from grl_aecnn.nets.training import train_backbone
from grl_aecnn.store import load_tensors
from tests.conftest import make_images, write_imagefolder_zip
from tests.test_training import tiny_config

ONE_EPOCH = SgdStage(epochs=1, lr=0.01, batch_size=32)


def level_config(out, level, keep, bits, **base_overrides) -> AecnnLevelConfig:
    base = AecnnBaseConfig(backbone="tiny-resnet20", attention=ONE_EPOCH, output_dir=str(out), **base_overrides)
    return AecnnLevelConfig(level=level, keep_channels=keep, bits=bits, base=base, recovery=ONE_EPOCH,
                            finetune=ONE_EPOCH, recovery_hidden=8, threads=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("aecnn")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRL_AECNN_DATA", str(tmp / "data"))
        mp.setenv("XDG_CACHE_HOME", str(tmp / "cache"))
        write_imagefolder_zip(tmp / "data" / "cifar10-jpeg" / "train.zip", *make_images(80, seed=21))
        write_imagefolder_zip(tmp / "data" / "cifar10-jpeg" / "test.zip", *make_images(24, seed=22))
        (tmp / "zoo").mkdir()
        mp.setattr(zoo, "ZOO_DIR", tmp / "zoo")
        train_backbone(tiny_config(tmp / "backbone", epochs=1, zoo_name="tiny-resnet20"), show_progress=False)
        zoo.add_to_zoo(tmp / "backbone")
        cards = [train_level(level_config(tmp / "codec", level, keep, bits), show_progress=False)
                 for level, keep, bits in ((1, 8, 4), (2, 2, 2))]
        ship_codec(tmp / "codec", "aecnn-tiny-resnet20")
        yield {"tmp": tmp, "cards": cards, "codecs": load_codecs("aecnn-tiny-resnet20"), "test": load_cifar10("test")}


def test_levels_are_codecs_with_flops(trained):
    codecs = trained["codecs"]
    assert [c.level for c in codecs] == [1, 2]
    for codec in codecs:
        assert isinstance(codec, Codec) and codec.split == "layer2"
        assert codec.device_flops > 0 and codec.server_flops > 0
    assert codecs[0].symbol_shape == (8, 16, 16) and codecs[1].symbol_shape == (2, 16, 16)
    # Both levels keep the most important channels first, from the same ranking.
    assert trained["cards"][1]["keep"] == trained["cards"][0]["keep"][:2]


def test_bytes_round_trip_matches_the_tensor_path(trained):
    test = trained["test"]
    images = to_tensor(test.images[:6], test.mean, test.std)
    for codec in trained["codecs"]:
        for image in images:
            data = codec.encode(image)
            with torch.no_grad():
                symbols = codec.module.symbols(codec.base.features(image[None]))
                expected = codec.module.logits_from_symbols(symbols)[0]
            assert torch.equal(codec.decode(data), expected)
            frame = unpack_frame(data, "aecnn")
            assert frame.level == codec.level and frame.shape == codec.symbol_shape


def test_fewer_channels_and_bits_give_fewer_bytes(trained):
    test = trained["test"]
    images = to_tensor(test.images, test.mean, test.std)
    sizes = [np.mean([len(c.encode(x)) for x in images]) for c in trained["codecs"]]
    assert sizes[1] < sizes[0]


def test_bad_bitstreams_raise_bitstream_error(trained):
    high, low = trained["codecs"]
    image = to_tensor(trained["test"].images[:1], trained["test"].mean, trained["test"].std)[0]
    data = high.encode(image)
    with pytest.raises(BitstreamError, match="level"):
        low.decode(data)
    with pytest.raises(BitstreamError):
        high.decode(data[:-3])
    with pytest.raises(BitstreamError):
        high.decode(b"")
    rng = np.random.default_rng(0)
    for _ in range(300):
        mutated = bytearray(data)
        for pos in rng.integers(0, len(mutated), size=rng.integers(1, 4)):
            mutated[pos] = rng.integers(0, 256)
        try:
            logits = high.decode(bytes(mutated))
        except BitstreamError:
            continue
        assert logits.shape == (10,) and torch.isfinite(logits).all()


def test_stages_resume_instead_of_retraining(trained):
    tmp = trained["tmp"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(zoo, "ZOO_DIR", tmp / "zoo")
        mp.setenv("GRL_AECNN_DATA", str(tmp / "data"))
        again = train_level(level_config(tmp / "codec", 2, 2, 2), show_progress=False)
    first = trained["cards"][1]
    assert again["keep"] == first["keep"]
    assert again["history"] == first["history"]
    assert again["test_top1_tensor_path"] == first["test_top1_tensor_path"]


def test_other_base_config_is_refused(trained):
    tmp = trained["tmp"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(zoo, "ZOO_DIR", tmp / "zoo")
        with pytest.raises(CheckpointError, match="another base config"):
            train_level(level_config(tmp / "codec", 3, 4, 2, split="layer1"), show_progress=False)


def test_attention_and_recovery_shapes():
    attention = ChannelAttention(32, reduction=4)
    z = torch.rand(3, 32, 16, 16)
    w = attention.weights(z)
    assert w.shape == (3, 32) and bool(((w > 0) & (w < 1)).all())
    assert torch.allclose(attention(z), z * w[:, :, None, None])
    recovery = FeatureRecovery(torch.tensor([5, 0, 7]), channels=32, hidden=8)
    received = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        out = recovery(received)
    # Freshly built, the recovery is the zero-filled tensor with the received channels in place.
    assert out.shape == (2, 32, 16, 16)
    assert torch.equal(out[:, [5, 0, 7]], received) and float(out.abs().sum()) == pytest.approx(float(received.sum()))


def test_cli_train_ship_and_eval(trained, tmp_path):
    tmp = trained["tmp"]
    runner = CliRunner()
    config = tmp_path / "level9.yaml"
    config.write_text(yaml.safe_dump(level_config(tmp / "codec", 9, 3, 1).model_dump(mode="json")))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(zoo, "ZOO_DIR", tmp / "zoo")
        mp.setenv("GRL_AECNN_DATA", str(tmp / "data"))
        trained_level = runner.invoke(app, ["train", "codec", "--config", str(config)])
        assert trained_level.exit_code == 0, trained_level.output
        assert "level 9: 3 channels at 1 bits" in trained_level.output
        shipped = runner.invoke(app, ["codec", "ship", "--base-dir", str(tmp / "codec"), "--name", "aecnn-tiny-resnet20"])
        assert shipped.exit_code == 0 and "[1, 2, 9]" in shipped.output
        out = tmp_path / "eval.json"
        result = runner.invoke(app, ["codec", "eval", "--codec", "aecnn", "--model", "tiny-resnet20", "--limit", "10",
                                     "--json", str(out)])
        assert result.exit_code == 0, result.output
    measured = json.loads(out.read_text())
    assert measured["codec"] == "aecnn" and measured["n"] == 10 and [r["level"] for r in measured["levels"]] == [1, 2, 9]
    keys = {"level", "ratio", "bytes_mean", "bytes_median", "bytes_p95", "top1", "top1_drop", "encode_ms_median",
            "decode_ms_median", "device_flops", "server_flops"}
    for row in measured["levels"]:
        assert keys <= set(row)
        assert row["ratio"] == pytest.approx(measured["split_bytes_fp32"] / row["bytes_mean"])
        assert row["top1_drop"] == pytest.approx(measured["top1_uncompressed"] - row["top1"])
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_unknown_codec():
    result = CliRunner().invoke(app, ["codec", "eval", "--codec", "nope"])
    assert result.exit_code == 2 and "unknown codec" in result.output


PRUNE_AWARE = PruneAwareStage(epochs=1, lr=0.01, batch_size=32, keep_counts=[8, 4, 2], keep_weights=[1, 2, 1],
                              recovery_hidden=8, eval_keep=4, eval_images=16)


def prune_aware_config(out, level, keep, bits) -> AecnnLevelConfig:
    return level_config(out, level, keep, bits, prune_aware=PRUNE_AWARE)


@pytest.fixture(scope="module")
def prune_aware(trained):
    tmp = trained["tmp"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRL_AECNN_DATA", str(tmp / "data"))
        mp.setattr(zoo, "ZOO_DIR", tmp / "zoo")
        cards = [train_level(prune_aware_config(tmp / "pruned", level, keep, 2), show_progress=False)
                 for level, keep in ((1, 4), (2, 2))]
        ship_codec(tmp / "pruned", "aecnn-pruned-tiny-resnet20")
        yield {"tmp": tmp, "out": tmp / "pruned", "cards": cards, "codecs": load_codecs("aecnn-pruned-tiny-resnet20")}


def test_prune_aware_ranking_is_fixed_and_stored(prune_aware):
    out = prune_aware["out"]
    ranking = json.loads((out / "ranking.json").read_text())
    # The ranking comes from the stage-1 attention and stays the order of every level after the head changed.
    assert ranking["order"][:4] == [int(i) for i in torch.tensor(ranking["mean_attention"]).argsort(descending=True)[:4]]
    assert json.loads((out / "importance.json").read_text())["order"] == ranking["order"]
    assert [c["keep"] for c in prune_aware["cards"]] == [ranking["order"][:4], ranking["order"][:2]]


def test_prune_aware_reuses_a_stored_ranking(trained, tmp_path):
    tmp = trained["tmp"]
    (tmp_path / "base.safetensors").write_bytes((tmp / "codec" / "base.safetensors").read_bytes())
    stored = list(range(32))[::-1]
    (tmp_path / "ranking.json").write_text(json.dumps({"order": stored}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRL_AECNN_DATA", str(tmp / "data"))
        mp.setattr(zoo, "ZOO_DIR", tmp / "zoo")
        card = train_level(prune_aware_config(tmp_path, 1, 4, 2), show_progress=False)
    assert card["keep"] == stored[:4]


def test_prune_aware_masks_are_nested_and_each_tail_sees_only_its_count(prune_aware):
    head = PruneAwareHead(copy.deepcopy(prune_aware["codecs"][0].base), list(range(32))[::-1], [8, 4, 2], 2, 8,
                          (0.0, 0.999))
    assert [head.servers[str(k)].keep.tolist() for k in (8, 4, 2)] == [list(range(31, 23, -1)),
                                                                       [31, 30, 29, 28], [31, 30]]
    before = {k: {n: v.clone() for n, v in head.servers[k].level_state().items()} for k in ("8", "2")}
    features = torch.rand(4, 32, 16, 16, requires_grad=True)
    head.base.features = lambda x: features
    head.train()
    _, logits = head(torch.zeros(4, 3, 32, 32), keep=4)
    logits.sum().backward()
    # Only the four kept channels reach the server, and the other counts' tails keep their BN statistics.
    sent = features.grad.abs().sum((0, 2, 3)) > 0
    assert sent.nonzero().flatten().tolist() == [28, 29, 30, 31]
    assert all(torch.equal(v, before[k][n]) for k in before for n, v in head.servers[k].level_state().items())
    # The device head lives in `base`: the servers' head copies neither learn nor run.
    server = head.servers["4"]
    tail = server.net.tail_prefixes("layer2")
    assert all(p.requires_grad == n.startswith(tail) for n, p in server.net.named_parameters())


def test_prune_aware_stage_resumes_from_its_checkpoint(prune_aware):
    out = prune_aware["out"]
    trained_head = load_tensors(out / "prune_aware.safetensors")
    (out / "prune_aware.safetensors").unlink()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRL_AECNN_DATA", str(prune_aware["tmp"] / "data"))
        mp.setattr(zoo, "ZOO_DIR", prune_aware["tmp"] / "zoo")
        again = train_level(prune_aware_config(out, 1, 4, 2), show_progress=False)
    # All epochs were checkpointed, so nothing is trained again and the same head comes back.
    assert json.loads((out / "stage1b" / "state.json").read_text())["epochs_done"] == PRUNE_AWARE.epochs
    assert all(torch.equal(v, trained_head[k]) for k, v in load_tensors(out / "prune_aware.safetensors").items())
    assert again["history"] == prune_aware["cards"][0]["history"]


def test_prune_aware_codec_ships_the_trained_head(prune_aware):
    trained_head = load_tensors(prune_aware["out"] / "prune_aware.safetensors")
    for codec in prune_aware["codecs"]:
        assert all(torch.equal(v, trained_head[f"base.{k}"]) for k, v in codec.base.state_dict().items())
        image = torch.rand(3, 32, 32)
        with torch.no_grad():
            expected = codec.module.logits_from_symbols(codec.module.symbols(codec.base.features(image[None])))[0]
        assert torch.equal(codec.decode(codec.encode(image)), expected)


def test_prune_aware_level_must_match_a_trained_count(tmp_path):
    with pytest.raises(ValidationError, match="keep_counts"):
        prune_aware_config(tmp_path, 1, 3, 2)


def test_a_rate_stage_needs_an_own_head(tmp_path):
    cfg = prune_aware_config(tmp_path, 1, 4, 2).model_dump()
    cfg["rate_finetune"] = {**ONE_EPOCH.model_dump(), "rate": {"target_bits_per_symbol": 0.8}}
    with pytest.raises(ValidationError, match="needs device_finetune"):
        AecnnLevelConfig(**cfg)


@pytest.fixture(scope="module")
def own_head(prune_aware):
    """Level 2 of the prune-aware run given stage 5 afterwards: its own head, trained end to end."""
    tmp, out = prune_aware["tmp"], prune_aware["out"]
    cfg = prune_aware_config(out, 2, 2, 2).model_copy(update={"device_finetune": ONE_EPOCH})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRL_AECNN_DATA", str(tmp / "data"))
        mp.setattr(zoo, "ZOO_DIR", tmp / "zoo")
        card = train_level(cfg, show_progress=False)
        ship_codec(out, "aecnn-own-head-tiny-resnet20")
        yield {"card": card, "codecs": load_codecs("aecnn-own-head-tiny-resnet20"), "before": prune_aware["cards"][1]}


def test_device_finetune_resumes_stages_3_4_and_adds_stage_5(own_head):
    card, before = own_head["card"], own_head["before"]
    # Stages 3-4 were finished under the same settings: resumed, not retrained.
    assert card["history"]["stage3"] == before["history"]["stage3"]
    assert card["history"]["stage4"] == before["history"]["stage4"]
    assert len(card["history"]["stage5"]) == ONE_EPOCH.epochs and card["own_device_head"]
    assert card["test_top1_tensor_path"] == card["history"]["stage5"][-1]["test_top1"]


def test_level_with_its_own_head_ships_and_encodes_with_it(own_head, prune_aware):
    shared, own = own_head["codecs"]
    shared_head = load_tensors(prune_aware["out"] / "prune_aware.safetensors")
    level_head = load_tensors(prune_aware["out"] / "level002" / "level.safetensors")
    # Level 1 still runs the shared head; level 2 its own, which stage 5 moved away from the shared one.
    assert all(torch.equal(v, shared_head[f"base.{k}"]) for k, v in shared.base.state_dict().items())
    own_state = own.base.state_dict()
    device_keys = [k[len("device."):] for k in level_head if k.startswith("device.")]
    assert device_keys and all(torch.equal(own_state[k], level_head[f"device.{k}"]) for k in device_keys)
    assert not all(torch.equal(own_state[k], shared_head[f"base.{k}"]) for k in device_keys)
    # Only the head and attention are stored: the backbone's tail is server-side.
    tail = tuple(f"backbone.{p}" for p in own.base.backbone.tail_prefixes("layer2"))
    assert "backbone.stages.layer3." in tail and not any(k.startswith(tail) for k in device_keys)
    image = torch.rand(3, 32, 32)
    with torch.no_grad():
        expected = own.module.logits_from_symbols(own.module.symbols(own.base.features(image[None])))[0]
    assert torch.equal(own.decode(own.encode(image)), expected)


def test_a_card_that_disagrees_with_its_level_heads_is_refused(own_head, prune_aware, tmp_path):
    zoo_dir = prune_aware["tmp"] / "zoo"
    card = json.loads((zoo_dir / "aecnn-own-head-tiny-resnet20.json").read_text())
    card["levels"][1]["own_device_head"] = False
    (tmp_path / "tiny-resnet20.json").write_bytes((zoo_dir / "tiny-resnet20.json").read_bytes())
    (tmp_path / "tiny-resnet20.safetensors").write_bytes((zoo_dir / "tiny-resnet20.safetensors").read_bytes())
    (tmp_path / "bad.safetensors").write_bytes((zoo_dir / "aecnn-own-head-tiny-resnet20.safetensors").read_bytes())
    (tmp_path / "bad.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="own_device_head=False but the file has"):
        load_codecs("bad", tmp_path)


ALL_NEIGHBOURS = ["above", "left", "above_left", "above_right", "previous_channel"]
SIX_NEIGHBOURS = [*ALL_NEIGHBOURS, "above_above"]


@pytest.fixture(scope="module")
def rate_limited(prune_aware):
    """Level 1 of the prune-aware run given stages 5 and 6 (rate term), and a wider context model."""
    tmp, out = prune_aware["tmp"], prune_aware["out"]
    rate = RateStage(**ONE_EPOCH.model_dump(), rate=RateConstraint(target_bits_per_symbol=0.01, weight=50.0))
    cfg = prune_aware_config(out, 1, 4, 2).model_copy(update={
        "device_finetune": ONE_EPOCH, "rate_finetune": rate, "context_neighbours": ALL_NEIGHBOURS})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRL_AECNN_DATA", str(tmp / "data"))
        mp.setattr(zoo, "ZOO_DIR", tmp / "zoo")
        card = train_level(cfg, show_progress=False)
        ship_codec(out, "aecnn-rate-tiny-resnet20")
        codecs = load_codecs("aecnn-rate-tiny-resnet20")
        # The same level again with a sixth neighbour: stage 6's rate term counts under the neighbours, so
        # its checkpoint refuses to resume until it is removed; stages 3-5 resume.
        (cfg.level_dir / "level.json").unlink()
        six = cfg.model_copy(update={"context_neighbours": SIX_NEIGHBOURS})
        with pytest.raises(CheckpointError, match="stage6.*different config"):
            train_level(six, show_progress=False)
        shutil.rmtree(cfg.level_dir / "stage6")
        refit = train_level(six, show_progress=False)
        yield {"card": card, "codecs": codecs, "test": load_cifar10("test"), "before": prune_aware["cards"][0],
               "refit": refit, "stage6_state": json.loads((cfg.level_dir / "stage6" / "state.json").read_text())}


def test_a_level_with_a_rate_term_and_every_neighbour_ships_and_codes_with_its_context(rate_limited):
    card, before = rate_limited["card"], rate_limited["before"]
    # The neighbours only change the fitted entropy model: stages 3-4 resume unchanged.
    assert card["history"]["stage3"] == before["history"]["stage3"]
    assert len(card["history"]["stage5"]) == len(card["history"]["stage6"]) == 1
    assert card["test_top1_tensor_path"] == card["history"]["stage6"][-1]["test_top1"]
    assert 0 < card["history"]["stage6_estimated_bits_per_symbol"] <= 2  # 2-bit symbols
    assert card["entropy"]["neighbours"] == ALL_NEIGHBOURS and card["entropy"]["contexts"] == 5**5
    level = rate_limited["codecs"][0]
    test = rate_limited["test"]
    for image in to_tensor(test.images[:4], test.mean, test.std):
        data = level.encode(image)
        with torch.no_grad():
            expected = level.module.logits_from_symbols(level.module.symbols(level.base.features(image[None])))[0]
        assert torch.equal(level.decode(data), expected)


def test_other_neighbours_resume_stages_3_to_5_and_retrain_the_removed_rate_stage(rate_limited):
    card, refit = rate_limited["card"], rate_limited["refit"]
    assert all(refit["history"][s] == card["history"][s] for s in ("stage3", "stage4", "stage5"))
    assert rate_limited["stage6_state"]["config"]["context_neighbours"] == SIX_NEIGHBOURS
    assert refit["entropy"]["neighbours"] == SIX_NEIGHBOURS and refit["entropy"]["contexts"] == 5**6


def test_every_stage_trains_in_bf16_ships_and_resumes(trained, tmp_path):
    """bf16 autocast in all six stages: the shipped level's bytes decode to the tensor path, a second
    run resumes every stage instead of retraining, and the losses differ from fp32's."""
    bf16 = ONE_EPOCH.model_copy(update={"precision": "bf16"})
    base_bf16 = {"attention": bf16, "prune_aware": PRUNE_AWARE.model_copy(update={"precision": "bf16"})}
    rate = RateStage(**bf16.model_dump(), rate=RateConstraint(target_bits_per_symbol=0.5))

    def config(out, stages_bf16: bool) -> AecnnLevelConfig:
        stage = bf16 if stages_bf16 else ONE_EPOCH
        cfg = level_config(out, 1, 4, 2, prune_aware=PRUNE_AWARE)
        base = cfg.base.model_copy(update=base_bf16) if stages_bf16 else cfg.base
        return cfg.model_copy(update={"base": base, "recovery": stage, "finetune": stage, "device_finetune": stage,
                                      "rate_finetune": rate if stages_bf16 else rate.model_copy(
                                          update={"precision": "fp32"})})

    tmp = trained["tmp"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRL_AECNN_DATA", str(tmp / "data"))
        mp.setattr(zoo, "ZOO_DIR", tmp / "zoo")
        card = train_level(config(tmp_path / "bf16", True), show_progress=False)
        again = train_level(config(tmp_path / "bf16", True), show_progress=False)
        fp32 = train_level(config(tmp_path / "fp32", False), show_progress=False)
        ship_codec(tmp_path / "bf16", "aecnn-bf16-tiny-resnet20")
        (level,) = load_codecs("aecnn-bf16-tiny-resnet20")
    assert again["history"] == card["history"]
    stages = ("stage3", "stage4", "stage5", "stage6")
    assert [card["history"][s][0]["train_loss"] for s in stages] != [fp32["history"][s][0]["train_loss"] for s in stages]
    image = torch.rand(3, 32, 32)
    with torch.no_grad():
        expected = level.module.logits_from_symbols(level.module.symbols(level.base.features(image[None])))[0]
    assert torch.equal(level.decode(level.encode(image)), expected)


def test_shipped_recipe_configs_validate_and_share_their_base():
    """Every AECNN config validates; the levels of one output folder share one `base` (its stages 1-2
    are trained once for all); the fourth round is the third's recipe with every stage in bf16 (and level 5's
    stage 5 three times as long with a stronger stage-6 rate term, and a sixth context neighbour where a level sends at most 4 channels)."""
    from pathlib import Path

    from grl_aecnn.config import load_config
    folder = Path(__file__).parents[1] / "configs" / "codecs"
    rounds = {r: {int(p.stem.rsplit("L", 1)[1]): load_config(p, AecnnLevelConfig)
                  for p in folder.glob(f"aecnn-{r}-L*.yaml")} for r in ("r3", "r4")}
    assert sorted(rounds["r3"]) == sorted(rounds["r4"]) == list(range(1, 9))
    for levels in rounds.values():
        assert len({cfg.base.model_dump_json() for cfg in levels.values()}) == 1
    for level, r4 in rounds["r4"].items():
        stages = [r4.base.attention, r4.base.prune_aware, r4.recovery, r4.finetune, r4.device_finetune, r4.rate_finetune]
        assert {s.precision for s in stages if s is not None} == {"bf16"}
        as_fp32 = json.loads(r4.model_dump_json().replace('"bf16"', '"fp32"'))
        r3 = rounds["r3"][level].model_dump(mode="json")
        as_fp32["base"]["output_dir"] = r3["base"]["output_dir"]
        if level == 5:  # r3's 4 stage-5 epochs left level 5 4.31 points below the new backbone
            assert (r4.device_finetune.epochs, r3["device_finetune"]["epochs"]) == (12, 4)
            as_fp32["device_finetune"]["epochs"] = 4
            # and a stronger rate term for stage 6, which the longer stage 5 leaves at more bits
            rate, r3_rate = as_fp32["rate_finetune"]["rate"], r3["rate_finetune"]["rate"]
            assert rate["target_bits_per_symbol"] <= r3_rate["target_bits_per_symbol"] and rate["weight"] >= r3_rate["weight"]
            rate |= {k: r3_rate[k] for k in ("target_bits_per_symbol", "weight")}
        if r4.keep_channels <= 4:  # a 5^6-row table per channel stays small
            assert as_fp32["context_neighbours"] == [*r3["context_neighbours"], "above_above"]
            as_fp32["context_neighbours"] = r3["context_neighbours"]
        assert as_fp32 == r3, level
