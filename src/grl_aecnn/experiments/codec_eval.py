"""Codec measurements: every level of one codec through real encode -> bytes -> decode, one image at
a time (`evaluate_codec`), and all codecs side by side from one profile build (`compare_codecs`)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
from rich.progress import Progress

from grl_aecnn.codecs import Codec
from grl_aecnn.data import ImageSet, to_tensor
from grl_aecnn.experiments.plots import pyplot, save_figure
from grl_aecnn.nets import split_shape
from grl_aecnn.nets.training import evaluate
from grl_aecnn.profile import OptionProfile, ProfileBuildConfig, build_profile
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
    plt = pyplot()
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
    return save_figure(fig, path)


COMPARED_CODECS = ("aecnn", "bottlenetpp", "deepjscc", "jpeg", "png", "raw")


def compare_codecs(model: str, limit: int | None, codecs: tuple[str, ...] = COMPARED_CODECS,
                   show_progress: bool = True) -> dict:
    """Every shipped codec on the same test images, from one profile build (batched, real bytes):
    accuracy vs bytes per image for the digital codecs, accuracy vs SNR for the analog ones."""
    # Latencies are not compared here, so one timing per side is enough.
    cfg = ProfileBuildConfig(model=model, codecs=codecs, limit=limit, latency_samples=1)
    return summarize_profile(build_profile(cfg, show_progress=show_progress))


def summarize_profile(profile: OptionProfile) -> dict:
    """The comparison of compare_codecs from an option profile already measured (e.g. the shipped one)."""
    model = profile.model
    image_values = int(np.prod(load_backbone(model).input_shape))
    top1 = profile.accuracy()
    curves: dict[str, list[dict]] = {}
    analog = []
    for i, option in enumerate(profile.options):
        codec, _, level = option.name.partition(":")
        if option.kind == "bytes":
            curves.setdefault(codec, []).append({"option": option.name, "level": level or None,
                                                 "bytes_mean": float(profile.payload[i].mean()), "top1": float(top1[i])})
        elif option.kind == "symbols":
            row = profile.snr_correct[profile.symbols_row(i)]
            analog += [{"option": option.name, "symbols": int(profile.payload[i, 0]),
                        "bandwidth_ratio": float(profile.payload[i, 0]) / image_values, "snr_db": float(snr),
                        "top1": float(row[g].mean())} for g, snr in enumerate(profile.snr_grid_db)]
    return {"model": model, "n": profile.n_samples, "dataset_checksum": profile.dataset_checksum,
            "top1_uncompressed": float(top1[profile.local_index]), "curves": curves, "deepjscc": analog,
            "missing_codecs": profile.provenance.get("missing_codecs", []),
            "codec_weights_sha256": profile.provenance.get("codecs", {})}


def plot_accuracy_vs_snr(rows: list[dict], reference_top1: float, path: Path, title: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for option in dict.fromkeys(r["option"] for r in rows):
        mine = [r for r in rows if r["option"] == option]
        ax.plot([r["snr_db"] for r in mine], [100 * r["top1"] for r in mine], marker="o",
                label=f"{option} (k/n = {mine[0]['bandwidth_ratio']:.3f})")
    ax.axhline(100 * reference_top1, color="grey", linestyle="--", label="uncompressed")
    ax.set_xlabel("channel SNR (dB)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return save_figure(fig, path)
