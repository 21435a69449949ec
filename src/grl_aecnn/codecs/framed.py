"""The byte path shared by the split-feature codecs (AECNN, BottleNet++): uint8 symbols of a fixed
(c, h, w) shape, entropy-coded under a per-channel model into one frame per image."""

from __future__ import annotations

import numpy as np
import torch

from grl_aecnn.entropy import EntropyModel, decode_tensor_frame, encode_tensor_frame


class FramedSymbolCodec:
    """Subclasses set codec_id, split, device_flops, server_flops and implement `symbols_of`
    (device: images (N, C, H, W) -> uint8 symbols (N, *symbol_shape)) and `logits_of`
    (server: symbols -> logits). `encode`/`decode` are the batch-of-one cases of the batch paths."""

    codec_id: str

    def __init__(self, level: int, entropy: EntropyModel, symbol_shape: tuple[int, int, int]):
        self.level = level
        self.entropy = entropy
        self.symbol_shape = symbol_shape

    def symbols_of(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def logits_of(self, symbols: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def encode_batch(self, images: torch.Tensor) -> list[bytes]:
        return [encode_tensor_frame(s, self.entropy, self.codec_id, self.level)
                for s in self.symbols_of(images).numpy()]

    def encode(self, image: torch.Tensor) -> bytes:
        return self.encode_batch(image[None])[0]

    def frame_symbols(self, data: bytes) -> np.ndarray:
        """The symbols of one frame, checked to be this codec's level and shape."""
        return decode_tensor_frame(data, self.entropy, self.codec_id, self.level, self.symbol_shape)

    @torch.no_grad()
    def decode_batch(self, data: list[bytes]) -> torch.Tensor:
        return self.logits_of(torch.from_numpy(np.stack([self.frame_symbols(d) for d in data])))

    def decode(self, data: bytes) -> torch.Tensor:
        return self.decode_batch([data])[0]
