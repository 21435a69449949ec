"""CIFAR ResNets (He et al., 2016): ResNet-20/32/56 with basic blocks, and a bottleneck ResNet-50.

The CIFAR variants use a 3x3 stem without max pooling. Shortcuts that change shape are 1x1
convolutions with batch norm (option B). Split points are the stage boundaries: after the stem and
after each residual stage.
"""

from __future__ import annotations

from torch import nn

from grl_aecnn.nets.splitnet import SplitNet


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out)]


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(*_conv_bn(c_in, c_out, 1, stride))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(c_in, width, 3, stride), nn.ReLU(inplace=True), *_conv_bn(width, width, 3))
        self.shortcut = _shortcut(c_in, width, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        c_out = width * self.expansion
        self.body = nn.Sequential(
            *_conv_bn(c_in, width, 1), nn.ReLU(inplace=True),
            *_conv_bn(width, width, 3, stride), nn.ReLU(inplace=True),
            *_conv_bn(width, c_out, 1),
        )
        self.shortcut = _shortcut(c_in, c_out, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


def _resnet(
    block: type[BasicBlock] | type[Bottleneck],
    depths: list[int],
    widths: list[int],
    stem_width: int,
    num_classes: int,
    in_channels: int,
    image_size: int,
) -> SplitNet:
    stages: dict[str, nn.Module] = {
        "stem": nn.Sequential(*_conv_bn(in_channels, stem_width, 3), nn.ReLU(inplace=True)),
    }
    c_in = stem_width
    for i, (depth, width) in enumerate(zip(depths, widths)):
        blocks = []
        for j in range(depth):
            blocks.append(block(c_in, width, 2 if (j == 0 and i > 0) else 1))
            c_in = width * block.expansion
        stages[f"layer{i + 1}"] = nn.Sequential(*blocks)
    classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))
    net = SplitNet(stages, classifier, (in_channels, image_size, image_size))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    # Zero the last BN of each residual branch so every block starts as the identity (Goyal et al., 2017).
    for m in net.modules():
        if isinstance(m, (BasicBlock, Bottleneck)):
            nn.init.zeros_(m.body[-1].weight)
    return net


def cifar_resnet(depth: int, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> SplitNet:
    """ResNet-(6n+2) with basic blocks and widths 16/32/64."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    return _resnet(BasicBlock, [n, n, n], [16, 32, 64], 16, num_classes, in_channels, image_size)


def cifar_resnet50(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> SplitNet:
    """Bottleneck ResNet-50 (3-4-6-3) with a CIFAR stem, as used in the paper's experiments."""
    return _resnet(Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], 64, num_classes, in_channels, image_size)
