import hashlib
import json

import numpy as np
import pytest

from grl_aecnn.profile import ProfileError, load_profile, save_profile, synthetic_profile


@pytest.fixture
def saved(tmp_path):
    p = synthetic_profile(seed=3, n_samples=64)
    return p, save_profile(p, tmp_path / "prof.json")


def test_synthetic_profile_is_plausible():
    p = synthetic_profile(seed=0, n_samples=2000)
    acc = p.accuracy()
    assert p.synthetic and p.names[0] == "local" and abs(acc[0] - 0.93) < 0.02
    sizes = p.payload[p.kinds == "bytes"].mean(axis=1)
    assert sizes[0] > 1500 and sizes[-1] < 40 and np.all(np.diff(sizes) < 0)
    assert np.all(np.diff(acc[p.kinds == "bytes"]) < 0.01) and acc[p.kinds == "bytes"][-1] < acc[0]
    assert p.snr_correct.shape == (1, len(p.snr_grid_db), 2000)


def test_round_trip(saved):
    p, path = saved
    q = load_profile(path, expected_model="synthetic-resnet20")
    assert q.options == p.options and q.synthetic
    for k in ("payload", "correct", "snr_grid_db", "snr_correct"):
        assert np.array_equal(getattr(q, k), getattr(p, k))


def _edit_meta(path, **changes):
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def test_wrong_model(saved):
    with pytest.raises(ProfileError, match="expected 'resnet56'"):
        load_profile(saved[1], expected_model="resnet56")


def test_wrong_version(saved):
    _edit_meta(saved[1], format_version=99)
    with pytest.raises(ProfileError, match="version"):
        load_profile(saved[1])


def test_npz_checksum(saved):
    npz = saved[1].with_suffix(".npz")
    data = bytearray(npz.read_bytes())
    data[-10] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(ProfileError, match="SHA-256"):
        load_profile(saved[1])


def test_a_damaged_zip_whose_checksum_was_forged_is_a_profile_error(saved):
    npz = saved[1].with_suffix(".npz")
    damaged = npz.read_bytes()[:200]  # a zip's start without its directory
    npz.write_bytes(damaged)
    _edit_meta(saved[1], npz_sha256=hashlib.sha256(damaged).hexdigest())
    with pytest.raises(ProfileError, match="not a readable npz"):
        load_profile(saved[1])


def test_inconsistent_shapes(saved, tmp_path):
    p, path = saved
    meta = json.loads(path.read_text())
    meta["options"] = meta["options"][:-2]  # fewer options than array rows
    path.write_text(json.dumps(meta))
    with pytest.raises(ProfileError):
        load_profile(path)


def test_wrong_sample_count_and_missing_files(saved, tmp_path):
    _edit_meta(saved[1], n_samples=65)
    with pytest.raises(ProfileError, match="samples"):
        load_profile(saved[1])
    with pytest.raises(ProfileError, match="not found"):
        load_profile(tmp_path / "nope.json")
    saved[1].with_suffix(".npz").unlink()
    with pytest.raises(ProfileError, match="not found"):
        load_profile(saved[1])


def test_invalid_arrays_rejected():
    p = synthetic_profile(seed=0, n_samples=8)
    from grl_aecnn.profile import OptionProfile

    with pytest.raises(ProfileError, match="local option must have payload 0"):
        payload = p.payload.copy()
        payload[0, 0] = 5
        OptionProfile(p.model, p.dataset, p.dataset_checksum, p.options, payload, p.correct, p.snr_grid_db, p.snr_correct)
    with pytest.raises(ProfileError, match="snr_correct"):
        OptionProfile(p.model, p.dataset, p.dataset_checksum, p.options, p.payload, p.correct, p.snr_grid_db,
                      p.snr_correct[:, :2])
