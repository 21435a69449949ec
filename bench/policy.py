"""Benchmark: median decision time per slot (observation -> actions) of GRL-AECNN, DROO-AECNN, greedy
and, where feasible (N = 5), exhaustive search, for N = 5, 10 and 20 MDs (M = 3, default scenario otherwise),
in the same run; wall and CPU time, CPU-time ratios to greedy; JSON to bench/results/policy.json.

    python bench/policy.py --slots 50

GRL-AECNN uses the shipped weights (zoo grl-default); DROO's network fixes N, so a DROO network of
the right size is built (timing does not depend on its weights: the shipped one is for N = 10).
Exhaustive search runs only where its work (M (1+K)^N + (1+M)^N evaluations) is below --max-joint.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from grl_aecnn.config import load_config
from grl_aecnn.mec import MecSimulator, Scenario
from grl_aecnn.mec.simulator import MecError
from grl_aecnn.policies import make_policy
from grl_aecnn.policies.grl import AgentConfig, build_agent
from grl_aecnn.policies.registry import default_profile
from grl_aecnn.policies.search import ExhaustiveSearch
from grl_aecnn.store import atomic_write_json


def timed(policy, scenario: Scenario, profile, slots: int, seed: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `act` over `slots` slots (the simulator steps are not timed).
    CPU time (this thread) is what the decision costs; on a shared machine the wall time also holds
    the time the scheduler gave to other processes."""
    sim = MecSimulator(scenario, profile, seed=seed)
    policy.act(sim.observe())  # warm-up (lazy imports, first allocations)
    wall, cpu = [], []
    for _ in range(slots):
        obs = sim.observe()
        t0, c0 = time.perf_counter(), time.thread_time()
        actions = policy.act(obs)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        sim.step(actions)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="configs/scenarios/default.yaml")
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--slots", type=int, default=50)
    ap.add_argument("--max-joint", type=int, default=200_000)
    ap.add_argument("--json", default="bench/results/policy.json")
    args = ap.parse_args()
    torch.set_num_threads(1)  # tiny networks: one thread is fastest and leaves the other core alone
    base = load_config(args.scenario, Scenario)
    profile, source = default_profile()
    grl = make_policy("grl")
    droo_cfg = load_config("configs/policies/droo.yaml", AgentConfig)  # the action set of GRL-AECNN too
    rows = []
    for n in args.sizes:
        scenario = base.model_copy(update={"n_md": n})
        k = sum(profile.names[o].startswith(tuple(droo_cfg.options)) for o in profile.offload_indices)
        droo = build_agent(droo_cfg, n_md=n, n_es=scenario.n_es, n_options=k)
        policies = {"grl": grl, "droo": droo, "greedy": make_policy("greedy")}
        if scenario.n_es * (1 + k) ** n + (1 + scenario.n_es) ** n <= args.max_joint:
            policies["exhaustive"] = ExhaustiveSearch(max_joint=args.max_joint)
        row = {"n_md": n, "n_es": scenario.n_es, "options": k, "median_ms": {}, "median_cpu_ms": {}}
        for name, pol in policies.items():
            try:
                wall, cpu = timed(pol, scenario, profile, args.slots, seed=n)
            except MecError as exc:
                print(f"N={n} {name}: skipped ({exc})")
                continue
            row["median_ms"][name], row["median_cpu_ms"][name] = 1e3 * wall, 1e3 * cpu
        g = row["median_cpu_ms"]["greedy"]
        row["cpu_ratio_to_greedy"] = {name: ms / g for name, ms in row["median_cpu_ms"].items()}
        rows.append(row)
        print(f"N={n:3d} M={scenario.n_es}: " + "  ".join(
            f"{name} {row['median_ms'][name]:7.2f} ms wall, {ms:7.2f} ms CPU (x{ms / g:5.2f})"
            for name, ms in row["median_cpu_ms"].items()))
    load = os.getloadavg()
    out = {"scenario": base.name, "profile": source, "slots": args.slots, "torch_threads": 1,
           "load_average_1_5_15": list(load), "cpu_count": os.cpu_count(), "python": platform.python_version(),
           "machine": platform.machine(), "rows": rows,
           "note": "median wall and thread CPU time of Policy.act per slot; load_average shows how busy the machine was"}
    atomic_write_json(args.json, out)
    print(f"wrote {args.json} (load average {load[0]:.2f})")


if __name__ == "__main__":
    main()
