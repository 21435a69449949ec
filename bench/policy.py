"""Benchmark: median decision time per slot (observation -> actions) of GRL-AECNN, DROO-AECNN, greedy
and exhaustive search where it is feasible (with the shipped profile's 15 options not even at N = 5
under the default --max-joint), for N = 5, 10 and 20 MDs (M = 3, default scenario otherwise),
in the same run; wall and CPU time, CPU-time ratios to greedy; JSON to bench/results/policy.json.

    python bench/policy.py --slots 200

GRL-AECNN uses the shipped weights (zoo grl-default); DROO's network fixes N, so a DROO network of
the right size is built (timing does not depend on its weights: the shipped one is for N = 10).
Exhaustive search runs only where its work (M (1+K)^N + (1+M)^N evaluations) is below --max-joint.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from grl_aecnn.config import load_config
from grl_aecnn.mec import MecSimulator, Scenario
from grl_aecnn.mec.simulator import MecError
from grl_aecnn.policies import make_policy
from grl_aecnn.policies.grl import AgentConfig, build_agent
from grl_aecnn.policies.registry import default_profile
from grl_aecnn.policies.search import ExhaustiveSearch
from grl_aecnn.store import atomic_write_json


def timed(policies: dict, scenario: Scenario, profile, slots: int, seed: int) -> dict[str, dict[str, float]]:
    """Per policy: median, 25th and 75th percentile of the wall and CPU milliseconds of `act` over
    `slots` slots. The policies decide the SAME observations, in turn within each slot (the order
    rotates), so a busy or slow phase of a shared machine hits all of them alike and the ratios hold
    even when the absolute figures drift; the simulator follows greedy's actions (untimed). CPU time
    (this thread) is what the decision costs; the wall time also holds time given to other processes."""
    sim = MecSimulator(scenario, profile, seed=seed)
    names = list(policies)
    for pol in policies.values():
        pol.act(sim.observe())  # warm-up (lazy imports, first allocations)
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    actions: dict = {}
    for slot in range(slots):
        obs = sim.observe()
        for j in range(len(names)):
            name = names[(slot + j) % len(names)]
            t0, c0 = time.perf_counter(), time.thread_time()
            actions[name] = policies[name].act(obs)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.thread_time() - c0)
        sim.step(actions["greedy"])
    q = lambda xs: [1e3 * float(v) for v in np.percentile(xs, [50, 25, 75])]  # noqa: E731
    return {name: dict(zip(("wall_ms", "wall_p25_ms", "wall_p75_ms", "cpu_ms", "cpu_p25_ms", "cpu_p75_ms"),
                           q(wall[name]) + q(cpu[name]))) for name in names}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="configs/scenarios/default.yaml")
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--slots", type=int, default=200)
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
        scenario = base.replaced(n_md=n)
        k = sum(profile.names[o].startswith(tuple(droo_cfg.options)) for o in profile.offload_indices)
        droo = build_agent(droo_cfg, n_md=n, n_es=scenario.n_es, n_options=k)
        policies = {"grl": grl, "droo": droo, "greedy": make_policy("greedy")}
        if scenario.n_es * (1 + k) ** n + (1 + scenario.n_es) ** n <= args.max_joint:
            policies["exhaustive"] = ExhaustiveSearch(max_joint=args.max_joint)
        try:
            times = timed(policies, scenario, profile, args.slots, seed=n)
        except MecError as exc:
            print(f"N={n}: skipped ({exc})")
            continue
        g = times["greedy"]["cpu_ms"]
        row = {"n_md": n, "n_es": scenario.n_es, "options": k,
               "median_ms": {name: t["wall_ms"] for name, t in times.items()},
               "median_cpu_ms": {name: t["cpu_ms"] for name, t in times.items()},
               "cpu_ratio_to_greedy": {name: t["cpu_ms"] / g for name, t in times.items()}, "quartiles_ms": times}
        rows.append(row)
        print(f"N={n:3d} M={scenario.n_es}: " + "  ".join(
            f"{name} {t['wall_ms']:6.2f} ms wall [{t['wall_p25_ms']:.2f}, {t['wall_p75_ms']:.2f}], {t['cpu_ms']:6.2f} ms CPU "
            f"(x{t['cpu_ms'] / g:5.2f})" for name, t in times.items()))
    load = os.getloadavg()
    out = {"scenario": base.name, "profile": source, "slots": args.slots, "torch_threads": 1,
           "load_average_1_5_15": list(load), "cpu_count": os.cpu_count(), "python": platform.python_version(),
           "machine": platform.machine(), "rows": rows,
           "note": "median (and quartiles) of the wall and thread CPU time of Policy.act per slot; the policies decide the same "
                   "observations in turn, so ratios hold while a shared machine's speed drifts; load_average shows how busy it was"}
    atomic_write_json(args.json, out)
    print(f"wrote {args.json} (load average {load[0]:.2f})")


if __name__ == "__main__":
    main()
