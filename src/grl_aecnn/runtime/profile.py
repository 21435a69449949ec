"""The testbed's option profile, measured on the very images the devices hold: sample i of the
profile is image i of ImageSet.take(images), so the simulator and the real run see the same
payload sizes and the same correctness for every task."""

from __future__ import annotations

import time

import numpy as np
import torch

from grl_aecnn.codecs import Codec
from grl_aecnn.data import ImageSet, to_tensor
from grl_aecnn.nets import count_flops
from grl_aecnn.profile import OptionMeta, OptionProfile
from grl_aecnn.zoo import load_backbone


def option_name(codec: Codec) -> str:
    """The profile's name of a codec level, as in the synthetic profile ("aecnn:L6", "jpeg:q50")."""
    if codec.codec_id == "jpeg":
        return f"jpeg:q{codec.level}"
    if codec.split is None:  # raw and PNG have a single level
        return codec.codec_id
    return f"{codec.codec_id}:L{codec.level}"


@torch.no_grad()
def measure_profile(model: str, codecs: dict[tuple[str, int], Codec], images: ImageSet) -> OptionProfile:
    """Local inference and every codec level on every image: real bytes, real correctness, FLOPs,
    and the mean CPU time per image (metadata; the simulator and the testbed pace by FLOPs)."""
    backbone = load_backbone(model)
    x = to_tensor(images.images, images.mean, images.std)
    labels = images.labels
    start = time.perf_counter()
    local_correct = backbone(x).argmax(1).numpy() == labels
    local_ms = 1e3 * (time.perf_counter() - start) / len(images)
    flops = count_flops(backbone, torch.zeros(1, *backbone.input_shape))
    options = [OptionMeta("local", "local", float(flops), 0.0, local_ms, 0.0)]
    payload, correct = [np.zeros(len(images), np.int64)], [local_correct]
    for key in sorted(codecs):
        codec = codecs[key]
        enc_s = dec_s = 0.0
        sizes, right = np.zeros(len(images), np.int64), np.zeros(len(images), bool)
        for i in range(len(images)):
            t0 = time.perf_counter()
            data = codec.encode(x[i])
            t1 = time.perf_counter()
            right[i] = int(codec.decode(data).argmax()) == labels[i]
            enc_s, dec_s = enc_s + t1 - t0, dec_s + time.perf_counter() - t1
            sizes[i] = len(data)
        options.append(OptionMeta(option_name(codec), "bytes", float(codec.device_flops), float(codec.server_flops),
                                  1e3 * enc_s / len(images), 1e3 * dec_s / len(images)))
        payload.append(sizes)
        correct.append(right)
    return OptionProfile(model=model, dataset=f"{images.name}-{images.split}-take{len(images)}",
                         dataset_checksum=images.checksum.removeprefix("sha256:"), options=tuple(options),
                         payload=np.stack(payload), correct=np.stack(correct))
