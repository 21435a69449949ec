"""Benchmark: simulator slots per second under the greedy policy (optimal allocator, synthetic
profile), for N = 10, 50, 200 MDs and M = 3 ESs; medians over --repeats.

    python bench/simulator.py --slots 20 --repeats 3 --json bench-simulator.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

from grl_aecnn.mec import MecSimulator, Scenario
from grl_aecnn.policies import make_policy
from grl_aecnn.profile import synthetic_profile
from grl_aecnn.store import atomic_write_json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200])
    ap.add_argument("--n-es", type=int, default=3)
    ap.add_argument("--slots", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    profile = synthetic_profile(seed=0, n_samples=2000)
    rows = []
    for n in args.sizes:
        times = []
        for r in range(args.repeats):
            sim = MecSimulator(Scenario(n_md=n, n_es=args.n_es), profile, seed=r)
            pol = make_policy("greedy", r)
            t0 = time.perf_counter()
            for _ in range(args.slots):
                sim.step(pol.act(sim.observe()))
            times.append((time.perf_counter() - t0) / args.slots)
        med = statistics.median(times)
        rows.append({"n_md": n, "n_es": args.n_es, "ms_per_slot_median": 1e3 * med, "slots_per_s_median": 1 / med})
        print(f"N={n:4d} M={args.n_es}: {1e3 * med:8.2f} ms/slot, {1 / med:8.1f} slots/s")
    base = rows[0]["ms_per_slot_median"]
    for row in rows:
        row["cost_vs_first"] = row["ms_per_slot_median"] / base
    out = {"policy": "greedy", "allocator": "optimal", "profile": "synthetic", "slots": args.slots,
           "repeats": args.repeats, "python": platform.python_version(), "machine": platform.machine(), "rows": rows}
    if args.json:
        atomic_write_json(args.json, out)


if __name__ == "__main__":
    main()
