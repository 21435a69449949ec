"""Input offloading: the device sends the image itself (raw pixels, PNG or JPEG) and the edge server
runs the whole backbone. The device computes nothing but the image coding (0 FLOPs counted)."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from grl_aecnn.data import to_tensor
from grl_aecnn.entropy import pack_frame, unpack_frame
from grl_aecnn.errors import BitstreamError
from grl_aecnn.nets import SplitNet, count_flops

IMAGE_FORMATS = ("raw", "png", "jpeg")


class ImageCodec:
    """`level` is 0 for raw and PNG, and the JPEG quality (1..95) for JPEG."""

    split = None
    device_flops = 0

    def __init__(self, backbone: SplitNet, mean: tuple[float, ...], std: tuple[float, ...], fmt: str, level: int = 0):
        if fmt not in IMAGE_FORMATS:
            raise ValueError(f"format must be one of {IMAGE_FORMATS}, got {fmt!r}")
        if fmt == "jpeg" and not 1 <= level <= 95:
            raise ValueError(f"JPEG quality must lie in 1..95, got {level}")
        self.codec_id = fmt
        self.level = level if fmt == "jpeg" else 0
        self.backbone = backbone.eval()
        self.mean, self.std = mean, std
        c, h, w = backbone.input_shape
        self.pixel_shape = (h, w, c)
        self.server_flops = count_flops(backbone, torch.zeros(1, c, h, w))

    def _pixels(self, image: torch.Tensor) -> np.ndarray:
        """Normalized (C, H, W) -> uint8 (H, W, C), exact for images that came from uint8."""
        m = torch.tensor(self.mean).view(-1, 1, 1)
        s = torch.tensor(self.std).view(-1, 1, 1)
        return (image * s + m).mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()

    def encode_batch(self, images: torch.Tensor) -> list[bytes]:
        return [self.encode(image) for image in images]

    def encode(self, image: torch.Tensor) -> bytes:
        pixels = self._pixels(image)
        if self.codec_id == "raw":
            payload = pixels.tobytes()
        else:
            picture = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
            buffer = io.BytesIO()
            options = {"quality": self.level} if self.codec_id == "jpeg" else {"optimize": True}
            picture.save(buffer, format=self.codec_id.upper(), **options)
            payload = buffer.getvalue()
        return pack_frame(self.codec_id, self.level, self.pixel_shape, payload)

    def _decode_pixels(self, payload: bytes) -> np.ndarray:
        h, w, c = self.pixel_shape
        if self.codec_id == "raw":
            if len(payload) != h * w * c:
                raise BitstreamError(f"raw payload of {len(payload)} bytes, expected {h * w * c}")
            return np.frombuffer(payload, dtype=np.uint8).reshape(h, w, c).copy()
        try:
            with Image.open(io.BytesIO(payload), formats=[self.codec_id.upper()]) as picture:
                # Check the declared size before decoding, so a forged header cannot ask for a huge image.
                if picture.size != (w, h):
                    raise BitstreamError(f"{self.codec_id} image is {picture.size}, expected {(w, h)}")
                pixels = np.asarray(picture.convert("L" if c == 1 else "RGB"), dtype=np.uint8)
        except BitstreamError:
            raise
        except Exception as exc:  # Pillow signals bad data with many exception types
            raise BitstreamError(f"undecodable {self.codec_id} payload ({type(exc).__name__}: {exc})") from exc
        return pixels.reshape(h, w, c)

    def _frame_pixels(self, data: bytes) -> np.ndarray:
        frame = unpack_frame(data, self.codec_id, self.level, self.pixel_shape)
        return self._decode_pixels(frame.payload)

    @torch.no_grad()
    def decode_batch(self, data: list[bytes]) -> torch.Tensor:
        pixels = np.stack([self._frame_pixels(d) for d in data])
        return self.backbone(to_tensor(pixels, self.mean, self.std))

    def decode(self, data: bytes) -> torch.Tensor:
        return self.decode_batch([data])[0]
