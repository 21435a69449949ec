import pytest
import torch

from grl_aecnn.errors import ModelNotFoundError, SplitPointError
from grl_aecnn.nets import MODELS, build_model, count_flops, split_table

EXPECTED_SPLITS = {
    "resnet20": {"stem": (16, 32, 32), "layer1": (16, 32, 32), "layer2": (32, 16, 16), "layer3": (64, 8, 8)},
    "resnet50": {"stem": (64, 32, 32), "layer1": (256, 32, 32), "layer2": (512, 16, 16),
                 "layer3": (1024, 8, 8), "layer4": (2048, 4, 4)},
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tail_of_head_equals_forward_exactly(name):
    torch.manual_seed(0)
    model = build_model(name)
    # Random BN statistics and affine parameters, so no branch is trivially zero.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        full = model(x)
        for split in model.split_names:
            assert torch.equal(model.tail(model.head(x, split), split), full), split


@pytest.mark.parametrize("name", sorted(EXPECTED_SPLITS))
def test_split_table(name):
    model = build_model(name)
    rows = split_table(model)
    assert {r.name: r.shape for r in rows} == EXPECTED_SPLITS[name]
    total = count_flops(model.eval(), torch.zeros(1, 3, 32, 32))
    for r in rows:
        assert r.bytes_fp32 == 4 * torch.Size(r.shape).numel()
        assert r.head_flops + r.tail_flops == total
    assert [r.head_flops for r in rows] == sorted(r.head_flops for r in rows)


def test_resnet_depths_have_the_right_number_of_blocks():
    counts = {name: sum(len(stage) for key, stage in build_model(name).stages.items() if key != "stem")
              for name in ("resnet20", "resnet32", "resnet56", "resnet50")}
    assert counts == {"resnet20": 9, "resnet32": 15, "resnet56": 27, "resnet50": 16}
    assert sum(p.numel() for p in build_model("resnet20").parameters()) < 300_000


def test_grey_input_and_class_count():
    model = build_model("resnet20", num_classes=7, in_channels=1, image_size=28).eval()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 7)


def test_unknown_names():
    with pytest.raises(ModelNotFoundError, match="resnet20"):
        build_model("vgg16")
    with pytest.raises(SplitPointError, match="layer3"):
        build_model("resnet20").head(torch.zeros(1, 3, 32, 32), "layer9")
