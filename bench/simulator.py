"""Benchmark: simulator slots per second under the greedy policy (optimal allocator, synthetic
profile), for N = 10, 50, 200 MDs and M = 3 ESs; medians over --repeats.

Three figures per size, each a median over repeats, in CPU time of this process (the figure to
quote on a shared machine: other jobs stretch the wall clock, not the work done) and wall clock:
* `sim`: the simulator alone, `observe()` + `step()` (allocation, outcomes, event record, channel
  and load evolution), replaying the greedy policy's decisions recorded in a first pass (same seed,
  so the same slots);
* `policy`: the greedy policy's `act()` (policies/planner.py builds its per-slot tables);
* `end_to_end`: observe + act + step, what `grl-aecnn simulate --policy greedy` pays per slot.

Batched (`MecBatch`, E environments of the first size stepped in lockstep, `--batch-envs`): slots
per second counted over all environments (E per step), for `step` alone on recorded greedy actions
and for `observe` of every environment + `step` (what a policy fed by Observations pays on top of
its own decisions). Greedy's own `act` is per environment and is not batched.

    OMP_NUM_THREADS=1 python bench/simulator.py --json bench/results/simulator.json
    # the same script on an older checkout: PYTHONPATH=<old>/src python bench/simulator.py --json before.json
    python bench/simulator.py --baseline before.json --json bench/results/simulator.json
    # or paired, repeat by repeat (fairer on a shared machine):
    python bench/simulator.py --baseline-src <old>/src --json bench/results/simulator.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from grl_aecnn.mec import MecBatch, MecSimulator, Scenario
from grl_aecnn.policies import make_policy
from grl_aecnn.profile import synthetic_profile
from grl_aecnn.store import atomic_write_json


def measure(n: int, n_es: int, slots: int, seed: int, profile) -> dict[str, float]:
    """Seconds per slot, CPU time of this process (`cpu_*`) and wall clock (`wall_*`): sim (observe +
    step on recorded greedy actions), policy (act) and end to end (observe + act + step)."""
    sim = MecSimulator(Scenario(n_md=n, n_es=n_es), profile, seed=seed)
    pol = make_policy("greedy", seed)
    actions, act_cpu, act_wall = [], 0.0, 0.0
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(slots):
        obs = sim.observe()
        c1, w1 = time.process_time(), time.perf_counter()
        a = pol.act(obs)
        act_cpu += time.process_time() - c1
        act_wall += time.perf_counter() - w1
        actions.append(a)
        sim.step(a)
    all_cpu, all_wall = time.process_time() - c0, time.perf_counter() - w0
    sim.reset(seed)
    c0, w0 = time.process_time(), time.perf_counter()
    for a in actions:
        sim.observe()
        sim.step(a)
    sim_cpu, sim_wall = time.process_time() - c0, time.perf_counter() - w0
    return {"cpu_sim": sim_cpu / slots, "cpu_policy": act_cpu / slots, "cpu_end_to_end": all_cpu / slots,
            "wall_sim": sim_wall / slots, "wall_policy": act_wall / slots, "wall_end_to_end": all_wall / slots}


def measure_batch(n: int, n_es: int, n_envs: int, slots: int, seed: int, profile) -> dict[str, float]:
    """CPU seconds per environment-slot of a lockstep batch: step alone, and observe (all envs) + step,
    each replaying greedy decisions recorded in a first pass (same seed, so the same slots)."""
    batch = MecBatch(Scenario(n_md=n, n_es=n_es), profile, seed=seed, n_envs=n_envs)
    pol = make_policy("greedy", seed)
    actions = []
    for _ in range(slots):
        actions.append(np.stack([pol.act(batch.observe(e)) for e in range(n_envs)]))
        batch.step(actions[-1])
    out = {}
    for part in ("step", "observe_step"):
        batch.reset(seed)
        c0 = time.process_time()
        for a in actions:
            if part == "observe_step":
                for e in range(n_envs):
                    batch.observe(e)
            batch.step(a)
        out[f"cpu_{part}"] = (time.process_time() - c0) / (slots * n_envs)
    return out


def load_profile(shipped: bool):
    if shipped:
        from grl_aecnn.profile.build import load_shipped_profile

        return load_shipped_profile()
    return synthetic_profile(seed=0, n_samples=2000)


def run_baseline(src: str, n: int, n_es: int, slots: int, seed: int, shipped: bool = False) -> dict[str, float]:
    """`measure` on another checkout's code, in a subprocess (seconds per slot)."""
    import subprocess
    import sys

    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from simulator import measure, load_profile; "
            "print(json.dumps(measure(*map(int, sys.argv[2:6]), load_profile(sys.argv[6] == '1'))))")
    env = dict(os.environ, PYTHONPATH=os.path.abspath(src))
    out = subprocess.run([sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__)), str(n), str(n_es),
                          str(slots), str(seed), "1" if shipped else "0"], env=env, check=True, capture_output=True, text=True, cwd="/")
    return json.loads(out.stdout.strip().splitlines()[-1])


def numpy_call_us() -> dict[str, float]:
    """Median microseconds of one small numpy call right now, CPU and wall (a load gauge: at small N
    the simulator's cost is mostly the number of such calls; wall / CPU shows the share of a core
    this process got)."""
    import numpy as np

    a, idx = np.ones(10), np.arange(10)
    cpu, wall = [], []
    for _ in range(7):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(2000):
            np.where(a > 0, a[idx] * 2.0, 0.0)
        cpu.append((time.process_time() - c0) / 8000)  # 4 calls per iteration
        wall.append((time.perf_counter() - w0) / 8000)
    return {"cpu": 1e6 * statistics.median(cpu), "wall": 1e6 * statistics.median(wall)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200])
    ap.add_argument("--n-es", type=int, default=3)
    ap.add_argument("--slots", type=int, nargs="+", default=[300, 60, 20], help="slots per repeat, one per size "
                    "(or one for all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-envs", type=int, nargs="*", default=[16, 64, 256], help="lockstep batch sizes, "
                    "measured at the first size (none: skip)")
    ap.add_argument("--batch-slots", type=int, default=40, help="slots per repeat of each batch")
    ap.add_argument("--baseline", default=None, help="JSON of this benchmark on an older checkout, kept under 'baseline'")
    ap.add_argument("--baseline-src", default=None, help="src/ folder of an older checkout: each repeat also runs this "
                    "script on it (a subprocess, just before), so both see the same machine load")
    ap.add_argument("--shipped-profile", action="store_true", help="the zoo's real option profile instead of the "
                    "synthetic one (more options; greedy then sends most MDs to one ES)")
    ap.add_argument("--note", default=None, help="free text kept in the JSON (e.g. machine load)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    profile = load_profile(args.shipped_profile)
    slots = args.slots if len(args.slots) == len(args.sizes) else [args.slots[0]] * len(args.sizes)
    rows = []
    gauge_before = numpy_call_us()
    print(f"numpy call: {gauge_before['cpu']:.2f} us CPU, {gauge_before['wall']:.2f} us wall (load gauge)")
    base_rows = []
    for n, s in zip(args.sizes, slots):
        runs, base_runs = [], []
        for r in range(args.repeats):
            if args.baseline_src:
                base_runs.append(run_baseline(args.baseline_src, n, args.n_es, s, r, args.shipped_profile))
            runs.append(measure(n, args.n_es, s, r, profile))
        if base_runs:
            base_rows.append({"n_md": n, **{k: 1e3 * statistics.median(b[k] for b in base_runs) for k in base_runs[0]}})
        row = {"n_md": n, "n_es": args.n_es, "slots": s, "repeats": args.repeats}
        for clock in ("cpu", "wall"):
            for part in ("sim", "policy", "end_to_end"):
                med = statistics.median(r[f"{clock}_{part}"] for r in runs)
                row[f"{clock}_{part}_ms_per_slot"] = 1e3 * med
                row[f"{clock}_{part}_slots_per_s"] = 1 / med
        rows.append(row)
        print(f"N={n:4d} M={args.n_es}: simulator {row['cpu_sim_ms_per_slot']:8.3f} ms/slot CPU "
              f"({row['cpu_sim_slots_per_s']:6.0f} slots/s; wall {row['wall_sim_slots_per_s']:6.0f}); greedy act "
              f"{row['cpu_policy_ms_per_slot']:8.3f} ms; end to end {row['cpu_end_to_end_slots_per_s']:6.0f} slots/s CPU "
              f"(wall {row['wall_end_to_end_slots_per_s']:6.0f})")
    batch_rows = []
    for n_envs in args.batch_envs:
        runs = [measure_batch(args.sizes[0], args.n_es, n_envs, args.batch_slots, r, profile) for r in range(args.repeats)]
        row = {"n_md": args.sizes[0], "n_es": args.n_es, "n_envs": n_envs, "slots": args.batch_slots,
               "repeats": args.repeats}
        for part in ("step", "observe_step"):
            med = statistics.median(r[f"cpu_{part}"] for r in runs)
            row[f"cpu_{part}_us_per_env_slot"] = 1e6 * med
            row[f"cpu_{part}_env_slots_per_s"] = 1 / med
        row["cpu_step_speedup_vs_single_observe_step"] = rows[0]["cpu_sim_ms_per_slot"] * 1e3 / row["cpu_step_us_per_env_slot"]
        batch_rows.append(row)
        print(f"batch of {n_envs:4d} x N={args.sizes[0]}: step {row['cpu_step_env_slots_per_s']:7.0f} slots/s CPU "
              f"({row['cpu_step_speedup_vs_single_observe_step']:.1f}x one simulator's observe + step); observe all + step "
              f"{row['cpu_observe_step_env_slots_per_s']:7.0f} slots/s")
    for row in rows:
        for key in ("cpu_sim", "cpu_end_to_end"):
            row[f"{key}_cost_vs_first"] = row[f"{key}_ms_per_slot"] / rows[0][f"{key}_ms_per_slot"]
    out = {"policy": "greedy", "allocator": "optimal",
           "profile": "shipped resnet20-cifar10" if args.shipped_profile else "synthetic (8 options, 2,000 samples)",
           "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "note": args.note,
           "numpy_call_us": {"before": gauge_before, "after": numpy_call_us()}, "rows": rows,
           "batch_rows": batch_rows}
    if args.baseline:
        with open(args.baseline) as f:
            base = json.load(f)
        out["baseline"] = base
        for row, b in zip(rows, base.get("rows", [])):
            if b["n_md"] == row["n_md"]:
                for key in ("cpu_sim", "cpu_end_to_end", "wall_sim", "wall_end_to_end"):
                    row[f"{key}_speedup_vs_baseline"] = b[f"{key}_ms_per_slot"] / row[f"{key}_ms_per_slot"]
    if base_rows:  # paired: each repeat ran the baseline just before the current code
        out["baseline"] = {"src": args.baseline_src, "paired": True, "rows": [
            {"n_md": b["n_md"], **{f"{k}_ms_per_slot": v for k, v in b.items() if k != "n_md"}} for b in base_rows]}
        for row, b in zip(rows, base_rows):
            for key in ("cpu_sim", "cpu_end_to_end", "wall_sim", "wall_end_to_end"):
                row[f"{key}_speedup_vs_baseline"] = b[key] / row[f"{key}_ms_per_slot"]
            print(f"N={row['n_md']:4d}: baseline simulator {b['cpu_sim']:8.3f} ms/slot CPU ({1e3 / b['cpu_sim']:6.0f} slots/s) "
                  f"-> {row['cpu_sim_speedup_vs_baseline']:.2f}x; end to end {row['cpu_end_to_end_speedup_vs_baseline']:.2f}x")
    if args.json:
        atomic_write_json(args.json, out)


if __name__ == "__main__":
    main()
