import numpy as np
import pytest
import torch

from grl_aecnn.codecs.base import Codec
from grl_aecnn.codecs.image import ImageCodec
from grl_aecnn.data import to_tensor
from grl_aecnn.entropy import pack_frame, unpack_frame
from grl_aecnn.errors import BitstreamError
from grl_aecnn.nets import build_model
from tests.conftest import make_images

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return build_model("resnet20").eval()


def smooth_images(n: int) -> torch.Tensor:
    """Natural-ish images (smooth gradients plus a little noise), so JPEG quality matters."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:32, 0:32]
    images = np.stack([
        np.clip(np.stack([(xx * a + yy * b) % 256 for a, b in rng.integers(1, 8, (3, 2))], -1)
                + rng.normal(0, 4, (32, 32, 3)), 0, 255).astype(np.uint8)
        for _ in range(n)
    ])
    return to_tensor(images, MEAN, STD)


@pytest.mark.parametrize("fmt", ["raw", "png"])
def test_lossless_formats_give_the_backbone_output_exactly(backbone, fmt):
    codec = ImageCodec(backbone, MEAN, STD, fmt)
    assert isinstance(codec, Codec) and codec.split is None and codec.device_flops == 0
    images = to_tensor(make_images(4, seed=1)[0], MEAN, STD)
    for image in images:
        data = codec.encode(image)
        with torch.no_grad():
            assert torch.equal(codec.decode(data), backbone(image[None])[0])
    if fmt == "raw":
        assert len(data) == 32 * 32 * 3 + 15  # 14 bytes of frame + a 2-byte payload length


def test_jpeg_quality_trades_bytes(backbone):
    images = smooth_images(4)
    sizes = {q: np.mean([len(ImageCodec(backbone, MEAN, STD, "jpeg", q).encode(x)) for x in images]) for q in (95, 50, 10)}
    assert sizes[95] > sizes[50] > sizes[10]
    codec = ImageCodec(backbone, MEAN, STD, "jpeg", 50)
    assert codec.decode(codec.encode(images[0])).shape == (10,)


def test_image_codecs_reject_bad_bitstreams(backbone):
    png = ImageCodec(backbone, MEAN, STD, "png")
    jpeg = ImageCodec(backbone, MEAN, STD, "jpeg", 75)
    image = smooth_images(1)[0]
    with pytest.raises(BitstreamError, match="foreign"):
        png.decode(jpeg.encode(image))
    with pytest.raises(BitstreamError, match="level"):
        ImageCodec(backbone, MEAN, STD, "jpeg", 50).decode(jpeg.encode(image))
    rng = np.random.default_rng(0)
    for codec in (png, jpeg):
        data = codec.encode(image)
        payload = unpack_frame(data).payload
        for i in range(300):
            # Half the cases re-seal a damaged payload in a valid frame, so the image decoder itself sees garbage.
            target = bytearray(payload if i % 2 else data)
            for pos in rng.integers(0, len(target), size=rng.integers(1, 4)):
                target[pos] = rng.integers(0, 256)
            if i % 2:
                target = pack_frame(codec.codec_id, codec.level, codec.pixel_shape, bytes(target))
            try:
                logits = codec.decode(bytes(target))
            except BitstreamError:
                continue
            assert logits.shape == (10,) and torch.isfinite(logits).all()


def test_bad_settings():
    model = build_model("resnet20")
    with pytest.raises(ValueError, match="format"):
        ImageCodec(model, MEAN, STD, "gif")
    with pytest.raises(ValueError, match="quality"):
        ImageCodec(model, MEAN, STD, "jpeg", 0)


def test_registry_builds_image_codecs_for_a_zoo_model(monkeypatch, tmp_path):
    from grl_aecnn import zoo
    from grl_aecnn.codecs import load_codec_levels
    from grl_aecnn.store import atomic_write_json, save_tensors, sha256_file

    model = build_model("resnet20")
    save_tensors(tmp_path / "m.safetensors", model.state_dict())
    atomic_write_json(tmp_path / "m.json", {"name": "m", "model": "resnet20", "num_classes": 10, "in_channels": 3,
                                            "image_size": 32, "dataset": {"name": "cifar10"}, "top1": 0.0, "epochs": 0,
                                            "weights_sha256": sha256_file(tmp_path / "m.safetensors")})
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    assert [c.level for c in load_codec_levels("jpeg", "m")] == [95, 75, 50, 25, 10]
    raw = load_codec_levels("raw", "m")[0]
    assert raw.codec_id == "raw" and raw.server_flops > 40_000_000
