"""A plausible, clearly labelled SYNTHETIC option profile for tests and benchmarks.

Not a measurement: accuracies and payload sizes imitate ResNet-20 on CIFAR-10 split after `layer2`
(55.4 MFLOPs head, 26.2 MFLOPs tail, 81.6 MFLOPs in all) with AECNN levels from about 2000 down to
about 30 bytes, plus one analog ("symbols") option whose accuracy depends on the SNR.
"""

from __future__ import annotations

import hashlib

import numpy as np

from grl_aecnn.profile.format import OptionMeta, OptionProfile

# (name, mean payload bytes, accuracy, encoder MFLOPs, decoder MFLOPs)
_LEVELS = (
    ("aecnn:L1", 2000.0, 0.928, 0.6, 0.8),
    ("aecnn:L2", 1000.0, 0.925, 0.5, 0.8),
    ("aecnn:L3", 500.0, 0.918, 0.4, 0.7),
    ("aecnn:L4", 220.0, 0.905, 0.3, 0.6),
    ("aecnn:L5", 90.0, 0.875, 0.3, 0.6),
    ("aecnn:L6", 30.0, 0.80, 0.2, 0.5),
)
_HEAD, _TAIL = 55.41e6, 26.22e6
_SNR_GRID_DB = (0.0, 5.0, 10.0, 15.0, 20.0)
_JSCC_ACC = (0.55, 0.76, 0.86, 0.9, 0.915)
_JSCC_SYMBOLS = 512


def synthetic_profile(seed: int = 0, n_samples: int = 1000, local_accuracy: float = 0.93,
                      levels: tuple = _LEVELS, with_symbols: bool = True) -> OptionProfile:
    """Correctness is nested by a per-sample difficulty (harder samples fail first at every option)
    with 0.5% independent flips; payloads are log-normal (sigma 0.25) around each level's mean."""
    rng = np.random.default_rng(seed)
    difficulty = rng.random(n_samples)

    def correct_at(acc: float) -> np.ndarray:
        flip = rng.random(n_samples) < 0.005
        return (difficulty < acc) ^ flip

    options = [OptionMeta("local", "local", _HEAD + _TAIL, 0.0, 9.0, 0.0)]
    payload = [np.zeros(n_samples, np.int64)]
    correct = [correct_at(local_accuracy)]
    for name, mean_bytes, acc, enc, dec in levels:
        options.append(OptionMeta(name, "bytes", _HEAD + enc * 1e6, _TAIL + dec * 1e6,
                                  6.0 + enc / 10, 3.0 + dec / 10))
        sizes = mean_bytes * rng.lognormal(-0.5 * 0.25**2, 0.25, n_samples)
        payload.append(np.maximum(1, np.round(sizes)).astype(np.int64))
        correct.append(correct_at(acc))
    snr_correct = np.zeros((0, 0, n_samples), bool)
    grid = np.zeros(0)
    if with_symbols:
        options.append(OptionMeta(f"deepjscc:k{_JSCC_SYMBOLS}", "symbols", _HEAD + 1.0e6, _TAIL + 1.2e6, 6.5, 3.2))
        payload.append(np.full(n_samples, _JSCC_SYMBOLS, np.int64))
        grid = np.array(_SNR_GRID_DB)
        snr_correct = np.stack([correct_at(a) for a in _JSCC_ACC])[None]
        correct.append(snr_correct[0, -1].copy())
    checksum = hashlib.sha256(f"synthetic-profile seed={seed} n={n_samples}".encode()).hexdigest()
    return OptionProfile(model="synthetic-resnet20", dataset="synthetic", dataset_checksum=checksum,
                         options=tuple(options), payload=np.stack(payload), correct=np.stack(correct),
                         snr_grid_db=grid, snr_correct=snr_correct, synthetic=True)
