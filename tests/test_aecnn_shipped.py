"""The AECNN codec shipped for resnet20-cifar10: golden bytes under its probability models, and real
bytes giving exactly the tensor path's predictions on real test images."""

import json
from pathlib import Path

import pytest
import torch

from grl_aecnn.codecs.aecnn import load_codecs
from grl_aecnn.data import load_cifar10, to_tensor
from tests.conftest import SHARED_DATA, shared_cifar_available, shipped_codec_goldens

NAME = "aecnn-resnet20-cifar10"
GOLDEN = Path(__file__).parent / "golden" / "aecnn_resnet20_cifar10.json"


def current_digests() -> dict[str, dict]:
    return shipped_codec_goldens(load_codecs(NAME), 1234)


def test_golden_bytes_under_the_shipped_models():
    expected = json.loads(GOLDEN.read_text())
    assert current_digests() == expected


@pytest.mark.skipif(not shared_cifar_available(), reason="the CIFAR-10 JPEG copy is not beside the checkout")
def test_real_bytes_predict_exactly_as_the_tensor_path(monkeypatch):
    monkeypatch.setenv("GRL_AECNN_DATA", str(SHARED_DATA))
    test = load_cifar10("test").take(200)
    images = to_tensor(test.images, test.mean, test.std)
    for codec in load_codecs(NAME):
        # Batch size 1 on both paths: a batched convolution may round differently near a quantization step.
        with torch.no_grad():
            tensor_path = torch.stack([codec.module.logits_from_symbols(codec.module.symbols(codec.base.features(x[None])))[0]
                                       for x in images]).argmax(1)
        byte_path = torch.stack([codec.decode(codec.encode(x)) for x in images]).argmax(1)
        assert torch.equal(byte_path, tensor_path), codec.level


if __name__ == "__main__":  # python -m tests.test_aecnn_shipped: regenerate after shipping new levels
    GOLDEN.write_text(json.dumps(current_digests(), indent=2) + "\n")
    print(f"wrote {GOLDEN}")
