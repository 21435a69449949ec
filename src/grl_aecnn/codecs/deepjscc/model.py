"""Deep joint source-channel coding (Bourtsoulatze, Kurka, Gunduz 2019) of the input image.

    device:  image -> encoder (5 convs, two of stride 2, PReLU) -> (c, H/4, W/4) reals
             -> k = c*H*W/32 complex symbols -> power normalization (mean |s|^2 = 1 per image)
    channel: AWGN or slow Rayleigh fading (analog: symbols go on the air as they are)
    server:  received symbols -> decoder (5 transposed convs, PReLU, sigmoid) -> image in [0, 1]
             -> normalization -> the full backbone -> logits

The bandwidth ratio is k/n with n = C*H*W real values of the image (3,072 for CIFAR-10), so
c = 8, 16, 32 give k/n = 1/12, 1/6, 1/3. As in the paper the last encoder layer has no
activation before the normalization, so the symbols may take either sign.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 5, stride=stride, padding=2)


def _deconv(cin: int, cout: int, stride: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 5, stride=stride, padding=2, output_padding=stride - 1)


class DeepJscc(nn.Module):
    def __init__(self, code_channels: int, width: int, mean: tuple[float, ...], std: tuple[float, ...],
                 in_channels: int = 3):
        super().__init__()
        half = max(1, width // 2)
        self.encoder = nn.Sequential(
            _conv(in_channels, half, 2), nn.PReLU(half), _conv(half, width, 2), nn.PReLU(width),
            _conv(width, width, 1), nn.PReLU(width), _conv(width, width, 1), nn.PReLU(width),
            _conv(width, code_channels, 1),
        )
        self.decoder = nn.Sequential(
            _deconv(code_channels, width, 1), nn.PReLU(width), _deconv(width, width, 1), nn.PReLU(width),
            _deconv(width, width, 1), nn.PReLU(width), _deconv(width, half, 2), nn.PReLU(half),
            _deconv(half, in_channels, 2), nn.Sigmoid(),
        )
        self.code_channels = code_channels
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def symbols(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized images (N, C, H, W) -> complex symbols (N, k) with mean |s|^2 = 1 per image."""
        code = self.encoder(images).float()  # complex symbols need fp32 parts (bf16 training autocasts the convolutions)
        pairs = code.flatten(1).reshape(len(code), -1, 2)
        symbols = torch.view_as_complex(pairs.contiguous())
        power = symbols.abs().square().mean(1, keepdim=True)
        return symbols / power.sqrt()

    def code_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        _, h, w = image_shape
        return self.code_channels, h // 4, w // 4

    def reconstruct(self, received: torch.Tensor, image_shape: tuple[int, int, int]) -> torch.Tensor:
        """Received complex symbols (N, k) -> images in [0, 1] (N, C, H, W)."""
        code = torch.view_as_real(received).reshape(len(received), *self.code_shape(image_shape))
        return self.decoder(code)

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized images -> [0, 1] pixels (the reconstruction target)."""
        return images * self.std + self.mean

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean) / self.std

    @torch.no_grad()
    def load_narrower(self, parent: DeepJscc) -> None:
        """Take over a trained model of smaller width so that this one computes exactly its function.

        Every original filter gets its trained weights and zero weights on the extra input channels,
        so the extra filters (initialized as usual) have no effect until training gives them one;
        their zero weights still receive gradients, since the extra channels carry signal."""
        if parent.code_channels != self.code_channels or len(list(parent.modules())) != len(list(self.modules())):
            raise ValueError("load_narrower: the parent must have the same code_channels and layers")
        for mine, theirs in zip(self.modules(), parent.modules()):
            if isinstance(mine, (nn.Conv2d, nn.ConvTranspose2d)):
                out_dim, in_dim = (0, 1) if isinstance(mine, nn.Conv2d) else (1, 0)
                outs, ins = theirs.weight.shape[out_dim], theirs.weight.shape[in_dim]
                original = mine.weight.narrow(out_dim, 0, outs)
                original.zero_()
                original.narrow(in_dim, 0, ins).copy_(theirs.weight)
                mine.bias[:outs] = theirs.bias
            elif isinstance(mine, nn.PReLU):
                mine.weight[:len(theirs.weight)] = theirs.weight
