"""Load test of one edge server on loopback (issue 8 acceptance): >= 20,000 requests from >= 20
concurrent aiohttp clients (one connection each), real AECNN frames of real CIFAR-10 test images at
every shipped level, each with a deadline; reports throughput, client-side p50/p99 latency and the
count of every outcome, next to the server's own Prometheus counters. The only outcomes expected are
"ok" and "late" (the server's EDF queue answers "late" at once for a job that can no longer meet
its deadline); anything else is listed under "unexpected" and makes the script exit 1.

Bounded: at most --requests requests, and no new request after --max-s seconds.

    export GRL_AECNN_DATA=/path/to/datasets OMP_NUM_THREADS=1
    python bench/runtime_load.py --json bench/results/runtime-load.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import secrets
import sys
import tempfile
import urllib.request
from pathlib import Path

from grl_aecnn.data import load_dataset
from grl_aecnn.runtime.config import AuthConfig, EdgeServerConfig
from grl_aecnn.runtime.load import encode_frames, run_load
from grl_aecnn.runtime.server import load_served_codecs
from grl_aecnn.runtime.testbed import Processes
from grl_aecnn.store import atomic_write_json
from grl_aecnn.zoo import load_card

MODEL = "resnet20-cifar10"
_COUNTER = re.compile(r'^grl_edge_requests_total\{status="(?P<status>[a-z_]+)"\} (?P<n>[0-9.e+]+)$', re.MULTILINE)


def server_counts(url: str) -> dict[str, int]:
    """The server's grl_edge_requests_total{status} counters."""
    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
        text = response.read().decode()
    return {m["status"]: int(float(m["n"])) for m in _COUNTER.finditer(text)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--deadline-ms", type=float, default=100.0, help="each request's deadline, from when it is sent")
    ap.add_argument("--images", type=int, default=32, help="test images encoded at every level (frames cycle)")
    ap.add_argument("--max-s", type=float, default=480.0, help="no new request after this many seconds")
    ap.add_argument("--json", type=Path, default=Path("bench/results/runtime-load.json"))
    args = ap.parse_args()

    server_cfg = EdgeServerConfig(name="es0", model=MODEL)
    codecs = load_served_codecs(MODEL, server_cfg.codecs)
    images = load_dataset(load_card(MODEL)["dataset"]["name"], "test").take(args.images)
    frames = encode_frames(list(codecs.values()), images)
    secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="grl-load-") as run_dir:
        procs = Processes(Path(run_dir), {**os.environ, server_cfg.auth.token_env: secret})
        try:
            procs.start_with_config("es0", ["serve", "edge"], server_cfg, [])
            url = procs.wait_ready(300)["es0"]["url"]
            before = server_counts(url)  # zero: a fresh server (its warm-up does not go through HTTP)
            result = asyncio.run(run_load(url, frames, AuthConfig().scheme, secret, args.requests, args.clients,
                                          args.deadline_ms, args.max_s))
            after = server_counts(url)
        finally:
            procs.stop()
    result["server_counts"] = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}
    result["server"] = server_cfg.model_dump(exclude={"auth"})
    result["frames"] = {"images": args.images, "levels": [list(k) for k in codecs],
                        "bytes_min": min(map(len, frames)), "bytes_max": max(map(len, frames))}
    result["host"] = {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg(), "python": platform.python_version()}
    result["command"] = " ".join(["python", "bench/runtime_load.py", *sys.argv[1:]])
    atomic_write_json(args.json, result)
    lat = result["latency_ms"]
    print(f"{result['sent']} requests from {args.clients} clients in {result['wall_s']:.1f} s: "
          f"{result['throughput_per_s']:.0f} answers/s, p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms; "
          f"outcomes {result['counts']}; server {result['server_counts']}")
    return 1 if result["unexpected"] or result["stopped_by_time_limit"] else 0


if __name__ == "__main__":
    sys.exit(main())
