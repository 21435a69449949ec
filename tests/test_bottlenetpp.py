"""BottleNet++ on a tiny dataset (training stages, resume, shipping, real bytes, bad bitstreams), and
golden bytes under the shipped codec's models."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import grl_aecnn.codecs.training as codec_training
from grl_aecnn import zoo
from grl_aecnn.cli import app
from grl_aecnn.codecs.base import Codec
from grl_aecnn.codecs.bottlenetpp import load_codecs, ship_codec
from grl_aecnn.codecs.bottlenetpp.model import NoisyChannel
from grl_aecnn.codecs.bottlenetpp.training import BottleNetBaseConfig, BottleNetLevelConfig, train_level
from grl_aecnn.codecs.training import SgdStage
from grl_aecnn.config import load_config
from grl_aecnn.data import load_cifar10, to_tensor
from grl_aecnn.entropy import unpack_frame
from grl_aecnn.errors import BitstreamError, CheckpointError, ConfigError
from grl_aecnn.nets.training import train_backbone
from grl_aecnn.store import load_tensors
from grl_aecnn.zoo import ZOO_DIR
from tests.conftest import make_images, shipped_codec_goldens, write_imagefolder_zip
from tests.test_training import tiny_config

NAME = "bottlenetpp-resnet20-cifar10"
GOLDEN = Path(__file__).parent / "golden" / "bottlenetpp_resnet20_cifar10.json"
CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "codecs").glob("bottlenetpp-R*.yaml"))


def level_config(out, level, code_channels, stride, bits, epochs=1, **overrides) -> BottleNetLevelConfig:
    stage = SgdStage(epochs=epochs, lr=0.05, batch_size=32)
    return BottleNetLevelConfig(level=level, code_channels=code_channels, stride=stride, bits=bits,
                                base=BottleNetBaseConfig(backbone="tiny-resnet20", output_dir=str(out)),
                                autoencoder=stage, finetune=stage, threads=1, **overrides)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny backbone in a private zoo, and data for it; yields a context that sets both up."""
    tmp = tmp_path_factory.mktemp("bottlenetpp")
    write_imagefolder_zip(tmp / "data" / "cifar10-jpeg" / "train.zip", *make_images(40, seed=31))
    write_imagefolder_zip(tmp / "data" / "cifar10-jpeg" / "test.zip", *make_images(12, seed=32))
    (tmp / "zoo").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRL_AECNN_DATA", str(tmp / "data"))
        mp.setenv("XDG_CACHE_HOME", str(tmp / "cache"))
        mp.setattr(zoo, "ZOO_DIR", tmp / "zoo")
        train_backbone(tiny_config(tmp / "backbone", epochs=1, batch_size=8, zoo_name="tiny-resnet20"), show_progress=False)
        zoo.add_to_zoo(tmp / "backbone")
        cards = [train_level(level_config(tmp / "codec", level, c, s, b), show_progress=False)
                 for level, c, s, b in ((1, 8, 1, 4), (2, 2, 2, 2))]
        ship_codec(tmp / "codec", "bottlenetpp-tiny-resnet20")
        yield {"tmp": tmp, "mp": mp, "cards": cards, "codecs": load_codecs("bottlenetpp-tiny-resnet20"),
               "test": load_cifar10("test")}


def images(tiny, n=4):
    test = tiny["test"]
    return to_tensor(test.images[:n], test.mean, test.std)


def test_rates_are_codecs_with_flops(tiny):
    high, low = tiny["codecs"]
    for codec in (high, low):
        assert isinstance(codec, Codec) and codec.split == "layer2" and codec.codec_id == "bottlenetpp"
        assert codec.device_flops > 0 and codec.server_flops > 0
    assert high.symbol_shape == (8, 16, 16) and low.symbol_shape == (2, 8, 8)
    assert [c["symbol_shape"] for c in tiny["cards"]] == [[8, 16, 16], [2, 8, 8]]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), which=st.integers(0, 1))
def test_bytes_round_trip_equals_the_tensor_path(tiny, seed, which):
    codec = tiny["codecs"][which]
    image = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(seed))
    data = codec.encode(image)
    with torch.no_grad():
        symbols = codec.symbols_of(image[None])
        expected = codec.logits_of(symbols)[0]
    assert np.array_equal(codec.frame_symbols(data), symbols[0].numpy())
    assert torch.equal(codec.decode(data), expected)
    frame = unpack_frame(data, "bottlenetpp")
    assert frame.level == codec.level and frame.shape == codec.symbol_shape


def test_batch_paths_equal_one_image_paths(tiny):
    codec = tiny["codecs"][1]
    x = images(tiny)
    frames = codec.encode_batch(x)
    assert frames == [codec.encode(image) for image in x]
    assert torch.allclose(codec.decode_batch(frames), torch.stack([codec.decode(f) for f in frames]), atol=1e-5)


def test_lower_rate_gives_fewer_bytes(tiny):
    x = images(tiny, 12)
    high, low = (np.mean([len(d) for d in c.encode_batch(x)]) for c in tiny["codecs"])
    assert low < high


def test_bad_bitstreams_raise_bitstream_error(tiny):
    high, low = tiny["codecs"]
    data = high.encode(images(tiny, 1)[0])
    with pytest.raises(BitstreamError, match="level"):
        low.decode(data)
    for bad in (data[:-3], b"", data + b"\0"):
        with pytest.raises(BitstreamError):
            high.decode(bad)
    rng = np.random.default_rng(0)
    for _ in range(200):
        mutated = bytearray(data)
        for pos in rng.integers(0, len(mutated), size=rng.integers(1, 4)):
            mutated[pos] = rng.integers(0, 256)
        try:
            logits = high.decode(bytes(mutated))
        except BitstreamError:
            continue
        assert logits.shape == (10,) and torch.isfinite(logits).all()


def test_rerun_resumes_instead_of_retraining(tiny):
    again = train_level(level_config(tiny["tmp"] / "codec", 2, 2, 2, 2), show_progress=False)
    assert again["history"] == tiny["cards"][1]["history"]


def test_interrupted_training_resumes_to_identical_weights(tiny, monkeypatch):
    tmp = tiny["tmp"]
    straight = train_level(level_config(tmp / "straight", 3, 4, 2, 3, epochs=2), show_progress=False)
    real = codec_training.optimize_epoch
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # stage 1 done (2 epochs), die in the first epoch of stage 2
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(codec_training, "optimize_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_level(level_config(tmp / "resumed", 3, 4, 2, 3, epochs=2), show_progress=False)
    monkeypatch.setattr(codec_training, "optimize_epoch", real)
    resumed = train_level(level_config(tmp / "resumed", 3, 4, 2, 3, epochs=2), show_progress=False)
    a = load_tensors(tmp / "straight" / "level003" / "level.safetensors")
    b = load_tensors(tmp / "resumed" / "level003" / "level.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [h["train_loss"] for h in straight["history"]["stage1"]]
    assert [h["train_loss"] for h in resumed["history"]["stage1"]] == losses
    assert losses[-1] < losses[0]  # the autoencoder learns


def test_bf16_stages_through_the_noisy_channel_ship_a_codec_whose_bytes_decode(tiny, tmp_path):
    cfg = level_config(tmp_path / "bf16", 5, 4, 2, 3)
    bf16 = cfg.autoencoder.model_copy(update={"precision": "bf16"})
    card = train_level(cfg.model_copy(update={"autoencoder": bf16, "finetune": bf16}), show_progress=False)
    fp32 = train_level(level_config(tmp_path / "fp32", 5, 4, 2, 3), show_progress=False)
    assert card["history"]["stage1"][0]["train_loss"] != fp32["history"]["stage1"][0]["train_loss"]
    assert card["history"]["stage1"][0]["train_loss"] == pytest.approx(fp32["history"]["stage1"][0]["train_loss"], rel=0.1)
    ship_codec(tmp_path / "bf16", "bottlenetpp-bf16-tiny")
    (codec,) = load_codecs("bottlenetpp-bf16-tiny")
    for image in images(tiny, 2):
        with torch.no_grad():
            expected = codec.logits_of(codec.symbols_of(image[None]))[0]
        assert torch.equal(codec.decode(codec.encode(image)), expected)


def test_a_lost_feature_cache_is_made_again(tiny, tmp_path):
    """Staged runs commit cache.json but not the cache itself: a later rate recomputes it."""
    first = train_level(level_config(tmp_path / "c", 6, 2, 2, 2), show_progress=False)
    (tmp_path / "c" / "cache.safetensors").unlink()
    second = train_level(level_config(tmp_path / "c", 7, 2, 2, 3), show_progress=False)
    assert (tmp_path / "c" / "cache.safetensors").exists() and first["level"] == 6 and second["level"] == 7


def test_other_backbone_weights_are_refused(tiny, tmp_path):
    out = tmp_path / "codec"
    train_level(level_config(out, 4, 2, 2, 2), show_progress=False)
    card_path = tiny["tmp"] / "zoo" / "tiny-resnet20.json"
    card = json.loads(card_path.read_text())
    original = card_path.read_text()
    try:
        card_path.write_text(json.dumps({**card, "weights_sha256": "0" * 64}))
        with pytest.raises(CheckpointError, match="other tiny-resnet20 weights"):
            train_level(level_config(out, 5, 2, 2, 2), show_progress=False)
    finally:
        card_path.write_text(original)


def test_channel_layer_only_acts_in_training():
    code = torch.rand(4, 8, 8, 8)
    for kind in ("awgn", "erasure"):
        layer = NoisyChannel(kind, snr_db=10.0, erasure=0.5).train()
        assert not torch.equal(layer(code), code)
        assert torch.equal(layer.eval()(code), code)
    erased = NoisyChannel("erasure", 0.0, 0.5).train()(code)
    assert 0.3 < float((erased == 0).float().mean()) < 0.7


def test_configs_validate():
    assert len(CONFIGS) >= 4
    levels = [load_config(path, BottleNetLevelConfig) for path in CONFIGS]
    assert len({cfg.base for cfg in levels}) == 1  # one shared feature cache
    symbols = [cfg.code_channels * (16 // cfg.stride) ** 2 * cfg.bits for cfg in levels]
    assert symbols == sorted(symbols, reverse=True)


def test_bad_config_is_a_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("codec: bottlenetpp\nlevel: 1\ncode_channels: 4\nbits: 9\n")
    with pytest.raises(ConfigError, match="bits"):
        load_config(path, BottleNetLevelConfig)


def test_cli_train_and_ship(tiny, tmp_path):
    tmp = tiny["tmp"]
    config = tmp_path / "r9.yaml"
    config.write_text(yaml.safe_dump(level_config(tmp / "codec", 9, 1, 2, 1).model_dump(mode="json")))
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "codec", "--config", str(config)])
    assert trained.exit_code == 0, trained.output
    assert "bottlenet++ level 9: code 1x8x8 at 1 bits" in trained.output
    # Another thread count is speed only: the finished stages resume as they are.
    card = (tmp / "codec" / "level009" / "level.json").read_text()
    threads = torch.get_num_threads()
    try:
        again = runner.invoke(app, ["train", "codec", "--config", str(config), "--threads", "2"])
        assert again.exit_code == 0 and torch.get_num_threads() == 2, again.output
    finally:
        torch.set_num_threads(threads)
    assert json.loads((tmp / "codec" / "level009" / "level.json").read_text())["history"] == json.loads(card)["history"]
    shipped = runner.invoke(app, ["codec", "ship", "--codec", "bottlenetpp", "--base-dir", str(tmp / "codec"),
                                  "--name", "bottlenetpp-tiny-resnet20"])
    assert shipped.exit_code == 0 and "[1, 2, 9]" in shipped.output, shipped.output
    levels = runner.invoke(app, ["zoo", "list"])
    assert "bottlenetpp codec" in levels.output, levels.output


def current_digests() -> dict[str, dict]:
    return shipped_codec_goldens(load_codecs(NAME, ZOO_DIR), 4321)


def test_golden_frames_under_the_shipped_models():
    assert current_digests() == json.loads(GOLDEN.read_text())


if __name__ == "__main__":  # python -m tests.test_bottlenetpp: regenerate after shipping new rates
    GOLDEN.write_text(json.dumps(current_digests(), indent=2) + "\n")
    print(f"wrote {GOLDEN}")


def test_second_round_configs_are_the_first_in_bf16():
    """The retrain on the new backbone (staging/README.md): each rate's recipe, both stages in bf16."""
    first = {p.stem.rsplit("-", 1)[1]: load_config(p, BottleNetLevelConfig) for p in CONFIGS}
    second = {p.stem.rsplit("-", 1)[1]: load_config(p, BottleNetLevelConfig)
              for p in CONFIGS[0].parent.glob("bottlenetpp-r2-R*.yaml")}
    assert sorted(second) == sorted(first)
    assert len({cfg.base.model_dump_json() for cfg in second.values()}) == 1
    for rate, cfg in second.items():
        assert cfg.autoencoder.precision == cfg.finetune.precision == "bf16"
        as_fp32 = json.loads(cfg.model_dump_json().replace('"bf16"', '"fp32"'))
        as_fp32["base"]["output_dir"] = first[rate].base.output_dir
        assert as_fp32 == first[rate].model_dump(mode="json"), rate
