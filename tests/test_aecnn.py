"""AECNN end to end on a tiny dataset: stages 1-4, shipping, loading, real bytes, bad bitstreams."""

import json

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from grl_aecnn import zoo
from grl_aecnn.cli import app
from grl_aecnn.codecs.aecnn.codec import load_codecs, ship_codec
from grl_aecnn.codecs.aecnn.model import ChannelAttention, FeatureRecovery
from grl_aecnn.codecs.aecnn.training import AecnnBaseConfig, AecnnLevelConfig, SgdStage, train_level
from grl_aecnn.codecs.base import Codec
from grl_aecnn.data import load_cifar10, to_tensor
from grl_aecnn.entropy import unpack_frame
from grl_aecnn.errors import BitstreamError, CheckpointError
from grl_aecnn.nets.training import train_backbone
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
        assert logits.shape == (10,)


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
