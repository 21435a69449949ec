"""Small datasets made by the tests in every format the loaders read."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grl_aecnn.data import CIFAR10_CLASSES

# GRL_AECNN_DATA (CI sets it) or the shared folder beside the checkout.
_DATA_ENV = os.environ.get("GRL_AECNN_DATA")
SHARED_DATA = Path(_DATA_ENV).resolve() if _DATA_ENV else Path(__file__).resolve().parents[2] / "shared" / "datasets"


def make_images(n: int, seed: int, size: int = 32, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, channels), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % 10
    return images, labels


def write_imagefolder_zip(path: Path, images: np.ndarray, labels: np.ndarray, fmt: str = "PNG") -> None:
    """ImageFolder zip; PNG keeps pixels exact so readers can be compared with the source arrays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for i, (img, label) in enumerate(zip(images, labels)):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format=fmt)
            archive.writestr(f"{CIFAR10_CLASSES[label]}/{i:04d}.{fmt.lower()}", buf.getvalue())


def write_official_archive(path: Path, train: tuple, test: tuple) -> None:
    """A `cifar-10-python.tar.gz` laid out as the official one: 5 train batches, a test batch, meta."""
    def batch(images, labels):
        data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
        return pickle.dumps({b"batch_label": b"x", b"labels": labels.tolist(), b"data": data, b"filenames": []})

    train_images, train_labels = train
    parts = np.array_split(np.arange(len(train_images)), 5)
    members = {f"data_batch_{i + 1}": batch(train_images[p], train_labels[p]) for i, p in enumerate(parts)}
    members["test_batch"] = batch(*test)
    members["batches.meta"] = pickle.dumps({b"label_names": [c.encode() for c in CIFAR10_CLASSES]})
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(autouse=True)
def package_zoo_only(monkeypatch):
    """Tests see the package's zoo, not a zoo overlay ($GRL_AECNN_ZOO) of the shell that runs them."""
    monkeypatch.delenv("GRL_AECNN_ZOO", raising=False)


@pytest.fixture
def isolated_data(tmp_path, monkeypatch) -> Path:
    """An empty data root and user cache, so no real dataset on this machine is found by accident."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("GRL_AECNN_DATA", str(root))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return root


@pytest.fixture
def tiny_cifar(isolated_data) -> Path:
    """CIFAR-10 in ImageFolder zips: 80 training and 40 test images of noise, labels cycling 0..9."""
    write_imagefolder_zip(isolated_data / "cifar10-jpeg" / "train.zip", *make_images(80, seed=1))
    write_imagefolder_zip(isolated_data / "cifar10-jpeg" / "test.zip", *make_images(40, seed=2))
    return isolated_data


def shared_cifar_available() -> bool:
    """Whether the real-data tests run. With GRL_AECNN_DATA set the data is expected: they run, and
    fail if it is missing, rather than skip."""
    return bool(_DATA_ENV) or (SHARED_DATA / "cifar10-jpeg" / "test.zip").exists()


def symbols_like_traffic(codec, seed: int) -> np.ndarray:
    """Symbols of a shipped codec's shape drawn from its entropy model (the marginal over contexts for
    a context model), so golden tests code data that looks like real traffic; integer draws only."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(codec.entropy.rows().astype(np.int64).sum(axis=1), axis=1)
    k, h, w = codec.symbol_shape
    u = rng.integers(0, cdf[:, -1:], size=(k, h * w))
    return np.stack([np.searchsorted(cdf[c], u[c], side="right") for c in range(k)]).reshape(k, h, w).astype(np.uint8)


def shipped_codec_goldens(codecs, seed: int) -> dict[str, dict]:
    """Per level of a shipped framed-symbol codec (AECNN, BottleNet++): the frame of traffic-like
    symbols (the entropy model), the server's labels for 16 such frames (recovery/decoder and tail
    weights) and the round-trip labels of 8 fixed images (the device head too). Labels, not float
    hashes: they do not depend on float rounding that a thread count could change."""
    import hashlib

    import torch

    from grl_aecnn.entropy import encode_tensor_frame

    out = {}
    for c in codecs:
        frames = [encode_tensor_frame(symbols_like_traffic(c, seed + 100 * i + c.level), c.entropy, c.codec_id, c.level)
                  for i in range(16)]
        # smooth random images (4x4 upsampled): pixel noise would all fall into one class
        coarse = np.random.default_rng(seed + c.level).standard_normal((8, 3, 4, 4)).astype(np.float32) * 1.5
        images = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(32, 32), mode="bilinear")
        out[str(c.level)] = {"frame_sha256": hashlib.sha256(frames[0]).hexdigest(),
                             "server_labels": [int(c.decode(f).argmax()) for f in frames],
                             "round_trip_labels": c.decode_batch(c.encode_batch(images)).argmax(1).tolist()}
    return out
