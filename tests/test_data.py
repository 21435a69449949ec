import gzip
import hashlib
import http.server
import io
import pickle
import tarfile
import threading
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from grl_aecnn.data import augment_batch, iterate_batches, load_cifar10, load_dataset, load_fashion_mnist, to_tensor
from grl_aecnn.data.cifar10 import read_official_archive
from grl_aecnn.data.imageset import content_checksum
from grl_aecnn.errors import DatasetCorruptError, DatasetNotFoundError
from tests.conftest import (
    SHARED_DATA, make_images, shared_cifar_available, write_idx, write_imagefolder_zip, write_official_archive,
)


def _sorted_by_class(images, labels):
    """ImageFolder readers order samples by (class, file name); files here are named by index."""
    order = sorted(range(len(labels)), key=lambda i: (labels[i], f"{i:04d}"))
    return images[order], labels[order]


def test_imagefolder_zip_reads_exact_pixels_and_labels(isolated_data):
    images, labels = make_images(30, seed=3)
    write_imagefolder_zip(isolated_data / "cifar10-jpeg" / "test.zip", images, labels)
    data = load_cifar10("test")
    expected_images, expected_labels = _sorted_by_class(images, labels)
    assert np.array_equal(data.images, expected_images)
    assert np.array_equal(data.labels, expected_labels)
    assert data.source.endswith("test.zip")
    assert data.checksum.startswith("sha256:")


def test_imagefolder_directory(isolated_data):
    images, labels = make_images(20, seed=4)
    zip_path = isolated_data / "staging.zip"
    write_imagefolder_zip(zip_path, images, labels)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(isolated_data / "cifar10" / "train")
    zip_path.unlink()
    data = load_cifar10("train")
    assert np.array_equal(data.images, _sorted_by_class(images, labels)[0])
    assert data.source.endswith("cifar10/train")


def test_official_archive_generated(isolated_data):
    train, test = make_images(50, seed=5), make_images(12, seed=6)
    write_official_archive(isolated_data / "cifar-10-python.tar.gz", train, test)
    data = load_cifar10("train")
    assert np.array_equal(data.images, train[0]) and np.array_equal(data.labels, train[1])
    data = load_cifar10("test")
    assert np.array_equal(data.images, test[0]) and np.array_equal(data.labels, test[1])


def test_same_pixels_give_same_checksum_from_any_container(isolated_data, tmp_path):
    test = make_images(10, seed=7)
    write_official_archive(isolated_data / "cifar-10-python.tar.gz", make_images(10, seed=8), test)
    from_archive = load_cifar10("test")
    other = tmp_path / "other"
    write_imagefolder_zip(other / "cifar10-jpeg" / "test.zip", *test)
    from_zip = load_cifar10("test", root=other)
    # The zip reader orders samples by class; the checksum is of content in that order.
    assert from_zip.checksum == content_checksum(*_sorted_by_class(*test))
    assert from_archive.checksum == content_checksum(*test)


def test_missing_dataset_names_places_and_remedy(isolated_data):
    with pytest.raises(DatasetNotFoundError) as err:
        load_cifar10("test")
    message = str(err.value)
    assert str(isolated_data / "cifar10-jpeg" / "test.zip") in message
    assert "cifar-10-python.tar.gz" in message and "GRL_AECNN_DATA" in message and "grl-aecnn data fetch cifar10" in message


def test_corrupt_zip_is_a_clear_error(isolated_data):
    path = isolated_data / "cifar10-jpeg" / "test.zip"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(DatasetCorruptError, match="test.zip"):
        load_cifar10("test")


def test_undecodable_image_names_the_member(isolated_data):
    path = isolated_data / "cifar10-jpeg" / "test.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("airplane/0001.jpg", b"\xff\xd8 not really a jpeg")
    with pytest.raises(DatasetCorruptError, match="airplane/0001.jpg"):
        load_cifar10("test")


def test_wrong_classes_rejected(isolated_data):
    path = isolated_data / "cifar10-jpeg" / "test.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as archive:
        buf = io.BytesIO()
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buf, format="PNG")
        archive.writestr("kangaroo/0001.png", buf.getvalue())
    with pytest.raises(DatasetCorruptError, match="not CIFAR-10's"):
        load_cifar10("test")


def test_truncated_official_archive(isolated_data):
    path = isolated_data / "cifar-10-python.tar.gz"
    write_official_archive(path, make_images(10, seed=9), make_images(10, seed=10))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetCorruptError):
        load_cifar10("train")


def test_official_archive_refuses_code_in_pickles(isolated_data):
    path = isolated_data / "cifar-10-python.tar.gz"

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    payload = pickle.dumps({b"data": Evil(), b"labels": []})
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    with pytest.raises(DatasetCorruptError, match="forbidden global"):
        read_official_archive(path, "test")


@pytest.fixture
def http_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_verifies_checksum_then_loads(isolated_data, http_server, tmp_path):
    served, base = http_server
    test = make_images(10, seed=11)
    write_official_archive(served / "cifar-10-python.tar.gz", make_images(10, seed=12), test)
    md5 = hashlib.md5((served / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    data = load_cifar10("test", download=True, url=f"{base}/cifar-10-python.tar.gz", md5=md5)
    assert np.array_equal(data.images, test[0])
    cached = tmp_path / "cache" / "grl-aecnn" / "datasets" / "cifar-10-python.tar.gz"
    assert data.source == str(cached) and cached.exists()
    # Found in the cache next time, without the server.
    assert load_cifar10("test").source == str(cached)


def test_download_with_wrong_checksum_leaves_nothing(isolated_data, http_server, tmp_path):
    served, base = http_server
    write_official_archive(served / "cifar-10-python.tar.gz", make_images(10, seed=13), make_images(10, seed=14))
    with pytest.raises(DatasetCorruptError, match="MD5"):
        load_cifar10("test", download=True, url=f"{base}/cifar-10-python.tar.gz", md5="0" * 32)
    cache = tmp_path / "cache" / "grl-aecnn" / "datasets"
    assert not cache.exists() or not any(cache.iterdir())


def test_fashion_mnist_from_idx_files(isolated_data):
    rng = np.random.default_rng(15)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = np.arange(12, dtype=np.uint8) % 10
    write_idx(isolated_data / "fashion-mnist" / "t10k-images-idx3-ubyte.gz", images)
    write_idx(isolated_data / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz", labels)
    data = load_dataset("fashion-mnist", "test")
    assert data.images.shape == (12, 28, 28, 1)
    assert np.array_equal(data.images[..., 0], images) and np.array_equal(data.labels, labels)


def test_fashion_mnist_truncated_idx(isolated_data):
    directory = isolated_data / "fashion-mnist"
    write_idx(directory / "t10k-images-idx3-ubyte.gz", np.zeros((4, 28, 28), np.uint8))
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    raw = gzip.decompress((directory / "t10k-images-idx3-ubyte.gz").read_bytes())
    (directory / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(DatasetCorruptError, match="header declares"):
        load_fashion_mnist("test")


def test_fashion_mnist_missing_names_debian_package(isolated_data, monkeypatch):
    import grl_aecnn.data.fashion_mnist as fm
    monkeypatch.setattr(fm, "DEBIAN_DIR", isolated_data / "nowhere")
    with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist("train")


def test_normalization_and_augmentation():
    images, _ = make_images(16, seed=16)
    x = to_tensor(images, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert x.shape == (16, 3, 32, 32)
    assert torch.allclose(x[0, 0, 0, 0], torch.tensor((images[0, 0, 0, 0] / 255 - 0.5) / 0.25, dtype=torch.float32))
    a = augment_batch(x, torch.Generator().manual_seed(0))
    b = augment_batch(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)
    # Every augmented image is a (possibly flipped) window of the zero-padded original.
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(16):
        windows = [padded[i, :, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(a[i], w) or torch.equal(a[i], w.flip(-1)) for w in windows)


def test_cutout_hides_one_clipped_square_and_leaves_the_crop_stream_alone():
    images, _ = make_images(64, seed=17)
    # No pixel is 0 before cutout (shifted, and no padding enters the crops).
    x = to_tensor(images, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)) + 10.0
    plain = augment_batch(x, torch.Generator().manual_seed(3), padding=0)
    cut = augment_batch(x, torch.Generator().manual_seed(3), padding=0, cutout=16)
    zeroed = (cut == 0).all(dim=1)  # N x H x W, hidden in every channel at once
    assert torch.equal(cut[~zeroed.unsqueeze(1).expand_as(cut)], plain[~zeroed.unsqueeze(1).expand_as(plain)])
    clipped = 0
    for mask in zeroed:
        rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
        assert 1 <= len(rows) <= 16 and 1 <= len(cols) <= 16
        # One axis-aligned rectangle: every pixel in its bounding box is hidden.
        assert int(mask.sum()) == len(rows) * len(cols) == int(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].sum())
        clipped += len(rows) < 16 or len(cols) < 16
    assert 0 < clipped < 64  # centres are uniform over the image: some squares cross a border, some do not
    # Cutout draws after crop and flip, so a cutout 0 run keeps its seeded stream.
    assert torch.equal(augment_batch(x, torch.Generator().manual_seed(3), padding=0, cutout=0), plain)


def test_batches_cover_the_set_once(tiny_cifar):
    data = load_cifar10("train")
    seen = torch.cat([y for _, y in iterate_batches(data, 32, torch.Generator().manual_seed(1), augment=True)])
    assert sorted(seen.tolist()) == sorted(data.labels.tolist())


@pytest.mark.skipif(not shared_cifar_available(), reason="the CIFAR-10 JPEG copy is not beside the checkout")
def test_real_cifar10_jpeg_copy(monkeypatch):
    monkeypatch.setenv("GRL_AECNN_DATA", str(SHARED_DATA))
    data = load_cifar10("test")
    assert data.images.shape == (10000, 32, 32, 3)
    assert np.bincount(data.labels).tolist() == [1000] * 10
    subset = data.take(500)
    assert len(subset) == 500 and len(set(subset.labels.tolist())) == 10


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").exists(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_debian_package(isolated_data):
    data = load_fashion_mnist("test")
    assert data.images.shape == (10000, 28, 28, 1) and data.source == "/usr/share/datasets/fashion-mnist"
    assert np.bincount(data.labels).tolist() == [1000] * 10
