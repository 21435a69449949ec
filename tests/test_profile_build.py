"""Building an option profile from the shipped models (on a tiny generated test set)."""

import numpy as np
import pytest
import torch

from grl_aecnn import codecs as codec_registry
from grl_aecnn.codecs import load_codec_levels
from grl_aecnn.data import load_dataset, to_tensor
from grl_aecnn.errors import ConfigError, ModelNotFoundError
from grl_aecnn.profile import ProfileBuildConfig, build_profile, load_profile, option_name, save_profile
from grl_aecnn.zoo import load_backbone


def tiny(**overrides) -> ProfileBuildConfig:
    values = dict(codecs=("aecnn", "png"), limit=12, batch_size=5, latency_samples=2, threads=1)
    return ProfileBuildConfig(**{**values, **overrides})


def test_profile_rows_are_the_codecs_real_bytes_and_answers(tiny_cifar, tmp_path):
    profile = build_profile(tiny(), show_progress=False)
    test = load_dataset("cifar10", "test").take(12)
    images, labels = to_tensor(test.images, test.mean, test.std), test.labels
    levels = load_codec_levels("aecnn", "resnet20-cifar10") + load_codec_levels("png", "resnet20-cifar10")
    assert profile.names == ["local"] + [option_name(c) for c in levels]
    assert profile.names[1] == "aecnn:L1" and profile.names[-1] == "png"
    backbone = load_backbone("resnet20-cifar10")
    with torch.no_grad():
        assert np.array_equal(profile.correct[0], (backbone(images).argmax(1) == torch.as_tensor(labels)).numpy())
    for row, codec in enumerate(levels, start=1):
        # One-image paths agree with the batched rows (a rare rounding tie may move one symbol).
        data = [codec.encode(x) for x in images]
        sizes = np.array([len(d) for d in data])
        assert np.mean(profile.payload[row] == sizes) >= 0.9
        assert np.all(np.abs(profile.payload[row] - sizes) <= 4)
        answers = np.array([int(codec.decode(d).argmax()) == int(y) for d, y in zip(data, labels)])
        assert np.mean(profile.correct[row] == answers) >= 0.9
        meta = profile.options[row]
        assert meta.device_flops == codec.device_flops and meta.server_flops == codec.server_flops
        assert meta.device_latency_ms > 0 and meta.server_latency_ms > 0
    assert profile.provenance["codecs"]["png"] is None and len(profile.provenance["codecs"]["aecnn"]) == 64
    loaded = load_profile(save_profile(profile, tmp_path / "p"), expected_model="resnet20-cifar10")
    assert loaded.provenance == profile.provenance and np.array_equal(loaded.payload, profile.payload)
    assert loaded.dataset_checksum == test.checksum.removeprefix("sha256:")


class _AnalogCodec:
    """Right exactly when the SNR is at least 10 dB: the received symbols carry the SNR."""

    codec_id, level, symbols, device_flops, server_flops = "analog", 1, 8, 100, 200

    def encode_symbols(self, images):
        return torch.zeros(images.shape[0], self.symbols, dtype=torch.complex64) if images.ndim == 4 else torch.zeros(8)

    def transmit(self, symbols, snr_db, generator=None):
        return symbols + snr_db

    def decode_symbols(self, received):
        right = (received.real[..., 0] >= 10).long()  # answers class 1 at >= 10 dB, class 0 below
        return torch.nn.functional.one_hot(right, 10).float()


def test_analog_options_keep_every_snr_grid_point(tiny_cifar, monkeypatch):
    monkeypatch.setitem(codec_registry.CODECS, "analog", lambda model: [_AnalogCodec()])
    profile = build_profile(tiny(codecs=("analog",), snr_grid_db=(0.0, 5.0, 10.0, 20.0)), show_progress=False)
    test = load_dataset("cifar10", "test").take(12)
    row = profile.names.index("analog:L1")
    assert profile.kinds[row] == "symbols" and np.all(profile.payload[row] == 8)
    is_one = test.labels == 1
    expected = np.stack([test.labels == 0] * 2 + [is_one] * 2)
    assert np.array_equal(profile.snr_correct[0], expected)
    assert np.array_equal(profile.correct[row], expected[-1])


def test_default_output_is_the_zoo_overlay_when_set(monkeypatch, tmp_path):
    from grl_aecnn.zoo import ZOO_DIR
    cfg = ProfileBuildConfig(model="m")
    assert cfg.output_stem() == ZOO_DIR / "profile-m"
    monkeypatch.setenv("GRL_AECNN_ZOO", str(tmp_path))
    assert cfg.output_stem() == tmp_path / "profile-m"
    assert ProfileBuildConfig(model="m", output=str(tmp_path / "x")).output_stem() == tmp_path / "x"


def test_bad_codec_lists(tiny_cifar, monkeypatch):
    with pytest.raises(ConfigError, match="unknown codecs"):
        build_profile(tiny(codecs=("aecnn", "nope")), show_progress=False)

    def not_shipped(model):
        raise ModelNotFoundError("not in the zoo")

    monkeypatch.setitem(codec_registry.CODECS, "unshipped", not_shipped)
    profile = build_profile(tiny(codecs=("png", "unshipped"), limit=4), show_progress=False)
    assert profile.names == ["local", "png"] and profile.provenance["missing_codecs"] == ["unshipped"]
    with pytest.raises(ModelNotFoundError):
        build_profile(tiny(codecs=("unshipped",), skip_missing=False, limit=4), show_progress=False)
    with pytest.raises(ConfigError, match="snr_grid_db"):
        build_profile(tiny(snr_grid_db=(5.0, 0.0)), show_progress=False)


def test_merge_adds_a_codec_without_measuring_the_others_again(tiny_cifar):
    from grl_aecnn.profile import ProfileError, merge_profiles

    base = build_profile(tiny(codecs=("png",), limit=6), show_progress=False)
    extra = build_profile(tiny(codecs=("jpeg",), limit=6), show_progress=False)
    merged = merge_profiles(base, extra)
    assert merged.names == ["local", "png"] + [n for n in extra.names if n != "local"]
    assert np.array_equal(merged.payload[2:], extra.payload[1:]) and np.array_equal(merged.correct[:2], base.correct)
    assert set(merged.provenance["codecs"]) == {"png", "jpeg"}
    with pytest.raises(ProfileError, match="both profiles"):
        merge_profiles(merged, extra)
    with pytest.raises(ProfileError, match="other test samples"):
        merge_profiles(base, build_profile(tiny(codecs=("jpeg",), limit=5), show_progress=False))
    # a retrained codec takes its old options' place; the others keep theirs
    again = build_profile(tiny(codecs=("jpeg",), limit=6, seed=1), show_progress=False)
    replaced = merge_profiles(merge_profiles(merged, build_profile(tiny(codecs=("raw",), limit=6), show_progress=False)),
                              again, replace=True)
    assert replaced.names == merged.names + ["raw"]
    assert np.array_equal(replaced.payload[2:-1], again.payload[1:])
    assert replaced.provenance["codecs"]["jpeg"] == again.provenance["codecs"]["jpeg"]
