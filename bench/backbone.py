"""Backbone speed on this CPU: training images/s (fp32, and bf16 autocast as `precision: bf16` trains),
batch-1 inference latency, batch-128 inference images/s.

Run: python bench/backbone.py [--models resnet20 resnet50] [--repeats 5] [--json bench/results/backbone.json]
Figures are medians over repeats; ratios are against the first model, measured in the same run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from grl_aecnn.nets import MODELS, build_model
from grl_aecnn.store import atomic_write_json


def _median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_model(name: str, repeats: int, train_batch: int, infer_batch: int) -> dict:
    torch.manual_seed(0)
    model = build_model(name).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x_train = torch.randn(train_batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y_train = torch.randint(0, 10, (train_batch,))

    def train_step(bf16: bool):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x_train)
        loss = F.cross_entropy(logits.float(), y_train)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    train_s = _median_seconds(lambda: train_step(False), repeats)
    train_bf16_s = _median_seconds(lambda: train_step(True), repeats)
    model.eval()
    x1 = torch.randn(1, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    xb = torch.randn(infer_batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        latency_s = _median_seconds(lambda: model(x1), repeats * 10, warmup=5)
        batch_s = _median_seconds(lambda: model(xb), repeats)
    return {
        "model": name,
        "train_images_per_s": train_batch / train_s,
        "train_images_per_s_bf16": train_batch / train_bf16_s,
        "ratio_train_bf16_vs_fp32": train_s / train_bf16_s,
        "infer_latency_ms_batch1": latency_s * 1e3,
        "infer_images_per_s_batch": infer_batch / batch_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet32", "resnet56", "resnet50"],
                        choices=sorted(MODELS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-batch", type=int, default=128)
    parser.add_argument("--infer-batch", type=int, default=128)
    parser.add_argument("--json", type=Path, default=Path("bench/results/backbone.json"))
    args = parser.parse_args()

    rows = [bench_model(m, args.repeats, args.train_batch, args.infer_batch) for m in args.models]
    base = rows[0]
    print(f"{'model':10} {'train img/s':>12} {'x base':>7} {'bf16 img/s':>11} {'x fp32':>7} {'lat b=1 ms':>11} "
          f"{'x base':>7} {'infer img/s':>12} {'x base':>7}")
    for r in rows:
        r["ratio_train_vs_base"] = r["train_images_per_s"] / base["train_images_per_s"]
        r["ratio_latency_vs_base"] = r["infer_latency_ms_batch1"] / base["infer_latency_ms_batch1"]
        r["ratio_infer_vs_base"] = r["infer_images_per_s_batch"] / base["infer_images_per_s_batch"]
        print(f"{r['model']:10} {r['train_images_per_s']:12.1f} {r['ratio_train_vs_base']:7.2f} "
              f"{r['train_images_per_s_bf16']:11.1f} {r['ratio_train_bf16_vs_fp32']:7.2f} "
              f"{r['infer_latency_ms_batch1']:11.2f} {r['ratio_latency_vs_base']:7.2f} "
              f"{r['infer_images_per_s_batch']:12.1f} {r['ratio_infer_vs_base']:7.2f}")
    result = {
        "baseline": base["model"],
        "repeats": args.repeats,
        "train_batch": args.train_batch,
        "infer_batch": args.infer_batch,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "results": rows,
    }
    atomic_write_json(args.json, result)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
