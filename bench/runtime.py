"""Benchmark of the split-inference runtime on loopback (issue 8), real compute only (the servers'
emulated capacity is set far above this CPU, so no pacing is added):

* end-to-end latency per image for each AECNN level: the device's head + encoder in this process,
  the POST to an edge-server process, its decode + tail, the answer back; next to local inference
  of the whole backbone in this process (medians over --images test images, after a warm-up pass);
* server throughput with batching on (max_batch 8) vs off (max_batch 1): two server processes
  started together, loaded in turn (on, off, on, off, ...) by --clients concurrent clients without
  deadlines; answers/s medians per setting and their ratio, from the same run.

    export GRL_AECNN_DATA=/path/to/datasets OMP_NUM_THREADS=1
    python bench/runtime.py --json bench/results/runtime.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import torch

from grl_aecnn.data import load_dataset, to_tensor
from grl_aecnn.runtime.auth import authorization
from grl_aecnn.runtime.config import AuthConfig, EdgeServerConfig
from grl_aecnn.runtime.load import INFER_PATH, encode_frames, run_load
from grl_aecnn.runtime.server import load_served_codecs
from grl_aecnn.runtime.testbed import Processes
from grl_aecnn.store import atomic_write_json
from grl_aecnn.zoo import load_backbone, load_card

MODEL = "resnet20-cifar10"
UNPACED_FLOPS = 1e18  # emulated server capacity far above any CPU: only real compute counts


async def latency_ms(url: str, codecs: dict, backbone, x: torch.Tensor, secret: str) -> tuple[float, dict]:
    """Medians over the images: local inference (the whole backbone in this process), and per level
    encode (head + encoder), round trip (POST to answer) and total. Local and the levels take turns
    image by image, so a change in the host's load hits them alike."""
    scheme = AuthConfig().scheme
    local = []
    times = {key: {"encode": [], "trip": [], "total": [], "bytes": []} for key in codecs}
    async with aiohttp.ClientSession() as session:
        for i in range(-1, len(x)):  # i = -1: an unmeasured warm-up (lazy kernels, the connection)
            t0 = time.perf_counter()
            with torch.no_grad():
                backbone(x[max(i, 0)][None]).argmax()
            if i >= 0:
                local.append(time.perf_counter() - t0)
            for key, codec in codecs.items():
                t0 = time.perf_counter()
                with torch.no_grad():
                    frame = codec.encode(x[max(i, 0)])
                t1 = time.perf_counter()
                headers = {"Authorization": authorization(scheme, secret, "POST", INFER_PATH, frame),
                           "Content-Type": "application/octet-stream"}
                async with session.post(url + INFER_PATH, data=frame, headers=headers) as response:
                    answer = await response.json()
                t2 = time.perf_counter()
                if answer.get("status") != "ok":
                    raise RuntimeError(f"{key}: {answer}")
                if i >= 0:
                    for part, value in (("encode", t1 - t0), ("trip", t2 - t1), ("total", t2 - t0),
                                        ("bytes", len(frame))):
                        times[key][part].append(value)
    return 1e3 * statistics.median(local), {f"{codec_id}:{level}": {"encode_ms": 1e3 * statistics.median(t["encode"]),
                                    "round_trip_ms": 1e3 * statistics.median(t["trip"]),
                                    "total_ms": 1e3 * statistics.median(t["total"]),
                                    "frame_bytes": statistics.median(t["bytes"])}
            for (codec_id, level), t in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=50, help="test images per level for the latency")
    ap.add_argument("--throughput-levels", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--requests", type=int, default=1500, help="per throughput run")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2, help="throughput runs per setting and level (alternating)")
    ap.add_argument("--json", type=Path, default=Path("bench/results/runtime.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    batched = EdgeServerConfig(name="batch-on", model=MODEL, capacity_flops=UNPACED_FLOPS, max_batch=8)
    single = batched.model_copy(update={"name": "batch-off", "max_batch": 1})
    codecs = load_served_codecs(MODEL, batched.codecs)
    images = load_dataset(load_card(MODEL)["dataset"]["name"], "test").take(args.images)
    x = to_tensor(images.images, images.mean, images.std)
    secret = secrets.token_urlsafe(32)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="grl-bench-") as run_dir:
        procs = Processes(Path(run_dir), {**os.environ, batched.auth.token_env: secret})
        try:
            for cfg in (batched, single):
                procs.start_with_config(cfg.name, ["serve", "edge"], cfg, [])
            urls = {name: ready["url"] for name, ready in procs.wait_ready(300).items()}
            local, latency = asyncio.run(latency_ms(urls["batch-off"], codecs, load_backbone(MODEL), x, secret))
            throughput = {}
            for level in args.throughput_levels:
                frames = encode_frames([codecs[("aecnn", level)]], images)
                runs = {"batch-on": [], "batch-off": []}
                for _ in range(args.repeats):
                    for name, results in runs.items():
                        result = asyncio.run(run_load(urls[name], frames, batched.auth.scheme, secret, args.requests,
                                                      args.clients, max_s=120.0))
                        if result["unexpected"] or result["counts"].get("ok") != args.requests:
                            raise RuntimeError(f"{name}, level {level}: {result['counts']}")
                        results.append(result)
                on, off = (statistics.median(r["ok_per_s"] for r in runs[n]) for n in ("batch-on", "batch-off"))
                throughput[f"aecnn:{level}"] = {
                    "batch_on_per_s": on, "batch_off_per_s": off, "ratio_on_over_off": on / off,
                    "mean_batch_size_on": statistics.median(r["mean_batch_size"] for r in runs["batch-on"]),
                    "p50_ms_on": statistics.median(r["latency_ms"]["p50"] for r in runs["batch-on"]),
                    "p50_ms_off": statistics.median(r["latency_ms"]["p50"] for r in runs["batch-off"]),
                    "runs_per_s": {n: [r["ok_per_s"] for r in rs] for n, rs in runs.items()}}
        finally:
            procs.stop()
    result = {"model": MODEL, "images": args.images, "local_ms": local,
              "end_to_end_ms": {k: {**v, "vs_local": v["total_ms"] / local} for k, v in latency.items()},
              "throughput": throughput, "clients": args.clients, "requests_per_run": args.requests,
              "repeats": args.repeats, "server": batched.model_dump(exclude={"auth", "name", "max_batch"}),
              "wall_s": time.time() - started,
              "host": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg(), "python": platform.python_version(),
                       "torch": torch.__version__},
              "command": " ".join(["python", "bench/runtime.py", *sys.argv[1:]])}
    atomic_write_json(args.json, result)
    print(f"local inference: {local:.2f} ms per image")
    for key, row in result["end_to_end_ms"].items():
        print(f"{key}: {row['frame_bytes']:.0f} B, encode {row['encode_ms']:.2f} ms + round trip "
              f"{row['round_trip_ms']:.2f} ms = {row['total_ms']:.2f} ms ({row['vs_local']:.2f}x local)")
    for key, row in throughput.items():
        print(f"{key}: batching on {row['batch_on_per_s']:.0f}/s (mean batch {row['mean_batch_size_on']:.1f}), "
              f"off {row['batch_off_per_s']:.0f}/s: {row['ratio_on_over_off']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
