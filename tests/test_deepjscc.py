"""DeepJSCC: channel layers, power constraint, the float16 bytes path, bad bitstreams, tiny training
(resume, loss), shipping and the SNR-grid evaluation; golden frames of the shipped codec."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from grl_aecnn import zoo
from grl_aecnn.cli import app
from grl_aecnn.codecs.base import Codec
from grl_aecnn.codecs.channel import awgn, transmit
from grl_aecnn.codecs.deepjscc import DeepJsccCodec, evaluate_snr_grid, load_codecs, ship_codec
from grl_aecnn.codecs.deepjscc.model import DeepJscc
from grl_aecnn.codecs.deepjscc.training import AdamStage, DeepJsccConfig, train_level
from grl_aecnn.config import load_config
from grl_aecnn.data import CIFAR10_MEAN, CIFAR10_STD, iterate_batches, load_cifar10
from grl_aecnn.entropy import pack_frame, unpack_frame
from grl_aecnn.errors import BitstreamError, CheckpointError, ConfigError
from grl_aecnn.nets import build_model
from grl_aecnn.nets.training import train_backbone
from grl_aecnn.store import load_tensors
from grl_aecnn.zoo import ZOO_DIR
from tests.conftest import make_images, write_imagefolder_zip
from tests.test_training import tiny_config

NAME = "deepjscc-resnet20-cifar10"
GOLDEN = Path(__file__).parent / "golden" / "deepjscc_resnet20_cifar10.json"
CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "codecs").glob("deepjscc-L*.yaml"))


@pytest.fixture(scope="module")
def untrained() -> DeepJsccCodec:
    torch.manual_seed(0)
    backbone = build_model("resnet20").eval()
    return DeepJsccCodec(backbone, DeepJscc(8, 8, CIFAR10_MEAN, CIFAR10_STD), level=3, channel="awgn")


def test_codec_protocol_and_sizes(untrained):
    assert isinstance(untrained, Codec) and untrained.split is None and untrained.codec_id == "deepjscc"
    assert untrained.symbols == 256 and untrained.bandwidth_ratio == pytest.approx(1 / 12)
    assert untrained.device_flops > 0 and untrained.server_flops > untrained.device_flops
    # float16 I/Q, and a 15-byte frame overhead (the dim 256 and the payload length take 2-byte varints)
    assert len(untrained.encode(torch.randn(3, 32, 32))) == 4 * 256 + 15


def test_power_constraint(untrained):
    symbols = untrained.encode_symbols(3 * torch.randn(16, 3, 32, 32) + 1)
    assert symbols.shape == (16, 256) and symbols.is_complex()
    assert torch.allclose(symbols.abs().square().mean(1), torch.ones(16), atol=1e-5)


def test_awgn_noise_power_and_high_snr():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1024, dtype=torch.complex64)
    x = x / x.abs().square().mean(1, keepdim=True).sqrt()
    for snr in (0.0, 10.0, 20.0):
        noise = transmit(x, snr, "awgn", g) - x
        assert float(noise.abs().square().mean()) == pytest.approx(10 ** (-snr / 10), rel=0.03)
        assert float(noise.real.var()) == pytest.approx(float(noise.imag.var()), rel=0.05)
    assert torch.allclose(transmit(x, 120.0, "awgn", g), x, atol=1e-4)
    real = torch.rand(8, 4, 8, 8)  # real values: SNR against each sample's mean power
    assert float((awgn(real, 10.0, g) - real).square().mean() / real.square().mean()) == pytest.approx(0.1, rel=0.1)


def test_high_snr_is_noiseless(untrained):
    x = torch.randn(4, 3, 32, 32)
    symbols = untrained.encode_symbols(x)
    clean = untrained.decode_symbols(symbols)
    received = transmit(symbols, 100.0, "awgn", torch.Generator().manual_seed(1))
    assert torch.allclose(untrained.decode_symbols(received), clean, atol=1e-3)
    assert torch.allclose(untrained.decode_symbols(symbols[0]), clean[0], atol=1e-5)


def test_rayleigh_is_one_gain_per_image_and_seeded():
    x = torch.ones(3, 500, dtype=torch.complex64)
    a = transmit(x, 200.0, "rayleigh", torch.Generator().manual_seed(5))
    b = transmit(x, 200.0, "rayleigh", torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    for row in a:  # without noise every symbol of an image sees the same complex gain
        assert torch.allclose(row, row[0].expand_as(row), atol=1e-6)
    assert not torch.allclose(a[0], a[1])
    with pytest.raises(ValueError, match="channel"):
        transmit(x, 10.0, "bsc")


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_bytes_round_trip_is_float16_symbols(untrained, seed):
    image = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(seed))
    data = untrained.encode(image)
    frame = unpack_frame(data, "deepjscc")
    assert frame.level == 3 and frame.shape == (256, 2)
    symbols = untrained.encode_symbols(image)
    wire = torch.view_as_complex(torch.view_as_real(symbols).half().float().contiguous())
    assert torch.equal(untrained.frame_symbols(data), wire)
    assert torch.allclose(untrained.decode(data), untrained.decode_symbols(wire), atol=1e-5)


def test_batch_paths_equal_one_image_paths(untrained):
    x = torch.randn(3, 3, 32, 32)
    frames = untrained.encode_batch(x)
    assert frames == [untrained.encode(image) for image in x]
    assert torch.allclose(untrained.decode_batch(frames), torch.stack([untrained.decode(f) for f in frames]), atol=1e-5)


def test_bad_bitstreams_raise_bitstream_error(untrained):
    data = untrained.encode(torch.randn(3, 32, 32))
    other = DeepJsccCodec(untrained.backbone, untrained.model, level=2, channel="awgn")
    with pytest.raises(BitstreamError, match="level"):
        other.decode(data)
    for bad in (data[:-3], b"", data + b"\0"):
        with pytest.raises(BitstreamError):
            untrained.decode(bad)
    # A forged frame with a valid CRC but an infinite symbol.
    pairs = np.zeros((256, 2), dtype="<f2")
    pairs[7, 1] = np.inf
    with pytest.raises(BitstreamError, match="non-finite"):
        untrained.decode(pack_frame("deepjscc", 3, (256, 2), pairs.tobytes()))
    rng = np.random.default_rng(0)
    for _ in range(200):
        mutated = bytearray(data)
        for pos in rng.integers(0, len(mutated), size=rng.integers(1, 4)):
            mutated[pos] = rng.integers(0, 256)
        try:
            logits = untrained.decode(bytes(mutated))
        except BitstreamError:
            continue
        assert logits.shape == (10,) and torch.isfinite(logits).all()


def level_config(out, level, code_channels, epochs=1, task=True) -> DeepJsccConfig:
    return DeepJsccConfig(level=level, code_channels=code_channels, width=8, backbone="tiny-resnet20",
                          train=AdamStage(epochs=epochs, lr=1e-2, batch_size=4),
                          task=AdamStage(epochs=1, lr=1e-3, batch_size=8) if task else None,
                          test_limit=8, threads=1, output_dir=str(out))


def smooth_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """4x4 random colour blocks blown up to 32x32: unlike pixel noise, an autoencoder can learn them."""
    low, labels = make_images(n, seed, size=4)
    return np.repeat(np.repeat(low, 8, axis=1), 8, axis=2), labels


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deepjscc")
    write_imagefolder_zip(tmp / "data" / "cifar10-jpeg" / "train.zip", *smooth_images(40, seed=41))
    write_imagefolder_zip(tmp / "data" / "cifar10-jpeg" / "test.zip", *smooth_images(10, seed=42))
    (tmp / "zoo").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRL_AECNN_DATA", str(tmp / "data"))
        mp.setenv("XDG_CACHE_HOME", str(tmp / "cache"))
        mp.setattr(zoo, "ZOO_DIR", tmp / "zoo")
        train_backbone(tiny_config(tmp / "backbone", epochs=1, batch_size=8, zoo_name="tiny-resnet20"),
                       show_progress=False)
        zoo.add_to_zoo(tmp / "backbone")
        card = train_level(level_config(tmp / "codec", 1, 4, epochs=3), show_progress=False)
        yield {"tmp": tmp, "card": card}


def test_training_lowers_the_loss_and_resumes(tiny):
    losses = [h["train_loss"] for h in tiny["card"]["history"]["stage1"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    before = load_tensors(tiny["tmp"] / "codec" / "level001" / "level.safetensors")
    again = train_level(level_config(tiny["tmp"] / "codec", 1, 4, epochs=3), show_progress=False)
    after = load_tensors(tiny["tmp"] / "codec" / "level001" / "level.safetensors")
    assert again["history"] == tiny["card"]["history"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_cli_train_ship_and_eval_channel(tiny, tmp_path):
    tmp = tiny["tmp"]
    config = tmp_path / "deepjscc.yaml"
    config.write_text(yaml.safe_dump(level_config(tmp / "codec", 2, 2, task=False).model_dump(mode="json")))
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "codec", "--config", str(config)])
    assert trained.exit_code == 0, trained.output
    assert "deepjscc level 2: 64 complex symbols" in trained.output
    shipped = runner.invoke(app, ["codec", "ship", "--codec", "deepjscc", "--base-dir", str(tmp / "codec"),
                                  "--name", "deepjscc-tiny-resnet20"])
    assert shipped.exit_code == 0 and "[1, 2]" in shipped.output, shipped.output
    codecs = load_codecs("deepjscc-tiny-resnet20")
    assert [c.symbols for c in codecs] == [128, 64]
    out = tmp_path / "snr.json"
    result = runner.invoke(app, ["codec", "eval-channel", "--model", "tiny-resnet20", "--snr", "0", "--snr", "20",
                                 "--channel", "awgn", "--channel", "rayleigh", "--json", str(out)])
    assert result.exit_code == 0, result.output
    measured = json.loads(out.read_text())
    assert measured["n"] == 10 and [(r["level"], r["channel"]) for r in measured["levels"]] == [
        (1, "awgn"), (1, "rayleigh"), (2, "awgn"), (2, "rayleigh")]
    assert all([p["snr_db"] for p in r["snr"]] == [0.0, 20.0] for r in measured["levels"])
    # Seeded noise: the same grid point gives the same figure again, and the CLI's figures are these.
    test = load_cifar10("test")
    level1_awgn = next(r for r in measured["levels"] if (r["level"], r["channel"]) == (1, "awgn"))
    assert level1_awgn["snr"] == evaluate_snr_grid(codecs[0], test, (0.0, 20.0), "awgn", seed=0)
    # the digital size is the real frame: 4 bytes per complex symbol (float16 I/Q) plus header and CRC
    image = next(iterate_batches(test, 1))[0][0]
    assert {int(k): v for k, v in measured["bytes_per_image_digital"].items()} == {
        c.level: len(c.encode(image)) for c in codecs}
    assert all(v > 4 * c.symbols for c, v in zip(codecs, measured["bytes_per_image_digital"].values()))
    first = evaluate_snr_grid(codecs[0], test, (5.0,), "awgn", seed=3)
    assert evaluate_snr_grid(codecs[0], test, (5.0,), "awgn", seed=3) == first
    assert 0 <= first[0]["top1"] <= 1 and first[0]["psnr_db"] > 0


def test_warm_start_from_a_shipped_codec(tiny, tmp_path):
    tmp = tiny["tmp"]
    parent = ship_codec(tmp / "codec", "deepjscc-tiny-parent")
    warm = level_config(tmp_path / "warm", 1, 4).model_copy(update={
        "train": None, "task": AdamStage(epochs=1, lr=1e-12, batch_size=8), "init_from": "deepjscc-tiny-parent"})
    card = train_level(warm, show_progress=False)
    assert list(card["history"]) == ["stage2"]
    assert card["init_from"]["weights_sha256"] == parent["weights_sha256"] and card["init_from"]["level"] == 1
    before = load_tensors(tmp / "codec" / "level001" / "level.safetensors")
    after = load_tensors(tmp_path / "warm" / "level001" / "level.safetensors")
    assert all(torch.allclose(before[k].float(), after[k].float(), atol=1e-6) for k in before)
    # The lineage travels into the shipped card.
    shipped = ship_codec(tmp_path / "warm", "deepjscc-tiny-child")
    assert shipped["levels"][0]["init_from"]["codec"] == "deepjscc-tiny-parent"
    with pytest.raises(CheckpointError, match="no level 1 with code_channels 6"):
        train_level(warm.model_copy(update={"code_channels": 6, "output_dir": str(tmp_path / "bad")}),
                    show_progress=False)
    with pytest.raises(CheckpointError, match="width at most 4"):
        train_level(warm.model_copy(update={"width": 4, "output_dir": str(tmp_path / "narrower")}),
                    show_progress=False)
    # A wider child starts from the parent's function: its top-1 after a no-op epoch is the parent's.
    wide = train_level(warm.model_copy(update={"width": 16, "output_dir": str(tmp_path / "wide")}),
                       show_progress=False)
    assert wide["width"] == 16 and wide["init_from"]["width"] == 8
    assert wide["history"]["stage2"][-1]["test_top1"] == card["history"]["stage2"][-1]["test_top1"]
    with pytest.raises(ValueError, match="only a warm start"):
        DeepJsccConfig(level=1, code_channels=4, train=None)


def test_a_parent_trained_on_other_backbone_weights_needs_the_opt_in(tiny, tmp_path, monkeypatch):
    """The retrain on a new backbone: a zoo overlay holds other weights of the backbone's name."""
    tmp = tiny["tmp"]
    parent = ship_codec(tmp / "codec", "deepjscc-tiny-parent")
    monkeypatch.setenv("GRL_AECNN_ZOO", str(tmp_path / "overlay"))
    (tmp_path / "overlay").mkdir()
    train_backbone(tiny_config(tmp_path / "backbone", epochs=1, batch_size=8, zoo_name="tiny-resnet20", seed=5),
                   show_progress=False)
    zoo.add_to_zoo(tmp_path / "backbone")
    warm = level_config(tmp_path / "warm", 1, 4).model_copy(update={
        "train": None, "task": AdamStage(epochs=1, lr=1e-3, batch_size=8), "init_from": "deepjscc-tiny-parent"})
    with pytest.raises(CheckpointError, match="init_from_other_backbone"):
        train_level(warm, show_progress=False)
    card = train_level(warm.model_copy(update={"init_from_other_backbone": True}), show_progress=False)
    assert card["init_from"]["backbone_weights_sha256"] == parent["backbone_weights_sha256"]
    assert parent["backbone_weights_sha256"] != zoo.load_card("tiny-resnet20")["weights_sha256"]
    assert ship_codec(tmp_path / "warm", "deepjscc-tiny-child")["backbone_weights_sha256"] == \
        zoo.load_card("tiny-resnet20")["weights_sha256"]


def test_widening_keeps_the_function_and_lets_the_new_channels_learn():
    torch.manual_seed(3)
    narrow, wide = DeepJscc(8, 8, CIFAR10_MEAN, CIFAR10_STD), DeepJscc(8, 24, CIFAR10_MEAN, CIFAR10_STD)
    wide.load_narrower(narrow)
    x = torch.randn(4, 3, 32, 32)
    symbols = narrow.symbols(x)
    assert torch.allclose(wide.symbols(x), symbols, atol=1e-6)
    reconstruction = wide.reconstruct(symbols, (3, 32, 32))
    assert torch.allclose(reconstruction, narrow.reconstruct(symbols, (3, 32, 32)), atol=1e-6)
    reconstruction.square().mean().backward()
    # The zeroed weights from the new channels into the original filters do get gradients.
    assert wide.decoder[-2].weight.grad[4:].abs().sum() > 0  # transposed conv (in, out, k, k); 4 = narrow half
    with pytest.raises(ValueError, match="same code_channels"):
        wide.load_narrower(DeepJscc(4, 8, CIFAR10_MEAN, CIFAR10_STD))


def test_configs_validate():
    assert len(CONFIGS) >= 3
    ratios = [load_config(path, DeepJsccConfig).code_channels / 96 for path in CONFIGS]
    assert sorted(ratios) == pytest.approx([1 / 12, 1 / 6, 1 / 3])


def test_continuation_configs_warm_start_every_level():
    configs = [load_config(path, DeepJsccConfig) for path in sorted(CONFIGS[0].parent.glob("deepjscc-more-L*.yaml"))]
    parents = {c.level: c for c in map(lambda p: load_config(p, DeepJsccConfig), CONFIGS)}
    assert [c.level for c in configs] == sorted(parents)
    for c in configs:
        assert c.init_from == NAME and c.train is None and c.task is not None
        assert (c.code_channels, c.width, c.snr_train_db) == (parents[c.level].code_channels, parents[c.level].width,
                                                             parents[c.level].snr_train_db)


def test_retask_configs_continue_every_shipped_level_in_bf16():
    """The retrain on a new backbone: each shipped level, warm-started at its own shape, task epochs only."""
    shipped = {lv["level"]: lv for lv in zoo.load_card(NAME, ZOO_DIR)["levels"]}
    configs = [load_config(p, DeepJsccConfig) for p in sorted(CONFIGS[0].parent.glob("deepjscc-retask-L*.yaml"))]
    assert [c.level for c in configs] == sorted(shipped)
    for c in configs:
        assert c.init_from == NAME and c.train is None and c.task.precision == "bf16"
        assert (c.code_channels, c.width) == (shipped[c.level]["code_channels"], shipped[c.level]["width"])


def test_bf16_stages_train_like_fp32(tiny, tmp_path):
    def config(out, precision):
        cfg = level_config(out, 2, 4)
        return cfg.model_copy(update={s: getattr(cfg, s).model_copy(update={"precision": precision})
                                      for s in ("train", "task")})

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRL_AECNN_DATA", str(tiny["tmp"] / "data"))
        mp.setattr(zoo, "ZOO_DIR", tiny["tmp"] / "zoo")
        bf16 = train_level(config(tmp_path / "bf16", "bf16"), show_progress=False)
        fp32 = train_level(config(tmp_path / "fp32", "fp32"), show_progress=False)
    for stage in ("stage1", "stage2"):
        a, b = bf16["history"][stage][0]["train_loss"], fp32["history"][stage][0]["train_loss"]
        assert a != b and a == pytest.approx(b, rel=0.1), stage


def test_bad_config_is_a_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("codec: deepjscc\nlevel: 1\ncode_channels: 7\n")
    with pytest.raises(ConfigError, match="even"):
        load_config(path, DeepJsccConfig)


def golden_symbols(codec) -> torch.Tensor:
    """Complex symbols on a grid float16 holds exactly: the frame bytes depend on no float arithmetic."""
    rng = np.random.default_rng(777 + codec.level)
    pairs = rng.integers(-2048, 2048, size=(codec.symbols, 2)).astype(np.float32) / 1024
    return torch.view_as_complex(torch.from_numpy(pairs))


def current_digests() -> dict[str, dict]:
    """Per level: the frame layout, and labels that depend on the shipped weights of both sides: the
    server's answer to 16 fixed frames, and the round trip (device encoder, server) of 8 fixed images."""
    out = {}
    for c in load_codecs(NAME, ZOO_DIR):
        rng = np.random.default_rng(100 + c.level)
        frames = [c.frame(torch.view_as_complex(torch.from_numpy(
            rng.integers(-2048, 2048, size=(c.symbols, 2)).astype(np.float32) / 1024))) for _ in range(16)]
        images = torch.from_numpy(rng.standard_normal((8, *c.image_shape)).astype(np.float32))
        out[str(c.level)] = {
            "frame_sha256": hashlib.sha256(c.frame(golden_symbols(c))).hexdigest(),
            "server_labels": [int(c.decode(f).argmax()) for f in frames],
            "round_trip_labels": c.decode_symbols(c.encode_symbols(images)).argmax(1).tolist(),
        }
    return out


def test_golden_frames_of_the_shipped_codec():
    assert current_digests() == json.loads(GOLDEN.read_text())


def test_golden_frame_layout(untrained):
    data = untrained.frame(golden_symbols(untrained))
    assert hashlib.sha256(data).hexdigest() == "a520d920121a73cba75b9b2c6da146cb35f7eaee554e72cbd2c961fd9e24e1c1"


if __name__ == "__main__":  # python -m tests.test_deepjscc: regenerate after shipping new ratios
    GOLDEN.write_text(json.dumps(current_digests(), indent=2) + "\n")
    print(f"wrote {GOLDEN}")
