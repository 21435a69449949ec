"""Every level of a codec through real encode -> bytes -> decode, one image at a time."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
from rich.progress import Progress

from grl_aecnn.codecs import Codec
from grl_aecnn.data import ImageSet, to_tensor
from grl_aecnn.nets import split_shape
from grl_aecnn.nets.training import evaluate
from grl_aecnn.zoo import load_backbone


def evaluate_level(codec: Codec, test_set: ImageSet, split_bytes_fp32: int, progress: Progress | None = None) -> dict:
    images = to_tensor(test_set.images, test_set.mean, test_set.std)
    sizes, correct, encode_ms, decode_ms = [], 0, [], []
    task = progress.add_task(f"{codec.codec_id} level {codec.level}", total=len(images)) if progress else None
    for image, label in zip(images, test_set.labels):
        t0 = time.perf_counter()
        data = codec.encode(image)
        t1 = time.perf_counter()
        logits = codec.decode(data)
        t2 = time.perf_counter()
        sizes.append(len(data))
        correct += int(int(logits.argmax()) == int(label))
        encode_ms.append((t1 - t0) * 1e3)
        decode_ms.append((t2 - t1) * 1e3)
        if progress:
            progress.advance(task)
    sizes_arr = np.asarray(sizes)
    return {
        "level": codec.level,
        "bytes_mean": float(sizes_arr.mean()),
        "bytes_median": float(np.median(sizes_arr)),
        "bytes_p95": float(np.percentile(sizes_arr, 95)),
        "ratio": split_bytes_fp32 / float(sizes_arr.mean()),
        "top1": correct / len(images),
        "encode_ms_median": statistics.median(encode_ms),
        "decode_ms_median": statistics.median(decode_ms),
        "device_flops": codec.device_flops,
        "server_flops": codec.server_flops,
    }


def evaluate_codec(codec_name: str, model: str, levels: list[Codec], test_set: ImageSet, show_progress: bool = True) -> dict:
    backbone = load_backbone(model)
    split = levels[0].split
    # The ratio is against the float32 tensor the codec replaces: the split tensor, or the input image.
    split_bytes = 4 * int(np.prod(split_shape(backbone, split) if split else backbone.input_shape))
    top1_uncompressed = evaluate(backbone, test_set)
    with Progress(disable=not show_progress) as progress:
        rows = [evaluate_level(codec, test_set, split_bytes, progress) for codec in levels]
    for row in rows:
        row["top1_drop"] = top1_uncompressed - row["top1"]
    return {"codec": codec_name, "model": model, "split": split, "split_bytes_fp32": split_bytes,
            "n": len(test_set), "dataset_checksum": test_set.checksum, "top1_uncompressed": top1_uncompressed,
            "levels": rows}


def plot_accuracy_vs_bytes(curves: dict[str, list[dict]], reference_top1: float, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in curves.items():
        rows = sorted(rows, key=lambda r: r["bytes_mean"])
        ax.plot([r["bytes_mean"] for r in rows], [100 * r["top1"] for r in rows], marker="o", label=name)
    ax.axhline(100 * reference_top1, color="grey", linestyle="--", label="uncompressed")
    ax.set_xscale("log")
    ax.set_xlabel("bytes per image (mean, real coded bytes)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
